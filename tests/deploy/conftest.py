"""Fixtures for the deployment tests: the repository's deploy/ files, and real daemons to health-check."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.daemons import CUSTODY, NotifyListener, serve, wait_until_serving

REPOSITORY = Path(__file__).resolve().parents[2]
DEPLOY = REPOSITORY / "deploy"


@dataclass
class RunningDaemon:
    """A `custody serve` process on a `custody dev init` environment."""

    environment: Path
    process: subprocess.Popen[str]
    address: str
    notifications: NotifyListener

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
        self.notifications.close()


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
    process, listener = serve(
        ["--config", str(environment / "server.toml"), "--listen", "127.0.0.1:0"], log_path
    )
    try:
        address = wait_until_serving(process, listener, log_path)
    except BaseException:
        listener.close()
        raise
    return RunningDaemon(environment, process, address, listener)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    running = start_daemon(tmp_path_factory.mktemp("deploy-daemon"))
    yield running
    running.stop()
