"""The daemon refuses to start on a bad configuration, naming the file and the problem in one sentence, with exit
code 2 (not restarted by systemd); an HSM or database unreachable at start exits 75 (EX_TEMPFAIL, restarted)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from eth_utils import keccak, to_checksum_address

from .conftest import BACKENDS, CUSTODY, Databases, DevEnv, make_dev_env, start_daemon, stop_daemon


@pytest.fixture
def fresh_env(tmp_path: Path, databases: Databases) -> DevEnv:
    """A new environment on the first configured backend: these refusals come before the database matters."""
    return make_dev_env(tmp_path / "env", BACKENDS[0], databases)


@pytest.fixture
def fresh_env_on_each_backend(tmp_path: Path, backend: str, databases: Databases) -> DevEnv:
    return make_dev_env(tmp_path / "env", backend, databases)


def serve_until_exit(env: DevEnv) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CUSTODY, "serve", "--config", str(env.config), "--listen", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_an_invalid_policy_names_the_file_rule_and_field(fresh_env: DevEnv) -> None:
    policy = fresh_env.directory / "policy.toml"
    policy.write_text(policy.read_text().replace('action = "sign"', 'action = "sign-everything"', 1))
    result = serve_until_exit(fresh_env)
    assert result.returncode == 2
    assert str(policy) in result.stderr or "policy.toml" in result.stderr
    assert "ops-transactions" in result.stderr
    assert "action" in result.stderr
    assert "listening" not in result.stderr


def test_an_unknown_configuration_key_is_named(fresh_env: DevEnv) -> None:
    with fresh_env.config.open("a") as config:
        config.write("\n[limits]\nmax_wrokers = 4\n")
    result = serve_until_exit(fresh_env)
    assert result.returncode == 2
    assert "server.toml" in result.stderr and "max_wrokers" in result.stderr


def test_a_pin_file_readable_by_others_is_refused(fresh_env: DevEnv) -> None:
    pin_file = fresh_env.directory / "secrets" / "hsm.pin"
    pin = pin_file.read_text().strip()
    os.chmod(pin_file, 0o644)
    result = serve_until_exit(fresh_env)
    assert result.returncode == 2
    assert "hsm.pin" in result.stderr and "0600" in result.stderr
    assert pin not in result.stderr


def test_a_wrong_pin_is_refused_without_echoing_it(fresh_env: DevEnv) -> None:
    pin_file = fresh_env.directory / "secrets" / "hsm.pin"
    pin_file.write_text("not-the-pin-123456\n")
    result = serve_until_exit(fresh_env)
    assert result.returncode == 2
    assert "refused the PIN" in result.stderr
    assert "not-the-pin-123456" not in result.stderr


def test_a_second_daemon_on_a_taken_port_says_so(fresh_env: DevEnv, tmp_path: Path) -> None:
    first = start_daemon(fresh_env, tmp_path / "first.log")
    try:
        result = subprocess.run(
            [CUSTODY, "serve", "--config", str(fresh_env.config), "--listen", first.address],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        assert stop_daemon(first) == 0
    assert result.returncode == 2
    assert f"cannot listen on {first.address}" in result.stderr


def test_a_missing_token_is_named(fresh_env: DevEnv) -> None:
    config = fresh_env.config
    config.write_text(
        config.read_text().replace('token_label = "custody-dev"', 'token_label = "no-such-token"')
    )
    result = serve_until_exit(fresh_env)
    # A network HSM that cannot be reached shows no token either: a restart a little later may find it.
    assert result.returncode == 75
    assert "no-such-token" in result.stderr


def test_a_database_on_a_closed_port_is_a_temporary_failure(tmp_path: Path, databases: Databases) -> None:
    # The URL is replaced below, so the environment's own backend does not matter; SQLite makes no database.
    fresh_env = make_dev_env(tmp_path / "env", "sqlite", databases)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # A port the system just handed out and nothing listens on: connections to it are refused.
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    config = fresh_env.config
    text = config.read_text()
    url_line = next(line for line in text.splitlines() if line.startswith("url = "))
    config.write_text(
        text.replace(
            url_line, f'url = "postgresql://custody:not-a-real-password@127.0.0.1:{closed_port}/custody"'
        )
    )
    result = serve_until_exit(fresh_env)
    assert result.returncode == 75, result.stderr
    (refusal,) = [line for line in result.stderr.splitlines() if line.startswith("custody: cannot start: ")]
    assert f"127.0.0.1:{closed_port}" in refusal
    assert "not-a-real-password" not in result.stderr
    assert "listening" not in result.stderr


def test_a_database_schema_newer_than_the_code_is_refused(
    fresh_env_on_each_backend: DevEnv, tmp_path: Path
) -> None:
    fresh_env = fresh_env_on_each_backend
    first = start_daemon(fresh_env, tmp_path / "first.log")
    assert stop_daemon(first) == 0
    fresh_env.sql(
        "INSERT INTO schema_version (version, applied_at) VALUES (99, '2030-01-01T00:00:00.000000Z')"
    )
    result = serve_until_exit(fresh_env)
    assert result.returncode == 2
    assert "99" in result.stderr and "schema" in result.stderr


# Run in a child process: SoftHSM2 reads its configuration once per process, and this test needs the dev
# environment's token. It creates an EXTRACTABLE secp256k1 key pair, which custody must never use.
EXTRACTABLE_KEY_SCRIPT = r"""
import sys
import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism
from pkcs11.util.ec import encode_named_curve_parameters
from custody.hsm.pkcs11 import unwrap_ec_point
lib = pkcs11.lib(sys.argv[1])
token = lib.get_token(token_label="custody-dev")
with token.open(user_pin=sys.stdin.readline().strip(), rw=True) as session:
    params = session.create_domain_parameters(
        KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("1.3.132.0.10")}, local=True)
    public, private = params.generate_keypair(
        id=bytes.fromhex("0badc0de0badc0de0badc0de0badc0de"), label="leaky", store=True,
        private_template={Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: False, Attribute.SIGN: True})
    print(unwrap_ec_point(public[Attribute.EC_POINT]).hex())
"""


def test_a_key_that_could_leave_the_hsm_is_refused_at_start(fresh_env: DevEnv, tmp_path: Path) -> None:
    first = start_daemon(fresh_env, tmp_path / "first.log")
    assert stop_daemon(first) == 0
    server_toml = fresh_env.config.read_text()
    module = next(line.split('"')[1] for line in server_toml.splitlines() if line.startswith("module"))
    made = subprocess.run(
        [sys.executable, "-c", EXTRACTABLE_KEY_SCRIPT, module],
        input=(fresh_env.directory / "secrets" / "hsm.pin").read_text(),
        capture_output=True,
        text=True,
        env={**os.environ, "SOFTHSM2_CONF": str(fresh_env.directory / "softhsm" / "softhsm2.conf")},
        check=True,
    )
    point = bytes.fromhex(made.stdout.strip())
    address = to_checksum_address(keccak(point[1:])[-20:])
    fresh_env.sql(
        "INSERT INTO keys (key_id, label, address, public_key, state, created_at, updated_at)"
        " VALUES (?, 'leaky', ?, ?, 'ACTIVE', '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z')",
        ("0badc0de0badc0de0badc0de0badc0de", address, point),
    )
    result = serve_until_exit(fresh_env)
    assert result.returncode == 2
    assert "0badc0de0badc0de0badc0de0badc0de" in result.stderr
    assert "extractable" in result.stderr or "sensitive" in result.stderr
