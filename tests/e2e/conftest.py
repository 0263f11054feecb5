"""End-to-end fixtures: a real `custody dev init` environment and a real daemon process, driven over mTLS."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from custody.api._gen import custody_pb2_grpc as pb_grpc

CUSTODY = str(Path(sys.executable).parent / "custody")
IDENTITIES = ("backend", "alice", "bob", "carol", "dave", "admin")
_LISTENING = re.compile(r"custody listening on (\S+):(\d+)")


@dataclass
class Daemon:
    process: subprocess.Popen[str]
    address: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class DevEnv:
    directory: Path

    @property
    def config(self) -> Path:
        return self.directory / "server.toml"

    def profile(self, identity: str) -> Path:
        return self.directory / "profiles" / f"{identity}.toml"

    def pki(self, name: str) -> bytes:
        return (self.directory / "pki" / name).read_bytes()


def run_cli(
    env: DevEnv,
    daemon: Daemon | None,
    identity: str | None,
    *args: str,
    stdin: str | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run the real `custody` console script as a user would."""
    command = [CUSTODY]
    if identity is not None:
        command += ["--profile", str(env.profile(identity))]
    if daemon is not None:
        command += ["--server", daemon.address]
    command += list(args)
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
        env={**os.environ, "CUSTODY_PROFILE": ""},
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{command} exited {result.returncode}: {result.stderr}")
    return result


def cli_json(env: DevEnv, daemon: Daemon, identity: str, *args: str) -> object:
    return json.loads(run_cli(env, daemon, identity, "--json", *args).stdout)


def start_daemon(env: DevEnv, log_path: Path, extra_env: dict[str, str] | None = None) -> Daemon:
    log_file = log_path.open("w")
    process = subprocess.Popen(
        [CUSTODY, "serve", "--config", str(env.config), "--listen", "127.0.0.1:0"],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(extra_env or {})},
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        match = _LISTENING.search(log_path.read_text(errors="replace"))
        if match:
            return Daemon(process=process, address=f"{match.group(1)}:{match.group(2)}", log_path=log_path)
        if process.poll() is not None:
            raise AssertionError(f"custody serve exited {process.returncode}: {log_path.read_text()}")
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"custody serve did not start within 60 s: {log_path.read_text()}")


def stop_daemon(daemon: Daemon) -> int:
    if daemon.process.poll() is None:
        daemon.process.send_signal(signal.SIGTERM)
        try:
            return daemon.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.process.kill()
            daemon.process.wait()
            raise
    return daemon.process.returncode


def channel_for(
    env: DevEnv,
    daemon: Daemon,
    identity: str | None,
    *,
    ca: bytes | None = None,
    cert: bytes | None = None,
    key: bytes | None = None,
) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca if ca is not None else env.pki("ca.pem"),
        private_key=key if key is not None else (env.pki(f"{identity}.key") if identity else None),
        certificate_chain=cert if cert is not None else (env.pki(f"{identity}.pem") if identity else None),
    )
    return grpc.secure_channel(daemon.address, credentials)


@pytest.fixture(scope="session")
def dev_env(tmp_path_factory: pytest.TempPathFactory) -> DevEnv:
    directory = tmp_path_factory.mktemp("e2e") / "env"
    result = subprocess.run(
        [CUSTODY, "dev", "init", str(directory)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return DevEnv(directory)


@pytest.fixture(scope="session")
def daemon(dev_env: DevEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    running = start_daemon(dev_env, tmp_path_factory.mktemp("logs") / "daemon.log")
    yield running
    stop_daemon(running)


@pytest.fixture(scope="session")
def keys(dev_env: DevEnv, daemon: Daemon) -> dict[str, dict[str, str]]:
    """The dev environment's two keys, created once through the CLI as the admin."""
    created = {}
    for label in ("ops", "treasury"):
        created[label] = cli_json(dev_env, daemon, "admin", "keys", "create", "--label", label)
    return created  # type: ignore[return-value]


@pytest.fixture
def signing_stub(dev_env: DevEnv, daemon: Daemon) -> Iterator[pb_grpc.SigningServiceStub]:
    with channel_for(dev_env, daemon, "backend") as channel:
        yield pb_grpc.SigningServiceStub(channel)
