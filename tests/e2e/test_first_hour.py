"""What a new user does in their first hour, through the real command line against the real daemon: lists
that show what a request has, and a policy that goes round `policy show > file` and `policy propose file`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import grpc
import pytest

from custody.api._gen import custody_pb2 as pb
from custody.api._gen import custody_pb2_grpc as pb_grpc
from tests.cli_children import run_and_list_modules, run_at_a_terminal

from .conftest import BACKENDS, CUSTODY, Daemon, Databases, DevEnv, Nonces, cli_json, make_dev_env, run_cli


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


def submit_treasury_transaction(dev_env: DevEnv, daemon: Daemon, path: Path, nonce: int) -> Any:
    """A transaction for the key "treasury", submitted by the backend: it waits for two approvals."""
    transaction = treasury_transaction(path, nonce)
    return cli_json(dev_env, daemon, "backend", "sign", "tx", "--key", "treasury", "--file", str(transaction))


def test_requests_list_shows_the_approvals_and_quorum_progress_a_request_has(
    dev_env: DevEnv, daemon: Daemon, keys: Any, nonces: Nonces, tmp_path: Path
) -> None:
    submitted = submit_treasury_transaction(dev_env, daemon, tmp_path / "tx.json", next(nonces))
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


def modules_loaded_by(dev_env: DevEnv, daemon: Daemon, *command: str) -> tuple[Any, set[str]]:
    """What `custody --json COMMAND...` as the admin answers, and the modules it imported."""
    arguments = ["--profile", str(dev_env.profile("admin")), "--server", daemon.address, "--json", *command]
    code, printed, modules = run_and_list_modules(arguments)
    assert code == 0, printed
    return json.loads(printed), modules


# A listing calls the daemon and prints a table: it needs gRPC and the stubs, not the libraries that decode,
# sign or make certificates.
UNNEEDED_FOR_LISTING = ("eth_account", "eth_abi", "eth_utils", "cryptography", "pkcs11", "custody.chains.evm")


def test_keys_list_against_the_daemon_loads_neither_eth_account_nor_cryptography(
    dev_env: DevEnv, daemon: Daemon, keys: Any
) -> None:
    listing, modules = modules_loaded_by(dev_env, daemon, "keys", "list")
    assert {key["label"] for key in listing} >= {"ops", "treasury"}
    assert "grpc" in modules
    assert [name for name in UNNEEDED_FOR_LISTING if name in modules] == []


def test_requests_list_loads_no_payload_decoder_and_requests_show_does(
    dev_env: DevEnv, daemon: Daemon, keys: Any, nonces: Nonces, tmp_path: Path
) -> None:
    submitted = submit_treasury_transaction(dev_env, daemon, tmp_path / "tx.json", next(nonces))
    listing, modules = modules_loaded_by(dev_env, daemon, "requests", "list")
    assert submitted["request_id"] in {request["request_id"] for request in listing}
    assert [name for name in UNNEEDED_FOR_LISTING if name in modules] == []

    shown, modules = modules_loaded_by(dev_env, daemon, "requests", "show", submitted["request_id"])
    assert shown["intents"][0]["kind"] == "native_transfer"
    assert "custody.chains.evm" in modules


def serve_on_a_taken_port(
    env: DevEnv, extra_env: dict[str, str]
) -> tuple[str, subprocess.CompletedProcess[str]]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        environment = {key: value for key, value in os.environ.items() if key != "GRPC_VERBOSITY"}
        result = subprocess.run(
            [CUSTODY, "serve", "--config", str(env.config), "--listen", address],
            capture_output=True,
            text=True,
            timeout=60,
            env={**environment, **extra_env},
            check=False,
        )
    return address, result


def test_serve_on_a_taken_port_says_so_in_one_sentence_without_grpc_core_log_lines(
    tmp_path: Path, databases: Databases
) -> None:
    env = make_dev_env(tmp_path / "env", BACKENDS[0], databases)
    address, result = serve_on_a_taken_port(env, {})
    assert result.returncode == 2
    # The daemon's log records are JSON lines; everything else on stderr is what a person reads.
    for_people = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert for_people == [
        f"custody: cannot start: cannot listen on {address}: the address is in use or not available"
    ]

    # An operator who asks for gRPC's own log lines still gets them.
    _, verbose = serve_on_a_taken_port(env, {"GRPC_VERBOSITY": "ERROR"})
    assert verbose.returncode == 2
    assert len([line for line in verbose.stderr.splitlines() if not line.startswith("{")]) > 1


# A trailing comma after the last field, the commonest hand-editing slip: the decoder stops at line 5, column 1.
MALFORMED_TRANSACTION = '{\n  "type": 2,\n  "chainId": 11155111,\n  "nonce": 7,\n}\n'


def test_malformed_json_submitted_over_grpc_is_refused_naming_the_line_and_column(
    signing_stub: pb_grpc.SigningServiceStub, keys: Any
) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        signing_stub.SubmitRequest(
            pb.SubmitRequestRequest(
                key_label="ops", kind=pb.PAYLOAD_KIND_TRANSACTION, payload=MALFORMED_TRANSACTION.encode()
            ),
            timeout=30,
        )
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details() == (
        "payload: the transaction is not valid JSON:"
        " Expecting property name enclosed in double quotes at line 5, column 1"
    )


def test_malformed_json_given_to_the_cli_is_refused_naming_the_file_line_and_column(
    dev_env: DevEnv, daemon: Daemon, keys: Any, tmp_path: Path
) -> None:
    payload = tmp_path / "tx.json"
    payload.write_text(MALFORMED_TRANSACTION)
    result = run_cli(
        dev_env, daemon, "backend", "sign", "tx", "--key", "ops", "--file", str(payload), check=False
    )
    assert result.returncode == 1
    assert result.stderr == (
        f"error: --file: {payload} is not valid JSON:"
        " Expecting property name enclosed in double quotes at line 5, column 1.\n"
    )


def test_a_declined_or_abandoned_confirmation_is_one_error_sentence_and_nothing_is_signed(
    dev_env: DevEnv, daemon: Daemon, keys: Any, nonces: Nonces, tmp_path: Path
) -> None:
    submitted = submit_treasury_transaction(dev_env, daemon, tmp_path / "tx.json", next(nonces))
    request_id = submitted["request_id"]
    approve = [
        CUSTODY,
        "--profile",
        str(dev_env.profile("alice")),
        "--server",
        daemon.address,
        "approve",
        request_id,
    ]

    code, screen = run_at_a_terminal(approve, [b"n\n"], {**os.environ, "CUSTODY_PROFILE": ""})
    assert code == 1, screen
    assert f"Approve request {request_id}? [y/N]: n\n" in screen
    assert screen.endswith(f"error: you did not approve request {request_id}; nothing was signed.\n")

    # End of input (Ctrl-D) at the question: click gives up on the prompt, and the command says so as every
    # other error is said, with the exit code of an interruption.
    code, screen = run_at_a_terminal(approve, [b"\x04"], {**os.environ, "CUSTODY_PROFILE": ""})
    assert code == 130, screen
    assert screen.endswith("error: aborted; nothing was done.\n")
    assert "Aborted!" not in screen and "Error:" not in screen

    shown: Any = cli_json(dev_env, daemon, "alice", "requests", "show", request_id)
    assert shown["state"] == "PENDING_APPROVAL"
    assert shown["approvals"] == []


def test_a_request_left_waiting_for_approvals_says_what_the_approvers_run(
    dev_env: DevEnv, daemon: Daemon, keys: Any, nonces: Nonces, tmp_path: Path
) -> None:
    transaction = treasury_transaction(tmp_path / "tx.json", next(nonces))
    result = run_cli(
        dev_env, daemon, "backend", "sign", "tx", "--key", "treasury", "--file", str(transaction)
    )
    (request_line,) = [line for line in result.stdout.splitlines() if line.startswith("request:")]
    request_id = request_line.split()[-1]
    assert result.stderr.splitlines() == [
        "",
        "The request waits for 2 of treasury. Each approver runs:",
        f"  custody approve {request_id}",
        "To wait until it is signed or ends:",
        f"  custody requests wait {request_id}",
    ]
    # With --json, stdout is the one document and stderr stays quiet.
    again = run_cli(
        dev_env, daemon, "backend", "--json", "sign", "tx", "--key", "treasury", "--file", str(transaction)
    )
    assert json.loads(again.stdout)["request_id"] == request_id
    assert again.stderr == ""
