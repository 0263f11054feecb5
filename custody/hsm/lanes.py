"""HSM lanes: signing spread over worker processes, each with its own PKCS#11 initialization and login.

SoftHSM2 initialized by python-pkcs11 (``C_Initialize(NULL)``) runs without internal locks, so one process
may make only one call into the library at a time (see docs/design.md and custody/hsm/pkcs11.py). A network HSM
answers in milliseconds, and a process that waits for each answer in turn signs a few hundred times a second
at most. ``LaneHsm`` gets parallelism the only safe way: ``lanes`` worker processes (spawned, never forked,
so no library state is copied), each of which loads the library, logs in and serves sign calls sent over its
own pipe. A caller thread takes a free lane, or waits for one, and has it to itself for the call.

The rare calls (key generation, key checks, public keys, the audit key, health) go to one ``Pkcs11Hsm`` in
this process. The PIN reaches the workers through their pipes only, never through argv or the environment.

A worker that dies (a crash in the library, a kill) fails the one call it was serving with HsmUnavailable and
is started again; a worker that does not answer within the call timeout is killed and treated the same way.
Errors raised in a worker reach the caller as the same custody error class with the same message.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from types import MappingProxyType
from typing import Any

from custody.domain import errors as custody_errors
from custody.domain.errors import (
    ConfigurationError,
    CustodyError,
    HsmUnavailable,
    InternalError,
    InvalidInput,
)
from custody.hsm.base import GeneratedKey, HsmHealth
from custody.hsm.pkcs11 import Pkcs11Hsm, SessionWrapper

logger = logging.getLogger(__name__)

_NO_ENVIRONMENT: Mapping[str, str] = MappingProxyType({})
_SIGN_DIGEST = "sign_digest"
_SIGN_ED25519 = "sign_ed25519"
# How long a stopping worker may take to close its session and exit before it is killed.
_STOP_GRACE_SECONDS = 5.0

# Every custody error class by name, so an error raised in a worker is raised here as the same class.
_ERROR_CLASSES: dict[str, type[CustodyError]] = {
    name: value
    for name, value in vars(custody_errors).items()
    if isinstance(value, type) and issubclass(value, CustodyError)
}

# A worker's reply: ("ok", signature) or ("error", class name, message, field of an InvalidInput).
_Reply = tuple[Any, ...]

# Given a lane's index, the session wrapper (see Pkcs11Hsm) for that lane's worker.
LaneSessionWrapper = Callable[[int], SessionWrapper]


@dataclass(frozen=True)
class _LaneSetup:
    """What a worker needs to open its own session; sent over the pipe, never on the command line."""

    module_path: str
    token_label: str
    pin: str = field(repr=False)
    environment: Mapping[str, str]
    session_wrapper_for_lane: LaneSessionWrapper | None
    lane_index: int = 0


@dataclass(eq=False)
class _Lane:
    """One worker process and this side of its pipe; a lane is used by one caller thread at a time."""

    index: int
    process: BaseProcess | None = None
    connection: Connection | None = None
    # Start and stop may be reached from the lane's caller and from close() at once.
    state_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def alive(self) -> bool:
        return self.process is not None and self.connection is not None and self.process.is_alive()


class LaneHsm:
    """custody's Hsm port with sign calls served by ``lanes`` worker processes (see the module doc).

    ``session_wrapper_for_lane``, when given, is called in each worker with the lane's index and returns the
    session wrapper that worker's ``Pkcs11Hsm`` uses: benchmarks and tests pass a fault plan there to stand for
    a network HSM's latency and failures. It reaches the spawned workers pickled, so it must be an instance of
    a module-level class or a module-level function.

    The environment of this process must already hold what the PKCS#11 library reads when it loads (the
    in-process session uses it); ``environment`` is applied in each worker before it loads the library.
    """

    def __init__(
        self,
        module_path: str,
        token_label: str,
        pin: str,
        lanes: int,
        *,
        environment: Mapping[str, str] = _NO_ENVIRONMENT,
        session_wrapper_for_lane: LaneSessionWrapper | None = None,
        call_timeout_seconds: float = 30.0,
        start_timeout_seconds: float = 60.0,
    ) -> None:
        if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
            raise ConfigurationError(
                f"the number of HSM lanes must be a whole number of at least 1; got {lanes!r}"
            )
        if call_timeout_seconds <= 0 or start_timeout_seconds <= 0:
            raise ConfigurationError("the HSM lane call and start timeouts must be positive")
        self._setup = _LaneSetup(
            module_path=module_path,
            token_label=token_label,
            pin=pin,
            environment=dict(environment),
            session_wrapper_for_lane=session_wrapper_for_lane,
        )
        try:
            # Every worker receives its setup pickled; finding out here beats a worker that dies while starting.
            pickle.dumps(self._setup)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise ConfigurationError(
                f"the session wrapper for the HSM lanes cannot be sent to their worker processes ({exc})"
            ) from None
        self._call_timeout = call_timeout_seconds
        self._start_timeout = start_timeout_seconds
        # Spawned workers start from a fresh interpreter: a forked child would inherit this process's loaded
        # library and its session handles, which the library does not support.
        self._context = multiprocessing.get_context("spawn")
        self._lanes = [_Lane(index) for index in range(lanes)]
        self._free: list[_Lane] = []
        self._pool = threading.Condition()
        self._start_lock = threading.Lock()
        self._closed = False
        # The in-process session comes first: it checks the library, the token and the PIN with the adapter's
        # own error messages before any worker is spawned.
        self._control = Pkcs11Hsm(module_path, token_label, pin)
        try:
            self._start_lanes(self._lanes)
        except BaseException:
            for lane in self._lanes:
                self._stop_lane(lane, graceful=False)
            self._control.close()
            raise
        self._free = list(self._lanes)
        logger.info("started %d HSM lanes on token %r", lanes, token_label)

    # The port: the rare calls go to the in-process session.

    def generate_secp256k1_key(self, label: str) -> GeneratedKey:
        return self._control.generate_secp256k1_key(label)

    def public_point(self, key_id: bytes) -> bytes:
        return self._control.public_point(key_id)

    def check_key(self, key_id: bytes) -> None:
        self._control.check_key(key_id)

    def ensure_ed25519_key(self, label: str) -> tuple[bytes, bytes]:
        return self._control.ensure_ed25519_key(label)

    def ed25519_public_key(self, key_id: bytes) -> bytes:
        return self._control.ed25519_public_key(key_id)

    # Seals are computed on the in-process session: one HMAC takes tens of microseconds on the token, less
    # than a round trip to a lane, and the app caches every seal it has verified (custody/app/integrity.py).

    def generate_seal_key(self) -> bytes:
        return self._control.generate_seal_key()

    # The switch is an attribute of the key object in the token, which every lane's session reads at each
    # signature: setting it once on the in-process session reaches them all.

    def set_signing_allowed(self, key_id: bytes, allowed: bool) -> bool:
        return self._control.set_signing_allowed(key_id, allowed)

    def check_seal_key(self, key_id: bytes) -> None:
        self._control.check_seal_key(key_id)

    def seal(self, key_id: bytes, data: bytes) -> bytes:
        return self._control.seal(key_id, data)

    def verify_seal(self, key_id: bytes, data: bytes, seal: bytes) -> bool:
        return self._control.verify_seal(key_id, data, seal)

    # The token's objects (the seal keys as a set, the anchor) are rare calls too.

    def seal_key_ids(self) -> list[bytes]:
        return self._control.seal_key_ids()

    def retire_seal_keys(self) -> list[bytes]:
        return self._control.retire_seal_keys()

    def read_data_objects(self, label: str) -> list[bytes]:
        return self._control.read_data_objects(label)

    def create_data_object(self, label: str, value: bytes) -> None:
        self._control.create_data_object(label, value)

    def destroy_data_objects(self, label: str, values: Collection[bytes]) -> None:
        self._control.destroy_data_objects(label, values)

    def health(self) -> HsmHealth:
        """The session in this process, and at least one live lane: signing goes only through the lanes, so
        with every worker down the daemon cannot sign however healthy its own session is. A lane that died
        alone is started again by the next call it serves."""
        control = self._control.health()
        if not control.ok:
            return control
        down = [lane.index for lane in self._lanes if not lane.alive()]
        if len(down) == len(self._lanes):
            return replace(
                control, logged_in=False, detail=f"none of the {len(self._lanes)} HSM lanes is running"
            )
        if down:
            return replace(
                control,
                detail=f"HSM lanes {', '.join(map(str, down))} are down and restart on their next call",
            )
        return control

    # The port: signing goes to a lane.

    def sign_digest(self, key_id: bytes, digest: bytes) -> bytes:
        return self._call(_SIGN_DIGEST, key_id, digest, f"sign with key {_hex(key_id)}")

    def sign_ed25519(self, key_id: bytes, data: bytes) -> bytes:
        return self._call(_SIGN_ED25519, key_id, data, f"sign with the Ed25519 key {_hex(key_id)}")

    def close(self) -> None:
        """Let calls in flight finish (up to the call timeout), stop every worker, close the session here."""
        with self._pool:
            if self._closed:
                return
            self._closed = True
            # Callers waiting for a lane learn at once that none will come.
            self._pool.notify_all()
            self._pool.wait_for(lambda: len(self._free) == len(self._lanes), timeout=self._call_timeout)
            idle = list(self._free)
        for lane in self._lanes:
            if lane in idle:
                self._stop_lane(lane, graceful=True)
            else:
                # A call still running after the timeout is cut off; its caller gets HsmUnavailable and,
                # seeing the lanes closed, finishes stopping the lane itself (and may have done so already).
                process = lane.process
                if process is not None:
                    # ValueError: the caller closed the process object between the read above and now.
                    with contextlib.suppress(ValueError):
                        process.kill()
        self._control.close()
        logger.info("stopped the HSM lanes on token %r", self._setup.token_label)

    def lane_pids(self) -> list[int | None]:
        """The worker process id of each lane (None while a lane is down), for operators and tests."""
        return [lane.pid for lane in self._lanes]

    # Lanes.

    def _call(self, operation: str, key_id: bytes, data: bytes, action: str) -> bytes:
        lane = self._take_lane(action)
        try:
            return self._call_on(lane, operation, key_id, data, action)
        finally:
            with self._pool:
                self._free.append(lane)
                self._pool.notify()

    def _take_lane(self, action: str) -> _Lane:
        with self._pool:
            self._pool.wait_for(lambda: self._closed or bool(self._free))
            if self._closed:
                raise HsmUnavailable(f"could not {action}: this HSM connection has been closed")
            # A live lane is preferred, so one lane that cannot be restarted does not fail every call.
            for position, lane in enumerate(self._free):
                if lane.alive():
                    return self._free.pop(position)
            return self._free.pop()

    def _call_on(self, lane: _Lane, operation: str, key_id: bytes, data: bytes, action: str) -> bytes:
        if not lane.alive():
            # The lane died while idle (or could not be restarted before): no call was lost, so it is simply
            # started again for this one.
            self._stop_lane(lane, graceful=False)
            try:
                self._start_lanes([lane])
            except CustodyError as exc:
                raise HsmUnavailable(
                    f"could not {action}: HSM lane {lane.index} could not be started ({exc.message})"
                ) from None
        connection = lane.connection
        assert connection is not None
        try:
            connection.send((operation, key_id, data))
            if not connection.poll(self._call_timeout):
                self._replace_lane(lane, f"did not answer within {self._call_timeout:.0f} s and was killed")
                raise HsmUnavailable(
                    f"could not {action}: the HSM did not answer within {self._call_timeout:.0f} seconds"
                )
            reply: _Reply = connection.recv()
        except (EOFError, OSError):
            self._replace_lane(lane, "stopped during a call")
            raise HsmUnavailable(
                f"could not {action}: the HSM worker process of lane {lane.index} stopped during the call"
            ) from None
        if reply[0] == "ok":
            signature: bytes = reply[1]
            return signature
        raise _rebuild_error(reply)

    def _replace_lane(self, lane: _Lane, problem: str) -> None:
        """Stop a failed lane and start it again; when that fails the next call on it tries once more."""
        pid = lane.pid
        exit_code = self._stop_lane(lane, graceful=False)
        logger.error("HSM lane %d (pid %s) %s (exit code %s)", lane.index, pid, problem, exit_code)
        if self._closed:
            return
        try:
            self._start_lanes([lane])
        except CustodyError as exc:
            logger.error("HSM lane %d could not be started again: %s", lane.index, exc.message)

    def _start_lanes(self, lanes: list[_Lane]) -> None:
        """Spawn the workers of ``lanes``, then let each log in, one at a time; raise the first one's error.

        Spawning (a fresh interpreter and its imports) is the slow part and runs in parallel. Logging in does
        not: SoftHSM2 answered GeneralError to some of eight processes opening sessions on one token at the
        same moment, so the setup that makes a worker load the library and log in goes to one worker after the
        other, and restarts from several caller threads take turns too.
        """
        with self._start_lock:
            for lane in lanes:
                parent_end, child_end = self._context.Pipe(duplex=True)
                process = self._context.Process(
                    target=serve_lane, args=(child_end,), name=f"custody-hsm-lane-{lane.index}", daemon=True
                )
                process.start()
                # Only the worker holds the other end now, so its death shows here as end of file.
                child_end.close()
                with lane.state_lock:
                    lane.process, lane.connection = process, parent_end
            failure: CustodyError | None = None
            deadline = time.monotonic() + self._start_timeout
            for lane in lanes:
                connection = lane.connection
                assert connection is not None
                # A worker that died before reading its setup is reported by the wait below.
                with contextlib.suppress(OSError):
                    connection.send(replace(self._setup, lane_index=lane.index))
                problem = self._await_ready(lane, deadline)
                if problem is not None:
                    self._stop_lane(lane, graceful=False)
                    failure = failure or problem
            if failure is not None:
                raise failure

    def _await_ready(self, lane: _Lane, deadline: float) -> CustodyError | None:
        connection = lane.connection
        assert connection is not None
        try:
            if not connection.poll(max(0.0, deadline - time.monotonic())):
                return HsmUnavailable(
                    f"HSM lane {lane.index} did not log in within {self._start_timeout:.0f} seconds"
                )
            reply: _Reply = connection.recv()
        except (EOFError, OSError):
            process = lane.process
            if process is not None:
                process.join(_STOP_GRACE_SECONDS)
            exit_code = process.exitcode if process is not None else None
            return HsmUnavailable(
                f"the HSM worker process of lane {lane.index} exited while starting (exit code {exit_code})"
            )
        if reply[0] == "ready":
            return None
        return _rebuild_error(reply)

    def _stop_lane(self, lane: _Lane, *, graceful: bool) -> int | None:
        """Stop the lane's worker (asking first when ``graceful``, killing it otherwise); its exit code."""
        with lane.state_lock:
            process, connection = lane.process, lane.connection
            lane.process, lane.connection = None, None
        if connection is not None:
            if graceful:
                try:
                    connection.send(None)
                except OSError:
                    graceful = False
            connection.close()
        if process is None:
            return None
        process.join(_STOP_GRACE_SECONDS if graceful else 0.0)
        if process.is_alive():
            process.kill()
            process.join(_STOP_GRACE_SECONDS)
        exit_code = process.exitcode
        if exit_code is not None:
            process.close()
        return exit_code


