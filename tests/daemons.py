"""Starting `custody serve` for tests and knowing when it serves: through systemd's notification socket, which the
daemon speaks whenever $NOTIFY_SOCKET is set (custody/observability/systemd.py), as systemd itself learns it.

The daemon sends READY=1 once it listens, its background work runs and its first health check is done, with a
STATUS line naming the address it serves on; a test therefore needs neither a fixed port (the daemon takes a
free one, so pytest-xdist workers never collide) nor the daemon's log.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

CUSTODY = str(Path(sys.executable).parent / "custody")
START_TIMEOUT_SECONDS = 60
_SERVING = re.compile(r"STATUS=serving on (\S+:\d+)")
_LISTENING = re.compile(r"custody listening on (\S+):(\d+)")


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class NotifyListener:
    """A unix datagram socket bound where systemd would bind $NOTIFY_SOCKET, read by a thread as systemd reads
    it (a receiver that stops reading would make the sender block). ``lines`` holds every field received."""

    def __init__(self) -> None:
        # A short path: sun_path holds about 100 bytes, and pytest's temporary directories can be longer.
        self._directory = Path(tempfile.mkdtemp(prefix="custody-notify-"))
        self.path = self._directory / "notify"
        self.lines: list[str] = []
        self._closing = threading.Event()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(self.path))
        self._sock.settimeout(0.1)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        # Reading stops only once the queue is empty after close() was asked for, so nothing the daemon sent
        # before it exited (STOPPING=1) is lost.
        while True:
            try:
                self.lines.extend(self._sock.recv(4096).decode().split("\n"))
            except TimeoutError:
                if self._closing.is_set():
                    return
            except OSError:
                return

    def wait_for(self, line: str, timeout: float = 30.0) -> None:
        wait_for(lambda: line in self.lines, f"{line} on the notify socket", timeout)

    def serving_address(self) -> str | None:
        """The address of the STATUS line that came with READY=1; None before the daemon is ready."""
        if "READY=1" not in self.lines:
            return None
        matches = [_SERVING.fullmatch(line) for line in self.lines]
        return next(match.group(1) for match in matches if match)

    def close(self) -> None:
        self._closing.set()
        self._thread.join(timeout=5)
        self._sock.close()
        shutil.rmtree(self._directory, ignore_errors=True)


def serve(
    arguments: Sequence[str], log_path: Path, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], NotifyListener]:
    """Start `custody serve` with ``arguments``, its output to ``log_path`` and $NOTIFY_SOCKET on a listener
    of its own."""
    listener = NotifyListener()
    arguments = list(arguments)
    # A daemon on a free gRPC port takes a free JSON-RPC port too: `custody dev init` puts the endpoint at a
    # fixed port (the gRPC port + 1), which daemons running side by side would otherwise share.
    on_a_free_port = "--listen" in arguments and arguments[arguments.index("--listen") + 1].endswith(":0")
    if on_a_free_port and "--jsonrpc-listen" not in arguments:
        arguments += ["--jsonrpc-listen", "127.0.0.1:0"]
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [CUSTODY, "serve", *arguments],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(extra_env or {}), "NOTIFY_SOCKET": str(listener.path)},
        )
    return process, listener


def wait_until_serving(process: subprocess.Popen[str], listener: NotifyListener, log_path: Path) -> str:
    """The address the daemon serves on, once it said READY=1; raises when it exits or takes too long."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        address = listener.serving_address()
        if address is not None:
            return address
        if process.poll() is not None:
            raise AssertionError(f"custody serve exited {process.returncode}: {log_path.read_text()}")
        time.sleep(0.02)
    process.kill()
    process.wait()
    raise AssertionError(f"custody serve did not become ready within 60 s: {log_path.read_text()}")


def wait_until_listening(process: subprocess.Popen[str], listener: NotifyListener, log_path: Path) -> str:
    """For a daemon that waits for its HSM token, and so is not ready by design: once it reported the wait on
    the notify socket, the address its listening line names."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if any(line.startswith("STATUS=waiting for the HSM token") for line in listener.lines):
            match = _LISTENING.search(log_path.read_text(errors="replace"))
            assert match, log_path.read_text()
            return f"{match.group(1)}:{match.group(2)}"
        if process.poll() is not None:
            raise AssertionError(f"custody serve exited {process.returncode}: {log_path.read_text()}")
        time.sleep(0.02)
    process.kill()
    process.wait()
    raise AssertionError(f"custody serve did not report waiting for its token: {log_path.read_text()}")
