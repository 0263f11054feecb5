"""sd_notify over a real unix datagram socket bound by the test, as systemd binds $NOTIFY_SOCKET."""

from __future__ import annotations

import os
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from custody.observability.systemd import SystemdNotifier, notify_socket_address, watchdog_interval


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, str]]:
    # A short directory: unix socket paths are limited to about 100 bytes, and pytest's tmp_path can be longer.
    directory = Path(tempfile.mkdtemp(prefix="custody-notify-"))
    path = directory / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    yield sock, str(path)
    sock.close()
    path.unlink()
    directory.rmdir()


def receive(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_ready_status_and_stopping_arrive_as_datagrams(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    notifier.ready("serving on 127.0.0.1:50051")
    assert receive(sock) == "READY=1\nSTATUS=serving on 127.0.0.1:50051"
    notifier.status("not serving: the HSM token cannot be read")
    assert receive(sock) == "STATUS=not serving: the HSM token cannot be read"
    notifier.stopping()
    assert receive(sock) == "STOPPING=1\nSTATUS=stopping"


def test_an_abstract_socket_name_is_used_as_systemd_writes_it() -> None:
    name = f"custody-test-{secrets.token_hex(6)}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        SystemdNotifier({"NOTIFY_SOCKET": "@" + name}).ready("up")
        assert receive(sock) == "READY=1\nSTATUS=up"
    finally:
        sock.close()


def test_without_systemd_nothing_is_sent_and_nothing_fails() -> None:
    notifier = SystemdNotifier({})
    assert not notifier.enabled
    assert notifier.send("READY=1") is False
    notifier.start_watchdog(lambda: True)
    notifier.stopping()


def test_a_vanished_socket_is_reported_not_raised(tmp_path: Path) -> None:
    assert SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}).send("READY=1") is False


def test_the_watchdog_pings_only_while_healthy(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    healthy = threading.Event()
    healthy.set()
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    notifier.start_watchdog(healthy.is_set)
    try:
        assert receive(sock) == "WATCHDOG=1"
        assert receive(sock) == "WATCHDOG=1"
        healthy.clear()
        time.sleep(0.15)  # Lets a ping already decided on arrive before the socket is drained.
        sock.setblocking(False)
        while True:
            try:
                sock.recv(4096)
            except BlockingIOError:
                break
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(4096)
        healthy.set()
        sock.settimeout(5)
        assert receive(sock) == "WATCHDOG=1"
    finally:
        notifier.stop_watchdog()


def test_environment_parsing() -> None:
    assert notify_socket_address({}) is None
    assert notify_socket_address({"NOTIFY_SOCKET": "@name"}) == "\0name"
    assert notify_socket_address({"NOTIFY_SOCKET": "/run/systemd/notify"}) == "/run/systemd/notify"
    pid = os.getpid()
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}, pid) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(pid)}, pid) == 15.0
    # The watchdog of another process (a parent that exported its variables) is not ours to feed.
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(pid + 1)}, pid) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, pid) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}, pid) is None
