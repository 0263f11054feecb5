"""No secret reaches a log line, an audit event, an error message or the exported audit log.

A full flow runs (keys, an auto-signed and an approved transaction, a rejection, refusals, a failed start with a
wrong PIN, an approver with a wrong passphrase), every byte anyone could read afterwards is collected, and
every secret of the environment is searched for in it, in the forms it could leak in.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .approvals_support import submit_tx, treasury_tx
from .conftest import CUSTODY, DevEnv, run_cli, start_daemon, stop_daemon

APPROVERS = ("alice", "bob", "carol", "dave")


def secret_forms(env: DevEnv) -> dict[str, set[str]]:
    """Every secret of the environment, as text, hex and base64, keyed by where it came from."""
    secrets_dir = env.directory / "secrets"
    found: dict[str, set[str]] = {}

    def add(name: str, raw: bytes) -> None:
        forms = {raw.hex(), base64.b64encode(raw).decode()}
        with contextlib.suppress(UnicodeDecodeError):
            forms.add(raw.decode("ascii"))
        found[name] = {form for form in forms if len(form) >= 8}

    for name in ("hsm.pin", "hsm.so-pin", *(f"{a}.passphrase" for a in APPROVERS)):
        add(name, (secrets_dir / name).read_bytes().strip())
    for approver in APPROVERS:
        passphrase = (secrets_dir / f"{approver}.passphrase").read_bytes().strip()
        key = serialization.load_pem_private_key(
            (env.directory / "approvers" / f"{approver}.key").read_bytes(), password=passphrase
        )
        assert isinstance(key, Ed25519PrivateKey)
        add(f"{approver} approver key", key.private_bytes_raw())
    for pem_file in (env.directory / "pki").glob("*.key"):
        key = serialization.load_pem_private_key(pem_file.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        add(f"TLS key {pem_file.name}", key.private_numbers().private_value.to_bytes(32, "big"))
        body = "".join(line for line in pem_file.read_text().splitlines() if not line.startswith("-----"))
        found[f"TLS key {pem_file.name}"].add(body[20:60])
    return found


def test_no_secret_in_logs_errors_or_the_audit_log(tmp_path: Path) -> None:
    directory = tmp_path / "env"
    subprocess.run([CUSTODY, "dev", "init", str(directory)], check=True, capture_output=True, timeout=120)
    env = DevEnv(directory)
    readable: list[str] = []

    def cli(identity: str | None, *args: str) -> None:
        result = run_cli(env, daemon, identity, *args, check=False)
        readable.extend([result.stdout, result.stderr])

    daemon = start_daemon(env, tmp_path / "daemon.log", extra_env={"CUSTODY_LOG_LEVEL": "DEBUG"})
    try:
        cli("admin", "keys", "create", "--label", "ops")
        cli("admin", "keys", "create", "--label", "treasury")
        cli(
            "backend", "sign", "tx", "--key", "ops", "--file", str(directory / "examples" / "eip1559-tx.json")
        )
        pending = submit_tx(env, daemon, "backend", "treasury", treasury_tx(7))
        cli("alice", "approve", pending.request_id, "--yes")
        cli("alice", "approve", pending.request_id, "--yes")  # refused: alice already approved
        cli("bob", "approve", pending.request_id, "--yes")
        rejected = submit_tx(env, daemon, "backend", "treasury", treasury_tx(8))
        cli("carol", "reject", rejected.request_id, "--reason", "no", "--yes")
        cli("backend", "keys", "create", "--label", "nope")  # refused: not an admin
        cli("admin", "audit", "export", "--out", str(tmp_path / "audit.jsonl"))
        cli("admin", "--json", "audit", "verify")

        # An approver whose passphrase file holds the wrong passphrase.
        wrong = tmp_path / "wrong.passphrase"
        wrong.write_text("not-the-passphrase-at-all\n")
        os.chmod(wrong, 0o600)
        profile = (directory / "profiles" / "dave.toml").read_text()
        wrong_profile = tmp_path / "dave-wrong.toml"
        wrong_profile.write_text(
            "\n".join(
                f'approver_passphrase_file = "{wrong}"'
                if line.startswith("approver_passphrase_file")
                else line
                for line in profile.replace('"../', f'"{directory}/').splitlines()
            )
        )
        third = submit_tx(env, daemon, "backend", "treasury", treasury_tx(9))
        result = subprocess.run(
            [
                CUSTODY,
                "--profile",
                str(wrong_profile),
                "--server",
                daemon.address,
                "reject",
                third.request_id,
                "--reason",
                "x",
                "--yes",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        readable.extend([result.stdout, result.stderr])
    finally:
        assert stop_daemon(daemon) == 0

    # A start with a wrong PIN, whose error message is read too.
    pin_file = directory / "secrets" / "hsm.pin"
    real_pin = pin_file.read_text()
    pin_file.write_text("0000-wrong-pin\n")
    failed = subprocess.run(
        [CUSTODY, "serve", "--config", str(env.config), "--listen", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    pin_file.write_text(real_pin)
    readable.extend([failed.stdout, failed.stderr])

    readable.append(daemon.log())
    export = (tmp_path / "audit.jsonl").read_text()
    assert len(export.splitlines()) > 10
    readable.append(export)
    readable.extend(json.loads(line)["details"].__repr__() for line in export.splitlines())
    everything = "\n".join(readable)
    assert "approve" in everything  # the flow really ran and produced output

    leaks = [
        (name, form[:6] + "...")
        for name, forms in secret_forms(env).items()
        for form in forms
        if form in everything
    ]
    assert leaks == []
