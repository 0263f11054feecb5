"""The gRPC server: mTLS, message limits, custody's services, standard health and reflection."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from custody.api.auth import CertificateAuthenticator
from custody.api.servicers import CustodySource, add_servicers
from custody.app.custody import Health
from custody.config import ServerConfig
from custody.domain.errors import ConfigurationError

log = logging.getLogger(__name__)

HEALTH_CHECK_INTERVAL_SECONDS = 2.0


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    health_monitor: HealthMonitor

    def stop(self, grace_seconds: float) -> None:
        """Refuse new calls, let in-flight calls finish within the grace period, then stop."""
        self.health_monitor.stop()
        self.server.stop(grace_seconds).wait()


class HealthMonitor:
    """Keeps the standard health service truthful: NOT_SERVING while the HSM or the database is unusable,
    SERVING again as soon as both answer.

    ``check_health`` is the daemon's whole health check, recovery attempts included (the composition root
    reopens an HSM that went away from inside it); this class only runs it every ``interval`` seconds,
    publishes the answer and reports changes to ``on_change``.
    """

    def __init__(
        self,
        check_health: Callable[[], Health],
        servicer: health.HealthServicer,
        services: list[str],
        *,
        interval: float = HEALTH_CHECK_INTERVAL_SECONDS,
        on_change: Callable[[Health], None] | None = None,
    ) -> None:
        self._check_health = check_health
        self._servicer = servicer
        self._services = ["", *services]
        self._interval = interval
        self._on_change = on_change
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health-monitor", daemon=True)
        self._serving: bool | None = None

    @property
    def serving(self) -> bool:
        """The last published answer (False before the first check)."""
        return bool(self._serving)

    def start(self) -> None:
        self.check()
        self._thread.start()

    def check(self) -> None:
        health_now = self._check_health()
        changed = health_now.serving != self._serving
        if changed:
            if not health_now.serving:
                log.warning("not serving: %s", health_now.detail or "a dependency is unavailable")
            elif self._serving is not None:
                log.info("serving again")
            self._serving = health_now.serving
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if health_now.serving
            else (health_pb2.HealthCheckResponse.NOT_SERVING)
        )
        for service in self._services:
            self._servicer.set(service, status)
        if changed and self._on_change is not None:
            self._on_change(health_now)

    def stop(self) -> None:
        self._stopped.set()
        self._serving = False
        for service in self._services:
            self._servicer.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                self.check()
            except Exception:  # The monitor must outlive any one failed check.
                log.exception("health check failed")


def _read_file(path: object, what: str) -> bytes:
    try:
        with open(path, "rb") as handle:  # type: ignore[call-overload]
            return handle.read()  # type: ignore[no-any-return]
    except OSError as exc:
        raise ConfigurationError(f"cannot read the {what} {path}: {exc.strerror}") from None


def start_server(
    custody: CustodySource,
    config: ServerConfig,
    listen: str,
    check_health: Callable[[], Health],
    *,
    on_health_change: Callable[[Health], None] | None = None,
) -> RunningServer:
    """Serve custody's services on ``listen``. ``custody`` gives the application for each call; it may raise
    Unavailable while the daemon is still waiting for its HSM, and the call then answers UNAVAILABLE."""
    limits = config.limits
    options = [
        ("grpc.max_receive_message_length", limits.max_message_bytes),
        ("grpc.max_send_message_length", limits.max_message_bytes),
        # One listener per address: a second daemon on the same port must fail, not share it.
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=limits.max_workers, thread_name_prefix="rpc"),
        options=options,
        maximum_concurrent_rpcs=limits.max_concurrent_rpcs,
    )
    services = add_servicers(server, custody, CertificateAuthenticator(config.principals))

    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [*services, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server,
    )

    credentials = grpc.ssl_server_credentials(
        [(_read_file(config.tls.key_file, "TLS key"), _read_file(config.tls.cert_file, "TLS certificate"))],
        root_certificates=_read_file(config.tls.ca_file, "CA certificate"),
        require_client_auth=True,
    )
    try:
        port = server.add_secure_port(listen, credentials)
    except RuntimeError:
        port = 0
    if port == 0:
        raise ConfigurationError(f"cannot listen on {listen}: the address is in use or not available")
    monitor = HealthMonitor(check_health, health_servicer, services, on_change=on_health_change)
    monitor.start()
    server.start()
    return RunningServer(server=server, port=port, health_monitor=monitor)
