"""The JSON-RPC listener's HTTP handling, on a real socket of the loopback interface: what it answers when
every connection slot is taken, how long a request may take to arrive, how it reads Content-Length and Expect,
and that stopping it is never held up by clients.

The endpoint behind the listener refuses every caller (no credentials are valid): these tests are about what
happens before and around authentication, never about a call.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, cast

import pytest

from custody.domain.errors import Unauthenticated
from custody.jsonrpc import server as listener
from custody.jsonrpc.auth import Credentials

# Long enough for the slowest machine to answer, short enough that a listener that never answers fails the
# test instead of hanging it.
ANSWER_WAIT_SECONDS = 10.0


class RefusingEndpoint:
    """Refuses every caller as unknown, as the real endpoint does a request without credentials."""

    def authenticate(self, credentials: Credentials) -> Any:
        raise Unauthenticated("no credentials were presented")


class StoppedRecorder:
    def stop(self) -> None:
        pass


@pytest.fixture
def running() -> Iterator[listener.RunningJsonRpc]:
    server = listener._Server(
        ("127.0.0.1", 0),
        cast(Any, RefusingEndpoint()),
        None,
        max_connections=1,
        max_body_bytes=1024,
        family=socket.AF_INET,
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    running = listener.RunningJsonRpc(server, thread, server.server_address[1], cast(Any, StoppedRecorder()))
    yield running
    running.stop(grace_seconds=2.0)


def connect(running: listener.RunningJsonRpc) -> socket.socket:
    return socket.create_connection(("127.0.0.1", running.port), timeout=ANSWER_WAIT_SECONDS)


def read_answer(connection: socket.socket) -> bytes:
    """Everything the listener sends until it closes the connection."""
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received


def holding_the_slot(running: listener.RunningJsonRpc) -> socket.socket:
    """A client that started a request and sends the rest of its headers slowly (or never): once the listener
    has accepted it, it holds the only slot."""
    dribbler = connect(running)
    dribbler.sendall(b"POST / HTTP/1.1\r\nHost: custody\r\n")
    return dribbler


def post(headers: str, body: bytes = b"") -> bytes:
    # HTTP headers are ISO-8859-1: "\u00b2" goes out as the one byte the listener reads as a superscript two.
    return f"POST / HTTP/1.1\r\nHost: custody\r\n{headers}\r\n".encode("latin-1") + body


def test_a_listener_with_every_slot_taken_answers_503_instead_of_making_clients_wait(
    running: listener.RunningJsonRpc,
) -> None:
    dribbler = holding_the_slot(running)
    # Sent until the listener is seen full: the dribbler's connection may be accepted a moment after it connects.
    answer = b""
    for _ in range(50):
        client = connect(running)
        client.sendall(post("Content-Length: 2\r\n", b"{}"))
        answer = read_answer(client)
        client.close()
        if answer.startswith(b"HTTP/1.1 503"):
            break
    assert answer.startswith(b"HTTP/1.1 503"), answer
    assert b"Retry-After: 1" in answer and b'"code":-32005' in answer.replace(b" ", b"")
    dribbler.close()


def test_a_request_whose_headers_dribble_in_is_cut_off_and_frees_its_slot(
    running: listener.RunningJsonRpc, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listener, "REQUEST_READ_SECONDS", 0.5)
    dribbler = holding_the_slot(running)
    dribbler.settimeout(0.2)
    cut_off = False
    for line in range(200):
        try:
            dribbler.sendall(f"X-Line-{line}: still coming\r\n".encode())
            if dribbler.recv(65536) == b"":
                cut_off = True
                break
        except TimeoutError:
            continue
        except OSError:
            cut_off = True
            break
    assert cut_off, "a client sending a header line every 0.2 s kept its connection"
    dribbler.close()
    # The slot is free again once the cut-off connection's thread has ended: the next client is served (here
    # refused for its missing credentials); until then it is told the listener is busy.
    answer = b""
    for _ in range(100):
        client = connect(running)
        client.sendall(post("Content-Length: 2\r\n", b"{}"))
        answer = read_answer(client)
        client.close()
        if not answer.startswith(b"HTTP/1.1 503"):
            break
        time.sleep(0.05)
    assert answer.startswith(b"HTTP/1.1 401"), answer


def test_stopping_is_not_held_up_by_clients_holding_or_waiting_for_slots(
    running: listener.RunningJsonRpc,
) -> None:
    clients = [holding_the_slot(running)]
    clients += [connect(running) for _ in range(5)]
    for client in clients[1:]:
        client.sendall(b"POST / HTTP/1.1\r\n")
    stopping = threading.Thread(target=running.stop, args=(2.0,), daemon=True)
    stopping.start()
    stopping.join(timeout=30)
    assert not stopping.is_alive(), "stop() did not return while clients held the listener's slots"
    for client in clients:
        client.close()


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        ("Content-Length: \u00b2\r\n", b"1 to 12 digits"),
        ("Content-Length: " + "9" * 5000 + "\r\n", b"1 to 12 digits"),
        ("Content-Length: -1\r\n", b"1 to 12 digits"),
        ("Content-Length: 2\r\nContent-Length: 2\r\n", b"one Content-Length"),
        ("", b"Content-Length header is required"),
    ],
    ids=["superscript-two", "five-thousand-digits", "negative", "repeated", "missing"],
)
def test_a_content_length_that_is_not_one_plain_number_is_refused_naming_it(
    running: listener.RunningJsonRpc, headers: str, words: bytes
) -> None:
    client = connect(running)
    client.sendall(post(headers, b"{}"))
    answer = read_answer(client)
    assert answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 411")), answer
    assert words in answer


def test_100_continue_is_sent_only_to_an_authenticated_caller(running: listener.RunningJsonRpc) -> None:
    client = connect(running)
    client.sendall(post("Content-Length: 2\r\nExpect: 100-continue\r\n"))
    answer = read_answer(client)
    assert answer.startswith(b"HTTP/1.1 401"), answer
    assert b"100 Continue" not in answer
