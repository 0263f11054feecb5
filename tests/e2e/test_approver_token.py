"""An approver whose key lives in their own PKCS#11 token, end to end through the CLI.

alice creates an Ed25519 key in her own SoftHSM2 token with `custody approver-key create`, the admins move
her policy entry to that key through a policy change the admin quorum approves, and from then on her
approvals are signed inside the token by `custody approve` and count, while approvals from her old key file
are refused. Every signature is checked with eth-account.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account

from custody.hsm.softhsm import SoftHsmToken, create_softhsm_token

from .approvals_support import treasury_tx
from .conftest import (
    BACKENDS,
    Daemon,
    Databases,
    DevEnv,
    Nonces,
    cli_json,
    make_dev_env,
    run_cli,
    start_daemon,
    stop_daemon,
)

TOKEN_LABEL = "alice-own-token"
KEY_LABEL = "alice-approval"
TOKEN_PIN = "alice-token-pin-97531"
TOKEN_SO_PIN = "alice-token-so-pin-86420"


class Setting:
    def __init__(self, env: DevEnv, daemon: Daemon, token: SoftHsmToken, profile: Path) -> None:
        self.env = env
        self.daemon = daemon
        self.token = token
        self.profile = profile

    def alice_with_token(self, *args: str, check: bool = True) -> tuple[int, str, str]:
        """Run the CLI as alice with her token profile; SoftHSM2 finds her token through SOFTHSM2_CONF."""
        result = run_cli(
            self.env,
            self.daemon,
            None,
            "--profile",
            str(self.profile),
            *args,
            check=check,
            extra_env={"SOFTHSM2_CONF": str(self.token.config_path)},
        )
        return result.returncode, result.stdout, result.stderr


@pytest.fixture(scope="module")
def setting(tmp_path_factory: pytest.TempPathFactory, databases: Databases) -> Iterator[Setting]:
    # The approver's token is the CLI's and the policy change the use cases', whatever the store; the first
    # configured backend is enough.
    env = make_dev_env(tmp_path_factory.mktemp("approver-token") / "env", BACKENDS[0], databases)
    token = create_softhsm_token(tmp_path_factory.mktemp("alice-token"), TOKEN_LABEL, TOKEN_PIN, TOKEN_SO_PIN)
    pin_file = env.directory / "secrets" / "alice-token.pin"
    pin_file.write_text(TOKEN_PIN + "\n")
    os.chmod(pin_file, 0o600)
    # alice's profile with the key-file lines swapped for her token.
    profile = env.directory / "profiles" / "alice-token.toml"
    kept = [
        line
        for line in env.profile("alice").read_text().splitlines()
        if not line.startswith(("approver_key_file", "approver_passphrase_file"))
    ]
    profile.write_text(
        "\n".join(kept)
        + f'\napprover_pkcs11_module = "{token.module_path}"\n'
        + f'approver_token_label = "{TOKEN_LABEL}"\n'
        + f'approver_key_label = "{KEY_LABEL}"\n'
        + 'approver_pin_file = "../secrets/alice-token.pin"\n'
    )
    daemon = start_daemon(env, tmp_path_factory.mktemp("logs") / "daemon.log")
    try:
        yield Setting(env, daemon, token, profile)
    finally:
        assert stop_daemon(daemon) == 0


@pytest.fixture(scope="module")
def token_key(setting: Setting) -> dict[str, str]:
    """alice's approval key, made in her token with `custody approver-key create`."""
    _code, out, _err = setting.alice_with_token("--json", "approver-key", "create")
    created: dict[str, str] = json.loads(out)
    return created


