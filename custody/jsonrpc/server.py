"""The JSON-RPC endpoint's HTTP(S) listener, on the standard library's threading HTTP server.

One POST carries one call or a batch. The listener enforces what the gRPC server enforces for its calls: TLS
with the [tls] server certificate (client certificates optional, verified against the CA when presented),
authentication before anything else is read, the body limited to ``[limits] max_message_bytes``, at most
``[limits] max_concurrent_rpcs`` connections at once (503 past that, without blocking the accept loop), idle
connections closed after IDLE_TIMEOUT_SECONDS and a request cut off when it has not arrived whole
REQUEST_READ_SECONDS after its first byte. Each
call is logged in one line, counted in ``custody_jsonrpc_calls_total``, and its authentication failures and
permission denials go to the audit log as the gRPC services' do (custody.api.refusals).

TLS handshakes happen on the connection's own thread, so a client that never finishes one holds only its
thread, never the loop that accepts connections.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import re
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

from prometheus_client import Counter

from custody.api.auth import CertificateAuthenticator
from custody.api.errors import (
    JSONRPC_INVALID_REQUEST,
    JSONRPC_LIMIT_EXCEEDED,
    JSONRPC_UNAUTHENTICATED,
    jsonrpc_error_for,
)
from custody.api.refusals import RefusalRecorder
from custody.config import ServerConfig, is_loopback_address
from custody.domain.errors import ConfigurationError, InvalidInput, Unauthenticated
from custody.domain.ids import validate_request_id
from custody.domain.principals import Principal
from custody.jsonrpc.auth import Credentials, JsonRpcAuthenticator
from custody.jsonrpc.methods import CustodySource, JsonRpcMethods
from custody.jsonrpc.protocol import (
    Body,
    Call,
    JsonRpcError,
    decode_body,
    encode,
    error_answer,
    result_answer,
)
from custody.jsonrpc.upstream import Upstream
from custody.observability.logs import request_context
from custody.observability.metrics import REGISTRY

log = logging.getLogger(__name__)

IDLE_TIMEOUT_SECONDS = 30.0
HANDSHAKE_TIMEOUT_SECONDS = 10.0
# From a request's first byte, its request line, headers and body must all have arrived within this time: a
# timeout per read alone lets a client that sends a header line every few seconds hold a connection for ever.
REQUEST_READ_SECONDS = 10.0
# Connections refused because every slot is taken are answered 503 on threads of their own, at most this many
# at once (past that they are closed unanswered), each given REFUSAL_SECONDS for its handshake and answer.
MAX_REFUSALS_IN_PROGRESS = 8
REFUSAL_SECONDS = 2.0
BUSY_WARNING_SECONDS = 10.0
# How often the read deadlines are checked.
DEADLINE_CHECK_SECONDS = 0.25
# A Content-Length is 1 to 12 ASCII digits (str.isdigit also accepts other scripts' digits and superscripts).
_CONTENT_LENGTH = re.compile(r"[0-9]{1,12}")
# What is read and dropped of a refused body so that the refusal reaches the client (see _Handler._discard).
DISCARD_LIMIT_BYTES = 8 * 1024 * 1024
DISCARD_SECONDS = 5.0

JSONRPC_CALLS = Counter(
    "custody_jsonrpc_calls_total",
    "JSON-RPC calls by method (other for methods the endpoint does not know) and outcome (ok or the error code).",
    ["method", "outcome"],
    registry=REGISTRY,
)


@dataclass
class RunningJsonRpc:
    server: _Server
    thread: threading.Thread
    port: int
    refusals: RefusalRecorder

    def stop(self, grace_seconds: float) -> None:
        """Stop accepting connections, let the calls in progress finish within ``grace_seconds`` (idle
        kept-alive connections are not waited for), then record the refusals still waiting."""
        # The accept loop never blocks (a full server refuses with 503), but shutdown waits for it: bound the
        # wait, so that a stuck listener cannot keep the daemon from closing the HSM and the database.
        # One deadline for all the waits below: together they take at most the grace period.
        deadline = time.monotonic() + grace_seconds

        def remaining() -> float:
            return max(deadline - time.monotonic(), 0.0)

        stopping = threading.Thread(target=self.server.shutdown, name="jsonrpc-stop", daemon=True)
        stopping.start()
        stopping.join(timeout=remaining())
        if stopping.is_alive():
            log.warning("the JSON-RPC accept loop did not stop within %.0f s", grace_seconds)
        self.server.server_close()
        self.thread.join(timeout=remaining())
        self.server.deadlines.stop()
        if not self.server.calls_finished(remaining()):
            log.warning("stopped with JSON-RPC calls still in progress after %.0f s", grace_seconds)
        self.refusals.stop()


class JsonRpcEndpoint:
    """Everything about one POST but the sockets: authenticate, decode, call, answer."""

    def __init__(
        self,
        methods: JsonRpcMethods,
        authenticator: JsonRpcAuthenticator,
        refusals: RefusalRecorder,
        *,
        max_batch: int,
    ) -> None:
        self._methods = methods
        self._authenticator = authenticator
        self._refusals = refusals
        self._max_batch = max_batch

    def authenticate(self, credentials: Credentials) -> Principal:
        try:
            return self._authenticator.authenticate(credentials)
        except Unauthenticated as refused:
            self._refusals.refused_call(refused, None, "jsonrpc", credentials.description(), credentials.peer)
            JSONRPC_CALLS.labels(method="(unauthenticated)", outcome=str(JSONRPC_UNAUTHENTICATED)).inc()
            raise

    def answer(self, caller: Principal, credentials: Credentials, body: bytes) -> bytes | None:
        """The encoded answer to ``body``, or None when every call was a notification."""
        try:
            decoded: Body = decode_body(body, self._max_batch)
        except JsonRpcError as error:
            JSONRPC_CALLS.labels(method="(unreadable)", outcome=str(error.code)).inc()
            log.info("refused a body from %s by %s: %s", credentials.peer, caller.name, error.message)
            return encode(error_answer(None, error))
        answers = []
        self._methods.begin_body()
        for entry in decoded.entries:
            if isinstance(entry, Call):
                answer = self._run(caller, credentials, entry)
                if not entry.is_notification:
                    answers.append(answer)
            else:
                call_id, invalid = entry
                JSONRPC_CALLS.labels(method="(invalid)", outcome=str(invalid.code)).inc()
                answers.append(error_answer(call_id, invalid))
        if not answers:
            return None
        return encode(answers if decoded.batch else answers[0])

    def _run(self, caller: Principal, credentials: Credentials, call: Call) -> dict[str, Any]:
        started = time.perf_counter()
        method_label = call.method if self._methods.knows(call.method) else "other"
        with request_context(_named_request_id(call)):
            try:
                result = self._methods.call(caller, call.method, call.params)
            except JsonRpcError as error:
                outcome = error
            except Exception as exc:
                self._refusals.refused_call(
                    exc, caller, call.method, credentials.description(), credentials.peer
                )
                code, message = jsonrpc_error_for(exc)
                outcome = JsonRpcError(code, message)
            else:
                JSONRPC_CALLS.labels(method=method_label, outcome="ok").inc()
                _log_call(method_label, caller, "ok", started)
                return result_answer(call.id, result)
            JSONRPC_CALLS.labels(method=method_label, outcome=str(outcome.code)).inc()
            _log_call(method_label, caller, f"error {outcome.code}", started)
            return error_answer(call.id, outcome)


def _named_request_id(call: Call) -> str | None:
    """The request id a custody_getRequest or custody_waitRequest call names, when it is a well-formed one."""
    if (
        call.method in ("custody_getRequest", "custody_waitRequest")
        and isinstance(call.params, list)
        and call.params
    ):
        named = call.params[0]
        if isinstance(named, str):
            try:
                return validate_request_id(named)
            except InvalidInput:
                return None
    return None


def _log_call(method: str, caller: Principal, outcome: str, started: float) -> None:
    log.info(
        "JSON-RPC %s by %s: %s in %.1f ms",
        method,
        caller.name,
        outcome,
        (time.perf_counter() - started) * 1000,
    )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "custody"
    sys_version = ""
    timeout = IDLE_TIMEOUT_SECONDS
    # An answer is written as headers and then a body; with Nagle's algorithm the body would wait for the
    # client's delayed acknowledgement of the headers (40 ms on Linux) on every call of a kept-alive connection.
    disable_nagle_algorithm = True
    server: _Server

    def do_POST(self) -> None:
        with self.server.call_in_progress():
            self._post()

    def _post(self) -> None:
        endpoint = self.server.endpoint
        if self.headers.get("Transfer-Encoding"):
            self._refuse(HTTPStatus.LENGTH_REQUIRED, "send the body with a Content-Length, not chunked")
            return
        lengths = self.headers.get_all("Content-Length") or []
        if len(lengths) > 1:
            self._refuse(HTTPStatus.BAD_REQUEST, "send one Content-Length header, not several")
            return
        if not lengths:
            self._refuse(HTTPStatus.LENGTH_REQUIRED, "a Content-Length header is required")
            return
        length_text = lengths[0].strip()
        if not _CONTENT_LENGTH.fullmatch(length_text):
            self._refuse(HTTPStatus.BAD_REQUEST, "the Content-Length must be 1 to 12 digits 0-9")
            return
        length = int(length_text)
        if length > self.server.max_body_bytes:
            self._refuse(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"the body is {length} bytes; the limit is {self.server.max_body_bytes} bytes"
                " ([limits] max_message_bytes)",
            )
            self._discard(min(length, DISCARD_LIMIT_BYTES))
            return
        credentials = Credentials(
            self._certificate(), self.headers.get("Authorization"), self._peer(), str(self.client_address[0])
        )
        try:
            caller = endpoint.authenticate(credentials)
        except Unauthenticated as refused:
            self._refuse(HTTPStatus.UNAUTHORIZED, refused.message, code=JSONRPC_UNAUTHENTICATED)
            if not self._expects_continue():
                self._discard(length)
            return
        if self._expects_continue():
            # Only now, the caller authenticated, is it invited to send its body.
            self.send_response_only(HTTPStatus.CONTINUE)
            self.end_headers()
        body = self.rfile.read(length)
        self.server.deadlines.disarm(self.connection)
        if len(body) != length:
            self.close_connection = True
            return
        answer = endpoint.answer(caller, credentials, body)
        if answer is None:
            self.send_response(HTTPStatus.NO_CONTENT)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._send(HTTPStatus.OK, answer)

    def handle_one_request(self) -> None:
        # Waiting for a kept-alive connection's next request is bounded by the idle timeout per read; from the
        # request's first byte on, REQUEST_READ_SECONDS bound its reading whole.
        try:
            # StreamRequestHandler's rfile is buffered (rbufsize -1): peek waits for a byte and keeps it.
            started = cast(io.BufferedReader, self.rfile).peek(1)
        except OSError:
            started = b""
        if not started:
            self.close_connection = True
            return
        self.server.deadlines.arm(self.connection, REQUEST_READ_SECONDS)
        try:
            super().handle_one_request()
        finally:
            self.server.deadlines.disarm(self.connection)

    def handle_expect_100(self) -> bool:
        # The standard library answers "100 Continue" before the handler runs; here it waits for the caller to
        # be authenticated (_post), so that nobody unauthenticated is invited to send a body.
        return True

    def _expects_continue(self) -> bool:
        return (self.headers.get("Expect") or "").lower() == "100-continue"

    def do_GET(self) -> None:
        self._refuse(HTTPStatus.METHOD_NOT_ALLOWED, "JSON-RPC calls are POSTed", allow="POST")

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def _refuse(
        self, status: HTTPStatus, message: str, *, code: int = JSONRPC_INVALID_REQUEST, allow: str = ""
    ) -> None:
        """Answer ``status`` with a JSON-RPC error body and close the connection: its unread body, if any, would
        otherwise be read as the next request."""
        self.close_connection = True
        extra = {"Allow": allow} if allow else {}
        if status is HTTPStatus.UNAUTHORIZED:
            extra["WWW-Authenticate"] = 'Bearer realm="custody"'
        self._send(status, encode(error_answer(None, JsonRpcError(code, message))), extra)

    def _discard(self, length: int) -> None:
        """Read and drop the body of a refused request, up to ``length`` bytes, before the connection closes:
        closing a socket with unread data makes the system reset the connection, and the client would then
        lose the answer it was sent. A client slower than DISCARD_SECONDS is cut off."""
        self.connection.settimeout(DISCARD_SECONDS)
        try:
            while length > 0:
                chunk = self.rfile.read(min(length, 64 * 1024))
                if not chunk:
                    return
                length -= len(chunk)
        except OSError:
            return

    def _send(self, status: HTTPStatus, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _certificate(self) -> bytes | None:
        connection = self.connection
        if not isinstance(connection, ssl.SSLSocket):
            return None
        der = connection.getpeercert(binary_form=True)
        return ssl.DER_cert_to_PEM_cert(der).encode("ascii") if der else None

    def _peer(self) -> str:
        host, port = self.client_address[:2]
        return f"{'ipv6' if ':' in str(host) else 'ipv4'}:{host}:{port}"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: " + format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Two daemons must not share a port; SO_REUSEADDR (the standard library's default here) only lets a restart
    # bind while old connections linger, which is wanted.
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        endpoint: JsonRpcEndpoint,
        tls: ssl.SSLContext | None,
        *,
        max_connections: int,
        max_body_bytes: int,
        family: socket.AddressFamily,
    ) -> None:
        self.address_family = family
        self.endpoint = endpoint
        self.max_body_bytes = max_body_bytes
        self._max_connections = max_connections
        # Only the accept loop's thread touches these.
        self._busy_refusals = 0
        self._next_busy_warning = 0.0
        self._tls = tls
        self._connections = threading.BoundedSemaphore(max_connections)
        self._refusals = threading.BoundedSemaphore(MAX_REFUSALS_IN_PROGRESS)
        self.deadlines = ReadDeadlines()
        self._calls = 0
        self._calls_changed = threading.Condition()
        super().__init__(address, _Handler)

    @contextlib.contextmanager
    def call_in_progress(self) -> Iterator[None]:
        with self._calls_changed:
            self._calls += 1
        try:
            yield
        finally:
            with self._calls_changed:
                self._calls -= 1
                self._calls_changed.notify_all()

    def calls_finished(self, timeout: float) -> bool:
        with self._calls_changed:
            return self._calls_changed.wait_for(lambda: self._calls == 0, timeout=timeout)

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        # Started here rather than with the server, so that a listener that could not bind leaves no thread.
        self.deadlines.start()
        super().serve_forever(poll_interval)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that leaves mid-answer is no error of the daemon's; the standard library would print a
        # traceback to stderr for it.
        log.info("a JSON-RPC connection from %s ended: %s", client_address[0], sys.exc_info()[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        # The accept loop never waits: past the limit a connection is refused with 503 on a thread of its own
        # (or closed, when too many refusals are in progress), so that stopping is never held up here.
        if not self._connections.acquire(blocking=False):
            self._refuse_busy(request, client_address)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._connections.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._connections.release()

    def _refuse_busy(self, request: Any, client_address: Any) -> None:
        # One warning per BUSY_WARNING_SECONDS at most, with the count since the last: a flood of connections
        # must not become a flood of log lines.
        self._busy_refusals += 1
        now = time.monotonic()
        if now >= self._next_busy_warning:
            log.warning(
                "refused %d JSON-RPC connection(s), the last from %s: all %s connections are in use"
                " ([limits] max_concurrent_rpcs)",
                self._busy_refusals,
                client_address[0],
                self._max_connections,
            )
            self._busy_refusals = 0
            self._next_busy_warning = now + BUSY_WARNING_SECONDS
        if not self._refusals.acquire(blocking=False):
            self.shutdown_request(request)
            return
        threading.Thread(target=self._answer_busy, args=(request,), name="jsonrpc-busy", daemon=True).start()

    def _answer_busy(self, request: socket.socket) -> None:
        body = encode(
            error_answer(None, JsonRpcError(JSONRPC_LIMIT_EXCEEDED, "the server is busy; try again shortly"))
        )
        answer = (
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Retry-After: 1\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        connection: socket.socket = request
        try:
            request.settimeout(REFUSAL_SECONDS)
            if self._tls is not None:
                connection = self._tls.wrap_socket(request, server_side=True)
            connection.sendall(answer)
            # Closing with the client's request unread would reset the connection and lose the answer.
            connection.shutdown(socket.SHUT_WR)
            with contextlib.suppress(OSError):
                connection.recv(64 * 1024)
        except (ssl.SSLError, OSError) as error:
            log.info("could not tell %s the server is busy: %s", request.getpeername()[0], error)
        finally:
            connection.close()
            request.close()
            self._refusals.release()

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self._tls is None:
            _Handler(request, client_address, self)
            return
        request.settimeout(HANDSHAKE_TIMEOUT_SECONDS)
        try:
            wrapped = self._tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as error:
            log.info("TLS handshake with %s failed: %s", client_address[0], error)
            return
        try:
            _Handler(wrapped, client_address, self)
        finally:
            wrapped.close()


class ReadDeadlines:
    """Cuts off connections whose request was not read in time: one thread checks the armed deadlines and shuts
    the late connections' sockets down, which ends the read their handler thread is blocked in."""

    def __init__(self) -> None:
        self._deadlines: dict[socket.socket, float] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jsonrpc-deadlines", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def arm(self, connection: socket.socket, seconds: float) -> None:
        with self._lock:
            self._deadlines[connection] = time.monotonic() + seconds

    def disarm(self, connection: socket.socket) -> None:
        with self._lock:
            self._deadlines.pop(connection, None)

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=DEADLINE_CHECK_SECONDS * 4)

    def _run(self) -> None:
        while not self._stopped.wait(DEADLINE_CHECK_SECONDS):
            now = time.monotonic()
            with self._lock:
                late = [connection for connection, deadline in self._deadlines.items() if deadline <= now]
                for connection in late:
                    del self._deadlines[connection]
            for connection in late:
                log.info(
                    "closed a JSON-RPC connection whose request took over %.0f s to arrive",
                    REQUEST_READ_SECONDS,
                )
                # The plain socket's shutdown: SSLSocket.shutdown would also drop the TLS state under the
                # handler thread reading it.
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(connection, socket.SHUT_RDWR)


