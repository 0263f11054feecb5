"""A key labelled like the daemon's audit key cannot keep the daemon from starting: `keys create` refuses the
daemon's reserved labels, and a key made in the token past the daemon under that label changes nothing at the
next start, since the daemon finds its audit key by the CKA_ID its database stores."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from custody.exit_codes import EXIT_ERROR

from .conftest import BACKENDS, Databases, cli_json, make_dev_env, run_cli, start_daemon, stop_daemon

# Run in a child process: SoftHSM2 reads its configuration once per process, and this test needs the dev
# environment's token. It makes a secp256k1 key pair labelled like the audit key, as anyone with the PIN could
# (or an admin of a daemon from before the label was reserved).
LOOKALIKE_KEY_SCRIPT = r"""
import sys
import pkcs11
from pkcs11 import Attribute, KeyType
from pkcs11.util.ec import encode_named_curve_parameters
lib = pkcs11.lib(sys.argv[1])
token = lib.get_token(token_label="custody-dev")
with token.open(user_pin=sys.stdin.readline().strip(), rw=True) as session:
    params = session.create_domain_parameters(
        KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("1.3.132.0.10")}, local=True)
    params.generate_keypair(
        id=bytes.fromhex("a0d1a0d1a0d1a0d1a0d1a0d1a0d1a0d1"), label="custody-audit", store=True,
        private_template={Attribute.EXTRACTABLE: False, Attribute.SENSITIVE: True, Attribute.SIGN: True})
"""


def test_a_key_labelled_like_the_audit_key_does_not_stop_the_next_start(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases
) -> None:
    # The label lookup concerns the HSM, not the store: the first configured backend is enough.
    env = make_dev_env(tmp_path_factory.mktemp("daemon-key-labels") / "env", BACKENDS[0], databases)
    logs = tmp_path_factory.mktemp("daemon-key-label-logs")

    first = start_daemon(env, logs / "first.log")
    try:
        refused = run_cli(env, first, "admin", "keys", "create", "--label", "custody-audit", check=False)
        assert refused.returncode == EXIT_ERROR
        assert refused.stderr.startswith("error: label: the key label 'custody-audit' is reserved")
        cli_json(env, first, "admin", "keys", "create", "--label", "ops")
    finally:
        assert stop_daemon(first) == 0

    server_toml = env.config.read_text()
    module = next(line.split('"')[1] for line in server_toml.splitlines() if line.startswith("module"))
    subprocess.run(
        [sys.executable, "-c", LOOKALIKE_KEY_SCRIPT, module],
        input=(env.directory / "secrets" / "hsm.pin").read_text(),
        capture_output=True,
        text=True,
        env={**os.environ, "SOFTHSM2_CONF": str(env.directory / "softhsm" / "softhsm2.conf")},
        check=True,
    )

    second = start_daemon(env, logs / "second.log")
    try:
        verified = run_cli(env, second, "admin", "audit", "verify")
        assert "ok" in verified.stdout
        keys = cli_json(env, second, "admin", "keys", "list")
        assert [key["label"] for key in keys] == ["ops"]  # type: ignore[index, union-attr]
    finally:
        assert stop_daemon(second) == 0
