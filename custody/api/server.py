"""The gRPC server: mTLS, message limits, custody's services, standard health and reflection.

Watch streams are bounded here, in the transport: a server stream holds one of the ``[limits] max_workers``
threads for as long as it is open, so ``WatchLimiter`` admits at most ``[limits] max_watches`` of them at once
(refusing more with RESOURCE_EXHAUSTED) and ends each one, WatchRequest and the health service's Watch alike,
after ``[limits] watch_seconds``. The other threads stay free for approvals, health checks and every other
unary call, however many clients wait.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from custody.api._gen import custody_pb2
from custody.api.auth import CertificateAuthenticator
from custody.api.refusals import RefusalRecorder
from custody.api.servicers import CustodySource, add_servicers
from custody.app.custody import Health
from custody.config import ServerConfig
from custody.domain.errors import ConfigurationError

log = logging.getLogger(__name__)

HEALTH_CHECK_INTERVAL_SECONDS = 2.0
# How long one health check may run before the monitor's loop counts as stuck. Checks against an unreachable
# HSM or database fail within seconds (the PostgreSQL connect timeout is 5 s); a check still running after
# this long is hung in a library call, and the daemon with it.
HEALTH_CHECK_STALL_SECONDS = 30.0

WATCH_REQUEST_METHOD = f"/{custody_pb2.DESCRIPTOR.services_by_name['SigningService'].full_name}/WatchRequest"
HEALTH_WATCH_METHOD = f"/{health_pb2.DESCRIPTOR.services_by_name['Health'].full_name}/Watch"
# How often a health Watch stream looks whether its call is still on, between status changes.
HEALTH_WATCH_LOOK_SECONDS = 0.5


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    health_monitor: HealthMonitor
    refusals: RefusalRecorder

    def stop(self, grace_seconds: float) -> None:
        """Refuse new calls, let in-flight calls finish within the grace period, then stop, recording the
        refused calls still waiting for their audit event."""
        self.health_monitor.stop()
        self.server.stop(grace_seconds).wait()
        self.refusals.stop()


class HealthServicer(health.HealthServicer):
    """The standard health service, whose Watch ends when its call does: when the client leaves, or when
    ``WatchLimiter``'s time limit passes, which it looks at every HEALTH_WATCH_LOOK_SECONDS.

    The reference Watch blocks until the next status change, which may never come, so no time limit could
    end it and a client could hold its thread forever; it is the only part replaced here.
    """

    def __init__(self) -> None:
        super().__init__(experimental_non_blocking=False)
        self._changed = threading.Condition()
        self._statuses: dict[str, int] = {health.OVERALL_HEALTH: health_pb2.HealthCheckResponse.SERVING}

    def set(self, service: str, status: int) -> None:
        super().set(service, status)
        with self._changed:
            self._statuses[service] = status
            self._changed.notify_all()

    # The reference's extra parameter serves its non-blocking mode, which this servicer turns off.
    def Watch(  # type: ignore[override]
        self, request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext
    ) -> Iterator[health_pb2.HealthCheckResponse]:
        sent: int | None = None
        while context.is_active():
            with self._changed:
                status = self._statuses.get(request.service, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
                if status == sent:
                    self._changed.wait(HEALTH_WATCH_LOOK_SECONDS)
                    continue
            sent = status
            yield health_pb2.HealthCheckResponse(status=status)


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
        stall_seconds: float = HEALTH_CHECK_STALL_SECONDS,
        on_change: Callable[[Health], None] | None = None,
    ) -> None:
        self._check_health = check_health
        self._servicer = servicer
        self._services = ["", *services]
        self._interval = interval
        self._stall_seconds = stall_seconds
        self._on_change = on_change
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health-monitor", daemon=True)
        self._serving: bool | None = None
        self._last_pass = time.monotonic()

    @property
    def serving(self) -> bool:
        """The last published answer (False before the first check)."""
        return bool(self._serving)

    def working(self) -> bool:
        """Whether the monitor's loop is turning: a check finished, whatever it found, within the last
        ``interval`` plus ``stall_seconds``. This is the daemon's liveness (what systemd's watchdog is fed
        on), as opposed to its health: an HSM or database that answers "unavailable" leaves the loop working,
        a library call that never returns does not."""
        return time.monotonic() - self._last_pass <= self._interval + self._stall_seconds

    def start(self) -> None:
        self.check()
        self._last_pass = time.monotonic()
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
            self._last_pass = time.monotonic()


class _TimeBoundContext:
    """The call's context, except that ``is_active`` turns False once ``ends_at`` (monotonic) has passed.

    The watch use case stops at its next look at ``is_active`` (it looks at least every half second), so the
    stream ends normally, with status OK, and the servicer and the use case need not know about the limit.
    """

    def __init__(self, context: grpc.ServicerContext, ends_at: float) -> None:
        self._context = context
        self._ends_at = ends_at

    def is_active(self) -> bool:
        return time.monotonic() < self._ends_at and self._context.is_active()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


class WatchLimiter(grpc.ServerInterceptor):  # type: ignore[type-arg]  # generic only in the stubs
    """Admits at most ``max_watches`` watch streams at once and ends each after ``watch_seconds``.

    A watch over the limit is refused at once with RESOURCE_EXHAUSTED rather than queued: a queued watch would
    wait for a thread that another watch holds, and the caller can poll GetRequest meanwhile. The health
    service's Watch counts against the same limit, since it holds a thread just the same, and ends after
    ``watch_seconds`` too (its clients open it again). It asks for no role, so any certificate of the CA may
    open it: health watches may therefore hold at most half of the slots (none when ``max_watches`` is 1),
    and the rest stay for WatchRequest, however many health watches are asked for.
    """

    def __init__(self, max_watches: int, watch_seconds: float) -> None:
        self._slots = threading.BoundedSemaphore(max_watches)
        self._max_watches = max_watches
        self._max_health_watches = max_watches // 2
        self._health_slots = threading.BoundedSemaphore(max(1, self._max_health_watches))
        self._watch_seconds = watch_seconds

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or handler.unary_stream is None:
            return handler
        if method == WATCH_REQUEST_METHOD:
            health_watch = False
            instead = "poll GetRequest"
        elif method == HEALTH_WATCH_METHOD:
            health_watch = True
            instead = "call Check"
        else:
            return handler
        return grpc.unary_stream_rpc_method_handler(
            self._bounded(handler.unary_stream, method, health_watch, instead),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _bounded(
        self,
        behaviour: Callable[[Any, grpc.ServicerContext], Iterator[Any]],
        method: str,
        health_watch: bool,
        instead: str,
    ) -> Callable[[Any, grpc.ServicerContext], Iterator[Any]]:
        name = method.rsplit("/", 1)[-1]

        def refuse(context: grpc.ServicerContext, limit: int, which: str) -> None:
            log.warning("refused %s: %d %s are open, the limit ([limits] max_watches)", name, limit, which)
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the daemon already serves {limit} {which}, its limit; retry in a few seconds, or {instead}"
                " meanwhile",
            )

        def watch(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            # This is a generator, so the slots are taken when gRPC first asks for a message, on the thread
            # that serves the stream, and given back in ``finally`` however the stream ends (a client that
            # leaves included). A generator gRPC never started would never run ``finally``: taking a slot
            # before it starts could leak it.
            if health_watch and (
                self._max_health_watches == 0 or not self._health_slots.acquire(blocking=False)
            ):
                refuse(context, self._max_health_watches, "health watch streams")
            try:
                if not self._slots.acquire(blocking=False):
                    refuse(context, self._max_watches, "watch streams")
                try:
                    bounded: Any = _TimeBoundContext(context, time.monotonic() + self._watch_seconds)
                    yield from behaviour(request, bounded)
                finally:
                    self._slots.release()
            finally:
                if health_watch:
                    self._health_slots.release()

        return watch


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
    if limits.max_watches >= limits.max_workers:
        # The configuration loader refuses this too; a server built from a hand-made config must not either.
        raise ConfigurationError(
            f"[limits] max_watches ({limits.max_watches}) must be below max_workers ({limits.max_workers})"
        )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=limits.max_workers, thread_name_prefix="rpc"),
        interceptors=[WatchLimiter(limits.max_watches, limits.watch_seconds)],
        options=options,
        maximum_concurrent_rpcs=limits.max_concurrent_rpcs,
    )
    refusals = RefusalRecorder(custody)
    services = add_servicers(
        server,
        custody,
        CertificateAuthenticator(config.principals),
        refusals,
        max_message_bytes=limits.max_message_bytes,
    )

    health_servicer = HealthServicer()
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
    refusals.start()
    server.start()
    return RunningServer(server=server, port=port, health_monitor=monitor, refusals=refusals)