@pytest.fixture(scope="module")
def alice_on_her_token(
    setting: Setting, token_key: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> str:
    """The admin quorum (bob and carol) moves alice's policy entry to her token key; returns the old key."""
    env, daemon = setting.env, setting.daemon
    old_public_key = (env.directory / "approvers" / "alice.pub").read_text().strip()
    document = (env.directory / "policy.toml").read_text()
    assert f'public_key = "{old_public_key}"' in document and "version = 1\n" in document
    proposal_file = tmp_path_factory.mktemp("proposal") / "policy-v2.toml"
    proposal_file.write_text(
        document.replace("version = 1\n", "version = 2\n", 1).replace(old_public_key, token_key["public_key"])
    )
    # The policy names keys that must exist before a proposal may name them.
    for label in ("ops", "treasury"):
        cli_json(env, daemon, "admin", "keys", "create", "--label", label)
    proposal = cli_json(env, daemon, "admin", "policy", "propose", str(proposal_file))
    request_id = proposal["request_id"]  # type: ignore[index]
    for approver in ("bob", "carol"):
        run_cli(env, daemon, approver, "approve", "--yes", request_id)
    return old_public_key


def test_approver_key_create_makes_the_key_in_the_token_and_show_finds_it(
    setting: Setting, token_key: dict[str, str]
) -> None:
    assert token_key["approver"] == "alice"
    assert len(bytes.fromhex(token_key["public_key"])) == 32
    assert TOKEN_LABEL in token_key["stored_in"] and KEY_LABEL in token_key["stored_in"]
    _code, out, _err = setting.alice_with_token("--json", "approver-key", "show")
    assert json.loads(out)["public_key"] == token_key["public_key"]
    # A second create under the same label is refused, and the first key stays the one in use.
    code, out, err = setting.alice_with_token("approver-key", "create", check=False)
    assert code == 1
    assert "already holds an object labelled" in err
    _code, out, _err = setting.alice_with_token("--json", "approver-key", "show")
    assert json.loads(out)["public_key"] == token_key["public_key"]


def test_the_admin_quorum_moves_alice_to_her_token_key(
    setting: Setting, token_key: dict[str, str], alice_on_her_token: str
) -> None:
    active = cli_json(setting.env, setting.daemon, "alice", "policy", "show")
    assert active["version"] == 2  # type: ignore[index]
    assert token_key["public_key"] in json.dumps(active)
    assert alice_on_her_token not in json.dumps(active)


def test_approvals_signed_in_the_token_count_and_the_old_key_file_no_longer_does(
    setting: Setting, alice_on_her_token: str, tmp_path: Path, nonces: Nonces
) -> None:
    env, daemon = setting.env, setting.daemon
    treasury = cli_json(env, daemon, "admin", "keys", "show", "treasury")
    tx_file = tmp_path / "tx.json"
    tx_file.write_text(json.dumps(treasury_tx(next(nonces))))
    submitted = cli_json(env, daemon, "backend", "sign", "tx", "--key", "treasury", "--file", str(tx_file))
    request_id = submitted["request_id"]  # type: ignore[index]
    assert submitted["state"] == "PENDING_APPROVAL"  # type: ignore[index]

    old_key = run_cli(env, daemon, "alice", "approve", "--yes", request_id, check=False)
    assert old_key.returncode != 0
    assert old_key.returncode == 1
    assert "the approval signature does not verify with alice's key" in old_key.stderr

    _code, out, _err = setting.alice_with_token("--json", "approve", "--yes", request_id)
    after_alice = json.loads(out)
    assert after_alice["state"] == "PENDING_APPROVAL"
    assert [approval["approver"] for approval in after_alice["approvals"]] == ["alice"]
    signed = json.loads(run_cli(env, daemon, "bob", "--json", "approve", "--yes", request_id).stdout)
    assert signed["state"] == "SIGNED"
    assert Account.recover_transaction(signed["signed_tx"]) == treasury["address"]  # type: ignore[index]


def test_the_token_pin_never_reaches_output_or_logs(setting: Setting, token_key: dict[str, str]) -> None:
    _code, out, err = setting.alice_with_token("--json", "approver-key", "show")
    assert TOKEN_PIN not in out + err
    assert TOKEN_PIN not in setting.daemon.log()
