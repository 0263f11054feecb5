"""The daemon refuses to start on a bad configuration, naming the file and the problem in one sentence."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from .conftest import CUSTODY, DevEnv, start_daemon, stop_daemon


@pytest.fixture
def fresh_env(tmp_path: Path) -> DevEnv:
    directory = tmp_path / "env"
    result = subprocess.run(
        [CUSTODY, "dev", "init", str(directory)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return DevEnv(directory)


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
