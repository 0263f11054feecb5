"""No secret reaches a log line, an audit event, an error message, the metrics or the exported audit log.

A full flow runs (keys, an auto-signed and an approved transaction, a rejection, refusals, a failed start with
a wrong PIN, an approver with a wrong passphrase), every byte anyone could read afterwards is collected (CLI
output, the daemon's log, the Prometheus endpoint, the audit export), and every secret of the environment is
searched for in it, in the forms it could leak in. It runs on PostgreSQL whenever the suite has it, because
there it holds one more secret: the daemon connects with a URL that carries a password, and starts that fail on
the database (a missing database, a malformed URL) are read too. Without PostgreSQL it runs on SQLite.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import subprocess
import urllib.request
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eth_account import Account

from custody.api._gen import custody_pb2 as pb

from .approvals_support import assert_signed_by, submit_tx, treasury_tx, wait_for_state
from .conftest import (
    BACKENDS,
    CUSTODY,
    Databases,
    DevEnv,
    Nonces,
    make_dev_env,
    run_cli,
    start_daemon,
    stop_daemon,
)

APPROVERS = ("alice", "bob", "carol", "dave")
_METRICS_LISTENING = re.compile(r"metrics listening on 127\.0\.0\.1:(\d+)")


def with_password(database_url: str) -> tuple[str, str]:
    """The test database's URL with a password in it, and the password.

    The test server trusts local connections, so any password is accepted and the daemon really connects
    with it; a server URL that already carries a password keeps it, and that password is the secret checked.
    """
    parts = urlsplit(database_url)
    password = parts.password or secrets.token_urlsafe(24)
    netloc = f"{quote(parts.username or 'postgres', safe='')}:{quote(password, safe='')}@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc)), password


def set_database_url(config: Path, url: str) -> None:
    lines = config.read_text().splitlines()
    assert sum(line.startswith("url = ") for line in lines) == 1
    config.write_text(
        "\n".join(f"url = {json.dumps(url)}" if line.startswith("url = ") else line for line in lines)
    )


def failed_start(config: Path) -> subprocess.CompletedProcess[str]:
    """`custody serve` with ``config``, which must refuse to start; its output is returned to be read."""
    result = subprocess.run(
        [CUSTODY, "serve", "--config", str(config), "--listen", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0, result.stdout + result.stderr
    return result


def secret_forms(env: DevEnv, database_password: str | None) -> dict[str, set[str]]:
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
    if database_password is not None:
        add("database password", database_password.encode())
        found["database password"].add(quote(database_password, safe=""))
    return found


def test_no_secret_in_logs_errors_metrics_or_the_audit_log(
    tmp_path: Path, databases: Databases, nonces: Nonces
) -> None:
    backend = "postgresql" if "postgresql" in BACKENDS else BACKENDS[0]
    env = make_dev_env(tmp_path / "env", backend, databases)
    directory = env.directory
    password_url = database_password = None
    if env.database_url is not None:
        password_url, database_password = with_password(env.database_url)
        set_database_url(env.config, password_url)
        assert database_password in env.config.read_text()
    with env.config.open("a") as server_toml:
        server_toml.write('\n[metrics]\nlisten = "127.0.0.1:0"\n')
    readable: list[str] = []

    def cli(identity: str | None, *args: str) -> str:
        result = run_cli(env, daemon, identity, *args, check=False)
        readable.extend([result.stdout, result.stderr])
        return result.stdout

    daemon = start_daemon(env, tmp_path / "daemon.log", extra_env={"CUSTODY_LOG_LEVEL": "DEBUG"})
    try:
        ops = json.loads(cli("admin", "--json", "keys", "create", "--label", "ops"))
        treasury = json.loads(cli("admin", "--json", "keys", "create", "--label", "treasury"))
        signed = json.loads(
            cli(
                "backend",
                "--json",
                "sign",
                "tx",
                "--key",
                "ops",
                "--file",
                str(directory / "examples" / "eip1559-tx.json"),
            )
        )
        assert signed["state"] == "SIGNED", signed
        signed_tx = bytes.fromhex(str(signed["signed_tx"]).removeprefix("0x"))
        assert Account.recover_transaction(signed_tx) == ops["address"]
        pending = submit_tx(env, daemon, "backend", "treasury", treasury_tx(next(nonces)))
        cli("alice", "approve", pending.request_id, "--yes")
        cli("alice", "approve", pending.request_id, "--yes")  # refused: alice already approved
        cli("bob", "approve", pending.request_id, "--yes")
        assert_signed_by(
            wait_for_state(env, daemon, pending.request_id, pb.REQUEST_STATE_SIGNED), treasury["address"]
        )
        rejected = submit_tx(env, daemon, "backend", "treasury", treasury_tx(next(nonces)))
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
        third = submit_tx(env, daemon, "backend", "treasury", treasury_tx(next(nonces)))
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

        # Everything the Prometheus endpoint shows, after all of the above.
        port = _METRICS_LISTENING.search(daemon.log())
        assert port, daemon.log()
        with urllib.request.urlopen(f"http://127.0.0.1:{port.group(1)}/metrics", timeout=10) as response:
            metrics = response.read().decode()
        assert "custody_signatures_total" in metrics and "custody_db_transaction_seconds" in metrics
        readable.append(metrics)
    finally:
        assert stop_daemon(daemon) == 0

    # A start with a wrong PIN, whose error message is read too.
    pin_file = directory / "secrets" / "hsm.pin"
    real_pin = pin_file.read_text()
    pin_file.write_text("0000-wrong-pin\n")
    failed = failed_start(env.config)
    pin_file.write_text(real_pin)
    readable.extend([failed.stdout, failed.stderr])

    # Starts that fail on the database, with the password in the URL: a database that does not exist and a
    # URL libpq cannot parse. Their configurations sit beside server.toml so relative paths still resolve.
    if password_url is not None:
        parts = urlsplit(password_url)
        for name, url, reason in (
            (
                "missing-database",
                urlunsplit(parts._replace(path=f"/custody_missing_{secrets.token_hex(4)}")),
                "does not exist",
            ),
            # An unclosed IPv6 bracket: libpq's own message for it quotes the whole URL, password and all.
            ("malformed-url", password_url.replace("@", "@[", 1), "malformed"),
        ):
            config = directory / f"server-{name}.toml"
            config.write_text(env.config.read_text())
            set_database_url(config, url)
            failed = failed_start(config)
            readable.extend([failed.stdout, failed.stderr])
            assert reason in failed.stdout + failed.stderr, (name, failed.stdout, failed.stderr)

    readable.append(daemon.log())
    export = (tmp_path / "audit.jsonl").read_text()
    assert len(export.splitlines()) > 10
    readable.append(export)
    readable.extend(json.loads(line)["details"].__repr__() for line in export.splitlines())
    everything = "\n".join(readable)
    assert "approve" in everything  # the flow really ran and produced output

    leaks = [
        (name, form[:6] + "...")
        for name, forms in secret_forms(env, database_password).items()
        for form in forms
        if form in everything
    ]
    assert leaks == []
