"""What a new user does in their first hour, through the real command line against the real daemon: lists
that show what a request has, and a policy that goes round `policy show > file` and `policy propose file`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from .conftest import Daemon, DevEnv, Nonces, cli_json, run_cli


def treasury_transaction(path: Path, nonce: int) -> Path:
    path.write_text(
        json.dumps(
            {
                "type": 2,
                "chainId": 11155111,
                "nonce": nonce,
                "to": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
                "value": 10**15,
                "gas": 21000,
                "maxFeePerGas": 30 * 10**9,
                "maxPriorityFeePerGas": 10**9,
            }
        )
    )
    return path


def test_requests_list_shows_the_approvals_and_quorum_progress_a_request_has(
    dev_env: DevEnv, daemon: Daemon, keys: Any, nonces: Nonces, tmp_path: Path
) -> None:
    transaction = treasury_transaction(tmp_path / "tx.json", next(nonces))
    submitted: Any = cli_json(
        dev_env, daemon, "backend", "sign", "tx", "--key", "treasury", "--file", str(transaction)
    )
    assert submitted["state"] == "PENDING_APPROVAL"
    run_cli(dev_env, daemon, "alice", "approve", submitted["request_id"], "--yes")

    listed: Any = cli_json(dev_env, daemon, "alice", "requests", "list", "--state", "PENDING_APPROVAL")
    (entry,) = [item for item in listed if item["request_id"] == submitted["request_id"]]
    assert [approval["approver"] for approval in entry["approvals"]] == ["alice"]
    assert entry["quorum_progress"] == "1 of 2 from treasury"

    table = run_cli(dev_env, daemon, "alice", "requests", "list", "--state", "PENDING_APPROVAL").stdout
    (row,) = [line for line in table.splitlines() if submitted["request_id"] in line]
    assert "1 of 2 from treasury" in row


def test_policy_show_prints_exactly_the_document_so_it_can_be_proposed_again(
    dev_env: DevEnv, daemon: Daemon
) -> None:
    shown = run_cli(dev_env, daemon, "admin", "policy", "show")
    active: Any = cli_json(dev_env, daemon, "admin", "policy", "show")

    assert shown.stdout.rstrip("\n") == active["document"].rstrip("\n")
    assert f"# active policy version {active['version']}" in shown.stderr
    assert "# active policy version" not in shown.stdout


def test_keys_list_against_the_daemon_loads_neither_eth_account_nor_cryptography(
    dev_env: DevEnv, daemon: Daemon, keys: Any
) -> None:
    # What `custody keys list` imports, in a fresh interpreter that runs the command line as the console
    # script does: the call and the table need gRPC and the stubs, not the signing or certificate libraries.
    arguments = [
        "--profile",
        str(dev_env.profile("admin")),
        "--server",
        daemon.address,
        "--json",
        "keys",
        "list",
    ]
    script = (
        "import json, sys\n"
        "from custody.cli.main import run\n"
        f"code = run({arguments!r})\n"
        "print('MODULES ' + json.dumps(sorted(sys.modules)))\n"
        "sys.exit(code)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CUSTODY_PROFILE": ""},
        check=True,
    )
    listing, modules_line = result.stdout.rsplit("MODULES ", 1)
    assert {key["label"] for key in json.loads(listing)} >= {"ops", "treasury"}
    modules = set(json.loads(modules_line))
    assert "grpc" in modules
    unneeded = ("eth_account", "eth_abi", "eth_utils", "cryptography", "pkcs11", "custody.chains.evm")
    assert [name for name in unneeded if name in modules] == []
