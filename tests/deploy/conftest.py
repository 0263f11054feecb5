"""Fixtures for the deployment tests: the repository's deploy/ files, and real daemons to health-check."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
DEPLOY = REPOSITORY / "deploy"
CUSTODY = str(Path(sys.executable).parent / "custody")
_LISTENING = re.compile(r"custody listening on (\S+):(\d+)")


@dataclass
class RunningDaemon:
    """A `custody serve` process on a `custody dev init` environment."""

    environment: Path
    process: subprocess.Popen[bytes]
    address: str

    def profile(self, identity: str) -> Path:
        return self.environment / "profiles" / f"{identity}.toml"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def run_custody(*arguments: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the installed `custody` console script as an operator or a container engine would."""
    return subprocess.run(
        [CUSTODY, *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "CUSTODY_PROFILE": ""},
        check=False,
    )


def start_daemon(directory: Path) -> RunningDaemon:
    """Make a development environment in ``directory`` and serve it on a free port."""
    environment = directory / "env"
    made = run_custody("dev", "init", str(environment), timeout=120)
    assert made.returncode == 0, made.stderr
    log_path = directory / "daemon.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [CUSTODY, "serve", "--config", str(environment / "server.toml"), "--listen", "127.0.0.1:0"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        match = _LISTENING.search(log_path.read_text(errors="replace"))
        if match:
            return RunningDaemon(environment, process, f"{match.group(1)}:{match.group(2)}")
        if process.poll() is not None:
            raise AssertionError(f"custody serve exited {process.returncode}: {log_path.read_text()}")
        time.sleep(0.05)
    process.kill()
    process.wait()
    raise AssertionError(f"custody serve did not start within 60 s: {log_path.read_text()}")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    running = start_daemon(tmp_path_factory.mktemp("deploy-daemon"))
    yield running
    running.stop()
