"""Fixtures the command-line tests share: no profile in sight, a port nothing listens on, and a TLS server with
no services. Each test module brings its own `environment` (a `custody dev init` directory)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from custody.cli.dev_env import DevEnvironment


@pytest.fixture
def no_profile_in_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.delenv("CUSTODY_PROFILE", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def closed_port() -> Iterator[int]:
    # A bound socket that never listens: connecting to it is refused at once, and no other process can take
    # the port while the test runs.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def bare_tls_server(environment: DevEnvironment) -> Iterator[str]:
    """A real gRPC server with the environment's TLS material and no services registered."""
    pki = environment.directory / "pki"
    credentials = grpc.ssl_server_credentials(
        [((pki / "server.key").read_bytes(), (pki / "server.pem").read_bytes())],
        root_certificates=(pki / "ca.pem").read_bytes(),
        require_client_auth=True,
    )
    server = grpc.server(thread_pool=ThreadPoolExecutor(max_workers=2))
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)
