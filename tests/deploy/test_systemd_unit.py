"""deploy/custody.service: `systemd-analyze verify` accepts it, and its sandboxing and hardening settings are there.

Added run time: under 1 s.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.conftest import CUSTODY, DEPLOY

UNIT = DEPLOY / "custody.service"
INSTALLED_EXECUTABLE = "/usr/local/bin/custody"


def directives(unit_text: str) -> dict[str, list[str]]:
    """Every `Key=value` of the unit, in order, keyed by `Section.Key` (keys may repeat)."""
    found: dict[str, list[str]] = {}
    section = ""
    for raw_line in unit_text.splitlines():
        line = raw_line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, separator, value = line.partition("=")
        assert separator, f"not a directive: {line!r}"
        found.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return found


@pytest.fixture(scope="module")
def unit() -> dict[str, list[str]]:
    return directives(UNIT.read_text(encoding="utf-8"))


@pytest.mark.parametrize("postgresql", [False, True], ids=["as-shipped", "postgresql-lines-enabled"])
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path, postgresql: bool) -> None:
    systemd_analyze = shutil.which("systemd-analyze")
    if systemd_analyze is None:
        pytest.skip("systemd-analyze is not installed")
    text = UNIT.read_text(encoding="utf-8")
    assert f"ExecStart={INSTALLED_EXECUTABLE} " in text
    if postgresql:
        # The operator uncomments these two lines for a PostgreSQL database; they must be valid too.
        commented = [line for line in text.splitlines() if line.startswith("#") and "pgpass" in line]
        assert len(commented) == 2
        for line in commented:
            text = text.replace(line, line[1:])
    # verify checks that ExecStart names an existing executable, so the copy points at the venv's custody.
    copy = tmp_path / "custody.service"
    copy.write_text(text.replace(f"ExecStart={INSTALLED_EXECUTABLE} ", f"ExecStart={CUSTODY} "))
    result = subprocess.run(
        [systemd_analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    # verify reports some problems (unknown directives, bad values) as warnings with exit code 0.
    assert "custody.service" not in result.stderr, result.stderr


def test_the_daemon_runs_as_its_own_user_with_a_notify_watchdog(unit: dict[str, list[str]]) -> None:
    assert unit["Service.User"] == ["custody"]
    assert unit["Service.Group"] == ["custody"]
    assert unit["Service.Type"] == ["notify"]
    assert unit["Service.NotifyAccess"] == ["main"]
    assert unit["Service.WatchdogSec"] == ["30"]
    assert unit["Service.ExecStart"] == [f"{INSTALLED_EXECUTABLE} serve --config /etc/custody/server.toml"]
    assert unit["Service.Restart"] == ["on-failure"]
    # A startup refusal (exit 2) is not retried: a wrong PIN tried again and again would lock the token.
    assert unit["Service.RestartPreventExitStatus"] == ["2"]
    # An HSM or database unreachable at start (exit 75) is retried for as long as the outage lasts: no start
    # limit may leave the unit failed after a few attempts.
    assert unit["Unit.StartLimitIntervalSec"] == ["0"]
    assert "Unit.StartLimitBurst" not in unit
    assert "Service.TimeoutStopSec" in unit


def test_the_unit_is_hardened(unit: dict[str, list[str]]) -> None:
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
        "StateDirectory": "custody",
        "LimitCORE": "0",
        "UMask": "0077",
    }
    for key, value in expected.items():
        assert unit[f"Service.{key}"] == [value], key
    # The state directory is the only place the daemon may write.
    assert unit["Service.ReadWritePaths"] == ["/var/lib/custody"]