def serve_lane(connection: Connection) -> None:
    """A worker's whole life: read the setup, log in, then answer sign calls until told to stop.

    The worker ignores SIGINT and SIGTERM: a service manager signals every process of the service, and the
    workers must keep serving the calls the parent is finishing. The parent ends them by closing the pipe,
    and a parent that dies closes it too.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        setup: _LaneSetup = connection.recv()
    except EOFError:
        return
    # The library reads its configuration from the environment when it is loaded, so this comes first.
    os.environ.update(setup.environment)
    try:
        hsm = _open_worker_hsm(setup)
    except CustodyError as exc:
        # A parent that is already gone needs no answer.
        with contextlib.suppress(OSError):
            connection.send(_error_reply(exc))
        return
    try:
        connection.send(("ready", os.getpid()))
        while True:
            message = connection.recv()
            if message is None:
                return
            connection.send(_serve_one(hsm, message))
    except (EOFError, OSError):
        # The parent closed the pipe or died: there is nobody left to serve.
        return
    finally:
        hsm.close()


def _open_worker_hsm(setup: _LaneSetup) -> Pkcs11Hsm:
    wrap_for_lane = setup.session_wrapper_for_lane
    wrapper = wrap_for_lane(setup.lane_index) if wrap_for_lane is not None else None
    return Pkcs11Hsm(setup.module_path, setup.token_label, setup.pin, session_wrapper=wrapper)


def _serve_one(hsm: Pkcs11Hsm, message: tuple[str, bytes, bytes]) -> _Reply:
    operation, key_id, data = message
    try:
        if operation == _SIGN_DIGEST:
            return ("ok", hsm.sign_digest(key_id, data))
        if operation == _SIGN_ED25519:
            return ("ok", hsm.sign_ed25519(key_id, data))
        return _error_reply(InternalError(f"an HSM lane was asked for the unknown operation {operation!r}"))
    except CustodyError as exc:
        return _error_reply(exc)
    except Exception as exc:
        # The worker must answer every call; anything unexpected is reported without its internals.
        logger.exception("an HSM lane failed unexpectedly")
        return _error_reply(InternalError(f"the HSM lane failed unexpectedly ({type(exc).__name__})"))


def _error_reply(error: CustodyError) -> _Reply:
    field_name = error.field if isinstance(error, InvalidInput) else None
    return ("error", type(error).__name__, error.message, field_name)


def _rebuild_error(reply: _Reply) -> CustodyError:
    """The custody error a worker reported, as the same class with the same message."""
    _, name, message, field_name = reply
    error_class = _ERROR_CLASSES.get(name, InternalError)
    # InvalidInput given no field keeps the message as it is, which already names the field.
    error = error_class(message)
    if isinstance(error, InvalidInput):
        error.field = field_name
    return error


def _hex(key_id: bytes) -> str:
    return key_id.hex() if isinstance(key_id, bytes) else "(not bytes)"
