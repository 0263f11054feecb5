"""sd_notify over a real unix datagram socket bound by the test, as systemd binds $NOTIFY_SOCKET; the watchdog
fed by the daemon's real health monitor (publishing to a real gRPC health servicer) while its checks fail."""

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
from grpc_health.v1 import health, health_pb2

from custody.api.server import HealthMonitor
from custody.app.custody import Health
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


def drain(sock: socket.socket) -> None:
    """Throw away what has arrived, after letting a ping already decided on arrive."""
    time.sleep(0.15)
    sock.setblocking(False)
    while True:
        try:
            sock.recv(4096)
        except BlockingIOError:
            break
    sock.settimeout(5)


def assert_no_ping_within(sock: socket.socket, seconds: float) -> None:
    sock.settimeout(seconds)
    with pytest.raises(TimeoutError):
        sock.recv(4096)
    sock.settimeout(5)


def test_the_watchdog_pings_only_while_alive(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    alive = threading.Event()
    alive.set()
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    notifier.start_watchdog(alive.is_set)
    try:
        assert receive(sock) == "WATCHDOG=1"
        assert receive(sock) == "WATCHDOG=1"
        alive.clear()
        drain(sock)
        assert_no_ping_within(sock, 0.5)
        alive.set()
        assert receive(sock) == "WATCHDOG=1"
    finally:
        notifier.stop_watchdog()


class ScriptedHealth:
    """The daemon's health check as the monitor sees it: answers NOT_SERVING or SERVING as told, or blocks
    until released, as a check stuck in a library call would."""

    def __init__(self) -> None:
        self.serving = True
        self.unblocked = threading.Event()
        self.unblocked.set()
        self.calls = 0

    def __call__(self) -> Health:
        self.unblocked.wait()
        self.calls += 1
        detail = "" if self.serving else "the HSM token cannot be read; the database is unreachable"
        return Health(hsm_ok=self.serving, store_ok=self.serving, detail=detail)


def test_the_watchdog_keeps_pinging_while_not_serving_and_stops_when_the_monitor_hangs(
    listener: tuple[socket.socket, str],
) -> None:
    sock, path = listener
    check = ScriptedHealth()
    servicer = health.HealthServicer(experimental_non_blocking=True)
    monitor = HealthMonitor(check, servicer, ["custody.v1.SigningService"], interval=0.05, stall_seconds=0.3)
    monitor.start()
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    # The daemon feeds the watchdog exactly so (custody/bootstrap.py).
    notifier.start_watchdog(monitor.working)
    try:
        assert receive(sock) == "WATCHDOG=1"

        # An outage: the checks fail, health says NOT_SERVING, and the watchdog is fed all the same, so
        # systemd leaves the daemon running to serve again when the HSM and the database are back.
        check.serving = False
        calls = check.calls
        while check.calls < calls + 2:
            time.sleep(0.01)
        assert not monitor.serving
        assert (
            servicer.Check(health_pb2.HealthCheckRequest(), None).status
            == health_pb2.HealthCheckResponse.NOT_SERVING
        )
        drain(sock)
        for _ in range(3):
            assert receive(sock) == "WATCHDOG=1"
        assert not monitor.serving

        # A check that never returns is a hung daemon: the pings stop and systemd would restart it.
        check.unblocked.clear()
        time.sleep(0.5)  # Longer than interval + stall_seconds, so the last finished check is overdue.
        drain(sock)
        assert_no_ping_within(sock, 0.5)

        # Once the checks finish again (and pass), so do the pings.
        check.serving = True
        check.unblocked.set()
        assert receive(sock) == "WATCHDOG=1"
        while not monitor.serving:
            time.sleep(0.01)
    finally:
        notifier.stop_watchdog()
        monitor.stop()
        check.unblocked.set()


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