def tls_context(config: ServerConfig) -> ssl.SSLContext:
    """TLS with the daemon's server certificate; a client certificate is optional (bearer tokens authenticate
    the callers without one) and verified against the custody CA when presented."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(config.tls.cert_file), str(config.tls.key_file))
        context.load_verify_locations(cafile=str(config.tls.ca_file))
    except (OSError, ssl.SSLError) as error:
        raise ConfigurationError(f"cannot load the [tls] files for the JSON-RPC endpoint: {error}") from None
    context.verify_mode = ssl.CERT_OPTIONAL
    return context


def start_jsonrpc_server(
    custody: CustodySource,
    config: ServerConfig,
    listen: str,
    *,
    upstream_factory: Callable[[str], Upstream] = Upstream,
) -> RunningJsonRpc:
    """Serve the JSON-RPC endpoint on ``listen`` until ``stop``; ConfigurationError when it cannot bind."""
    jsonrpc = config.jsonrpc
    if jsonrpc.plain_http and not is_loopback_address(listen):
        # The configuration loader refuses this too; a server built from a hand-made config must not either.
        raise ConfigurationError(
            f"[jsonrpc] plain_http is allowed only on a loopback address, not {listen!r}"
        )
    host, _, port_text = listen.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    refusals = RefusalRecorder(custody)
    methods = JsonRpcMethods(
        custody,
        jsonrpc,
        upstream=upstream_factory(jsonrpc.upstream) if jsonrpc.upstream else None,
        max_wait_seconds=config.limits.watch_seconds,
        max_answer_bytes=config.limits.max_message_bytes,
    )
    # At start when the policy is already readable; otherwise on the first call that fills fees in.
    methods.warn_about_uncapped_fees()
    authenticator = JsonRpcAuthenticator(
        config.principals, jsonrpc.tokens, CertificateAuthenticator(config.principals)
    )
    endpoint = JsonRpcEndpoint(methods, authenticator, refusals, max_batch=jsonrpc.max_batch)
    tls = None if jsonrpc.plain_http else tls_context(config)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        server = _Server(
            (host, int(port_text)),
            endpoint,
            tls,
            max_connections=config.limits.max_concurrent_rpcs,
            max_body_bytes=config.limits.max_message_bytes,
            family=family,
        )
    except OSError as error:
        # The same sentence as the gRPC listener's for the usual causes, so both refusals read alike; another
        # cause (no permission for a low port, say) is named as the system says it.
        if error.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL) or not error.strerror:
            cause = "the address is in use or not available"
        else:
            cause = error.strerror[0].lower() + error.strerror[1:]
        raise ConfigurationError(f"cannot listen on {listen} for JSON-RPC: {cause}") from None
    thread = threading.Thread(target=server.serve_forever, name="jsonrpc", daemon=True)
    refusals.start()
    thread.start()
    return RunningJsonRpc(server=server, thread=thread, port=server.server_address[1], refusals=refusals)
