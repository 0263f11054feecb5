"""`custody health` against real daemons: SERVING, NOT_SERVING and unreachable, each with its exit code.

Added run time: about 10 s (two `custody dev init` environments and daemons, one health-monitor interval).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from custody.tls.certificates import (
    IssuedCertificate,
    issue_client_certificate,
    write_private_key,
    write_public_file,
)
from tests.deploy.conftest import DEPLOY, RunningDaemon, run_custody, start_daemon
from tests.deploy.containerfiles import healthcheck_command

pytestmark = pytest.mark.e2e

EXIT_NOT_SERVING = 1
EXIT_UNREACHABLE = 4


def health(daemon: RunningDaemon, *extra: str, address: str | None = None) -> tuple[int, str, str]:
    result = run_custody(
        "health", "--profile", str(daemon.profile("backend")), "--server", address or daemon.address, *extra
    )
    return result.returncode, result.stdout, result.stderr


def test_a_serving_daemon_answers_serving_and_exits_0(daemon: RunningDaemon) -> None:
    code, out, err = health(daemon)
    assert (code, out.strip()) == (0, "SERVING"), err


def test_json_output_for_one_named_service(daemon: RunningDaemon) -> None:
    code, out, err = health(daemon, "--json", "--service", "custody.v1.SigningService")
    assert code == 0, err
    assert json.loads(out) == {
        "address": daemon.address,
        "service": "custody.v1.SigningService",
        "status": "SERVING",
    }


def test_a_service_the_daemon_does_not_know_exits_1_naming_it(daemon: RunningDaemon) -> None:
    code, out, err = health(daemon, "--service", "custody.v1.NoSuchService")
    assert code == EXIT_NOT_SERVING
    assert out == ""
    assert "custody.v1.NoSuchService" in err


def test_a_certificate_without_a_principal_may_ask(daemon: RunningDaemon, tmp_path: Path) -> None:
    # The container health check uses a certificate of its own that server.toml grants nothing.
    pki = daemon.environment / "pki"
    ca = IssuedCertificate(cert_pem=(pki / "ca.pem").read_bytes(), key_pem=(pki / "ca.key").read_bytes())
    issued = issue_client_certificate(ca, "healthcheck")
    write_public_file(tmp_path / "healthcheck.pem", issued.cert_pem)
    write_private_key(tmp_path / "healthcheck.key", issued.key_pem)
    profile = tmp_path / "healthcheck.toml"
    profile.write_text(
        f'server = "{daemon.address}"\nca_file = "{pki / "ca.pem"}"\n'
        'cert_file = "healthcheck.pem"\nkey_file = "healthcheck.key"\n'
    )
    result = run_custody("health", "--profile", str(profile))
    assert (result.returncode, result.stdout.strip()) == (0, "SERVING"), result.stderr
    # The same certificate is refused by every custody service: it names no configured principal.
    refused = run_custody("--profile", str(profile), "requests", "list")
    assert refused.returncode == 1
    assert "'healthcheck' is not configured" in refused.stderr


@pytest.mark.parametrize(
    ("containerfile", "profile_in_image"),
    [
        ("Containerfile", "/etc/custody/healthcheck.toml"),
        ("Containerfile.dev", "/var/lib/custody/env/profiles/admin.toml"),
    ],
)
def test_the_container_healthcheck_command_passes_against_a_real_daemon(
    daemon: RunningDaemon, containerfile: str, profile_in_image: str
) -> None:
    command = healthcheck_command(DEPLOY / containerfile)
    assert command[0] == "custody"
    assert profile_in_image in command
    # The image's profile path stands for a profile mounted there; here it is the dev environment's.
    arguments = [str(daemon.profile("admin")) if part == profile_in_image else part for part in command[1:]]
    result = run_custody(*arguments, "--server", daemon.address)
    assert (result.returncode, result.stdout.strip()) == (0, "SERVING"), result.stderr


def test_not_serving_exits_1_and_a_stopped_daemon_exits_4(tmp_path: Path) -> None:
    own = start_daemon(tmp_path)
    try:
        assert health(own)[0] == 0
        # Taking the SoftHSM2 token's files away makes the token unreadable, as an unplugged HSM would be;
        # the daemon keeps running and its health monitor reports NOT_SERVING within one interval.
        tokens = own.environment / "softhsm" / "tokens"
        shutil.move(tokens, tokens.with_name("tokens.away"))
        deadline = time.monotonic() + 15
        code, out, err = health(own)
        while code == 0 and time.monotonic() < deadline:
            time.sleep(0.25)
            code, out, err = health(own)
        assert (code, out.strip()) == (EXIT_NOT_SERVING, "NOT_SERVING"), err
    finally:
        own.stop()
    code, out, err = health(own)
    assert code == EXIT_UNREACHABLE
    assert out == ""
    assert f"could not reach the custody daemon at {own.address}" in err


def test_nothing_listening_exits_4(daemon: RunningDaemon) -> None:
    code, out, err = health(daemon, "--timeout", "2", address="127.0.0.1:1")
    assert code == EXIT_UNREACHABLE
    assert out == ""
    assert "could not reach the custody daemon at 127.0.0.1:1" in err
