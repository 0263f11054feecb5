"""systemd's notification protocol (sd_notify), spoken directly over $NOTIFY_SOCKET without libsystemd.

With ``Type=notify`` systemd waits for READY=1 before it calls the service started, shows STATUS= lines in
``systemctl status``, and with ``WatchdogSec=`` restarts the service when WATCHDOG=1 stops arriving. The
watchdog is fed while the daemon is alive, which the caller decides (the daemon: its health monitor's loop
keeps turning), not while its HSM and database are healthy: health is what the gRPC health service reports.
Were a passing outage to stop the pings, systemd would kill a daemon that was about to recover, and the
restart would meet the same outage. Outside systemd (no $NOTIFY_SOCKET) every call here does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

_MIN_WATCHDOG_INTERVAL_SECONDS = 0.05
# A datagram to a receiver whose queue is full blocks the sender; systemd reads promptly, so a send that takes
# longer than this means something is wrong, and the daemon must not hang on it (at shutdown least of all).
_SEND_TIMEOUT_SECONDS = 1.0


def notify_socket_address(environment: Mapping[str, str]) -> str | None:
    """The socket systemd listens on, in the form socket.sendto takes; None outside systemd.

    A name starting with '@' is an abstract socket, whose real name begins with a NUL byte.
    """
    address = environment.get("NOTIFY_SOCKET", "")
    if not address:
        return None
    if address.startswith("@"):
        return "\0" + address[1:]
    return address


def watchdog_interval(environment: Mapping[str, str], pid: int) -> float | None:
    """Half the watchdog period systemd asked for, in seconds; None when no watchdog applies to ``pid``."""
    usec = environment.get("WATCHDOG_USEC", "")
    owner = environment.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and (not owner.isdigit() or int(owner) != pid):
        return None
    return max(int(usec) / 2_000_000, _MIN_WATCHDOG_INTERVAL_SECONDS)


class SystemdNotifier:
    """Sends READY, STATUS, WATCHDOG and STOPPING to systemd; a no-op when the daemon runs without it."""

    def __init__(self, environment: Mapping[str, str] | None = None) -> None:
        environment = os.environ if environment is None else environment
        self._address = notify_socket_address(environment)
        self._watchdog_interval = watchdog_interval(environment, os.getpid())
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, *fields: str) -> bool:
        """Send ``fields`` (e.g. "READY=1") as one datagram; True when it was delivered.

        A failure is logged and swallowed: systemd being unreachable must not stop the daemon from signing.
        """
        if self._address is None:
            return False
        message = "\n".join(fields).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.settimeout(_SEND_TIMEOUT_SECONDS)
                sock.sendto(message, self._address)
        except OSError as exc:
            log.warning("could not notify systemd (%s)", exc.strerror or type(exc).__name__)
            return False
        return True

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def stopping(self) -> None:
        self.stop_watchdog()
        self.send("STOPPING=1", "STATUS=stopping")

    def start_watchdog(self, alive: Callable[[], bool]) -> None:
        """Ping every half watchdog period while ``alive()`` is true; does nothing without a watchdog."""
        if self._address is None or self._watchdog_interval is None or self._thread is not None:
            return
        interval = self._watchdog_interval
        self._thread = threading.Thread(
            target=self._feed_watchdog, args=(alive, interval), name="systemd-watchdog", daemon=True
        )
        self._thread.start()

    def stop_watchdog(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _feed_watchdog(self, alive: Callable[[], bool], interval: float) -> None:
        was_alive = True
        while not self._stopped.wait(interval):
            try:
                ok = alive()
            except Exception:  # A failed check counts as not alive, and the thread must keep running.
                log.exception("the liveness check for the systemd watchdog failed")
                ok = False
            if ok:
                self.send("WATCHDOG=1")
            elif was_alive:
                # Said once: the journal shows why systemd is about to restart the daemon.
                log.error("the daemon looks hung; no longer feeding the systemd watchdog")
            was_alive = ok
