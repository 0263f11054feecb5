"""Waiting for a request: the request id at once and each change of its state, on stderr only.

The daemon side is a real gRPC server on the development environment's mTLS material with a scripted
SigningService: the test is about what the command line tells the person waiting, not about the daemon.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest

from custody.api._gen import custody_pb2, custody_pb2_grpc
from custody.cli.dev_env import DevEnvironment, init_dev_environment
from custody.cli.main import run

_REQUEST_ID = "req-waiting-0001"
# The generated gRPC module has no type annotations; going through Any keeps its untyped calls out of mypy.
_GENERATED_GRPC: Any = custody_pb2_grpc


def _request(state: str) -> custody_pb2.SigningRequest:
    return custody_pb2.SigningRequest(
        request_id=_REQUEST_ID,
        key_label="ops",
        kind=custody_pb2.PAYLOAD_KIND_MESSAGE,
        state="REQUEST_STATE_" + state,
    )


class _ScriptedSigning(custody_pb2_grpc.SigningServiceServicer):
    """Answers GetRequest with a pending request and streams the given states, repeating none."""

    def __init__(self, states: list[str]) -> None:
        self.states = states

    def GetRequest(self, request: object, context: grpc.ServicerContext) -> custody_pb2.GetRequestResponse:
        return custody_pb2.GetRequestResponse(request=_request("PENDING_APPROVAL"))

    def WatchRequest(
        self, request: object, context: grpc.ServicerContext
    ) -> Iterator[custody_pb2.SigningRequest]:
        for state in self.states:
            yield _request(state)


@pytest.fixture(scope="module")
def environment(tmp_path_factory: pytest.TempPathFactory) -> DevEnvironment:
    return init_dev_environment(tmp_path_factory.mktemp("waiting") / "env", None)


def _serve(environment: DevEnvironment, servicer: _ScriptedSigning) -> tuple[grpc.Server, str]:
    pki = environment.directory / "pki"
    credentials = grpc.ssl_server_credentials(
        [((pki / "server.key").read_bytes(), (pki / "server.pem").read_bytes())],
        root_certificates=(pki / "ca.pem").read_bytes(),
        require_client_auth=True,
    )
    server = grpc.server(thread_pool=ThreadPoolExecutor(max_workers=2))
    _GENERATED_GRPC.add_SigningServiceServicer_to_server(servicer, server)
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    return server, f"127.0.0.1:{port}"


@pytest.fixture
def scripted_daemon(environment: DevEnvironment) -> Iterator[str]:
    server, address = _serve(
        environment, _ScriptedSigning(["PENDING_APPROVAL", "PENDING_APPROVAL", "APPROVED", "REJECTED"])
    )
    try:
        yield address
    finally:
        server.stop(grace=None)


def _profile(environment: DevEnvironment) -> Path:
    return environment.profiles["backend"]


def test_requests_wait_reports_the_id_and_each_state_change_on_stderr(
    environment: DevEnvironment, scripted_daemon: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(
        [
            "--profile",
            str(_profile(environment)),
            "--server",
            scripted_daemon,
            "requests",
            "wait",
            _REQUEST_ID,
        ]
    )
    captured = capsys.readouterr()
    assert code == 3
    progress = captured.err.splitlines()
    # The first line names the request at once; a state repeated by the stream is not reported twice.
    assert progress == [
        f"request {_REQUEST_ID}: PENDING_APPROVAL (waiting; Ctrl-C stops waiting and leaves the request as it is)",
        f"request {_REQUEST_ID}: APPROVED",
        f"request {_REQUEST_ID}: REJECTED",
    ]
    assert "REJECTED" in captured.out


def test_requests_wait_with_json_keeps_stdout_one_document(
    environment: DevEnvironment, scripted_daemon: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(
        [
            "--profile",
            str(_profile(environment)),
            "--server",
            scripted_daemon,
            "--json",
            "requests",
            "wait",
            _REQUEST_ID,
        ]
    )
    captured = capsys.readouterr()
    assert code == 3
    document = json.loads(captured.out)
    assert document["request_id"] == _REQUEST_ID
    assert document["state"] == "REJECTED"
    assert f"request {_REQUEST_ID}: PENDING_APPROVAL" in captured.err
    # stderr is not a terminal here, so no elapsed time and no cursor or colour codes are written.
    assert "\x1b" not in captured.err
    assert " after " not in captured.err


def test_on_a_terminal_each_change_says_how_long_it_waited(
    environment: DevEnvironment,
    scripted_daemon: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # capsys stands in for stderr; saying it is a terminal is what a person at one would have.
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    profile = str(_profile(environment))
    assert run(["--profile", profile, "--server", scripted_daemon, "requests", "wait", _REQUEST_ID]) == 3
    progress = capsys.readouterr().err.splitlines()
    assert progress[0].endswith("(waiting; Ctrl-C stops waiting and leaves the request as it is)")
    # The scripted daemon answers at once, but a busy machine may take a second or two.
    assert [re.sub(r" after \d+s$", " after Ns", line) for line in progress[1:]] == [
        f"request {_REQUEST_ID}: APPROVED after Ns",
        f"request {_REQUEST_ID}: REJECTED after Ns",
    ]
    assert "\x1b" not in "".join(progress)
