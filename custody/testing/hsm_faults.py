"""A fault-injecting wrapper around a real PKCS#11 session, for tests and benchmarks.

SoftHSM2 runs inside the process and cannot be unplugged, so HSM faults are simulated here: the wrapper
delegates every call to the real python-pkcs11 session and to the real key objects found through it, and
makes the signing call (``C_Sign``) raise a chosen PKCS#11 error for the next N calls or at a seeded random
rate, or wait a fixed time first to stand for a network HSM. Nothing is faked: a sign call that is not
failed is the real token's signature.

Usage::

    faults = SignFaults(delay_seconds=0.002)
    hsm = Pkcs11Hsm(module, label, pin, session_wrapper=faults)
    faults.fail_next(1, SessionClosed)

HSM lanes sign in worker processes, where a test cannot reach a plan; ``LaneSignFaults`` travels to them and
makes each worker its own plan::

    hsm = LaneHsm(module, label, pin, 4, session_wrapper_for_lane=LaneSignFaults(delay_seconds=0.005))
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pkcs11
from pkcs11.exceptions import DeviceError, DeviceRemoved, GeneralError, PKCS11Error, SessionClosed

# The errors a network HSM really returns when it drops a connection or fails: the first two make the adapter
# reopen its session and retry once, the last two are reported as unavailable at once.
TRANSIENT_FAULTS: tuple[type[PKCS11Error], ...] = (SessionClosed, DeviceRemoved, DeviceError, GeneralError)


class SignFaults:
    """A fault plan for sign calls; call it with a real session to get the wrapped session.

    The adapter calls the plan each time it opens a session, so ``sessions`` lists every real session it
    used, newest last: tests reach the real session there to close it from under the adapter.
    """

    def __init__(self, *, delay_seconds: float = 0.0, seed: int = 0) -> None:
        if delay_seconds < 0:
            raise ValueError("delay_seconds must not be negative")
        self.delay_seconds = delay_seconds
        self.sessions: list[pkcs11.Session] = []
        self.sign_calls = 0
        self.injected_faults = 0
        self._random = random.Random(seed)  # noqa: S311 -- the fault schedule must be reproducible, not secret
        self._pending_passes = 0
        self._pending_failures = 0
        self._pending_error: type[PKCS11Error] = SessionClosed
        self._rate = 0.0
        self._rate_errors: tuple[type[PKCS11Error], ...] = (SessionClosed,)
        # The adapter serializes its calls already; this lock keeps the plan consistent when a test changes it
        # from another thread while signatures are running.
        self._plan_lock = threading.Lock()

    def fail_next(self, count: int, error: type[PKCS11Error] = SessionClosed, *, after: int = 0) -> None:
        """Make ``count`` sign calls raise ``error`` before reaching the token, once the next ``after`` calls
        went through: a test aims at one step of a use case whose earlier HSM calls it knows."""
        if count < 0 or after < 0:
            raise ValueError("count and after must not be negative")
        with self._plan_lock:
            self._pending_passes = after
            self._pending_failures = count
            self._pending_error = error

    def fail_at_rate(
        self, rate: float, error: type[PKCS11Error] | Sequence[type[PKCS11Error]] = SessionClosed
    ) -> None:
        """Make each sign call raise ``error`` with probability ``rate``, drawn from the seeded generator.

        Given several error classes, each injected fault is one of them, chosen by the same generator.
        """
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        errors = (error,) if isinstance(error, type) else tuple(error)
        if not errors:
            raise ValueError("at least one error class is needed")
        with self._plan_lock:
            self._rate = rate
            self._rate_errors = errors

    def __call__(self, session: pkcs11.Session) -> FaultySession:
        self.sessions.append(session)
        return FaultySession(session, self)

    def before_sign(self) -> None:
        """Count a sign call, wait the configured delay, and raise the planned error if one is due."""
        with self._plan_lock:
            self.sign_calls += 1
            error: type[PKCS11Error] | None = None
            if self._pending_passes > 0:
                self._pending_passes -= 1
            elif self._pending_failures > 0:
                self._pending_failures -= 1
                error = self._pending_error
            elif self._rate > 0.0 and self._random.random() < self._rate:
                # A single error class draws nothing more, so a seed gives the schedule it always gave.
                errors = self._rate_errors
                error = errors[0] if len(errors) == 1 else self._random.choice(errors)
            if error is not None:
                self.injected_faults += 1
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        if error is not None:
            raise error(f"injected by custody.testing.hsm_faults (sign call {self.sign_calls})")


class FaultySession:
    """Delegates to a real session; objects it finds or generates sign through the fault plan."""

    def __init__(self, real: pkcs11.Session, plan: SignFaults) -> None:
        self.real = real
        self._plan = plan

    def get_objects(self, attrs: dict[pkcs11.Attribute, Any] | None = None) -> Iterator[FaultyObject]:
        for found in self.real.get_objects(attrs):
            yield FaultyObject(found, self._plan)

    def generate_key(self, *args: Any, **kwargs: Any) -> FaultyObject:
        # The adapter keeps the seal key it generates and seals with it from then on, so the key is wrapped
        # here too, or a new database's seals would never meet the plan.
        return FaultyObject(self.real.generate_key(*args, **kwargs), self._plan)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class FaultyObject:
    """Delegates to a real key object; ``sign`` first consults the fault plan."""

    def __init__(self, real: Any, plan: SignFaults) -> None:
        self.real = real
        self._plan = plan

    def sign(self, data: bytes, **kwargs: Any) -> bytes:
        self._plan.before_sign()
        signature: bytes = self.real.sign(data, **kwargs)
        return signature

    def __getitem__(self, attribute: pkcs11.Attribute) -> Any:
        return self.real[attribute]

    def __setitem__(self, attribute: pkcs11.Attribute, value: Any) -> None:
        self.real[attribute] = value

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@dataclass(frozen=True)
class LaneSignFaults:
    """A fault plan for every lane of a LaneHsm, passed as its ``session_wrapper_for_lane``.

    Each worker calls it with its lane's index and wraps its sessions in the ``SignFaults`` it returns: every
    sign call waits ``delay_seconds`` (standing for a network HSM) and fails at ``fault_rate`` with one of
    TRANSIENT_FAULTS, drawn from seed ``seed + lane index`` so that lanes do not fail in step. The plan is a
    frozen dataclass of this module, so it pickles, which is how it reaches the worker processes.
    """

    delay_seconds: float = 0.0
    fault_rate: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        # Checked here, in the caller's process: a worker that fails to build its plan only dies while starting.
        if self.delay_seconds < 0:
            raise ValueError("delay_seconds must not be negative")
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError("fault_rate must be between 0 and 1")

    def __call__(self, lane_index: int) -> SignFaults:
        faults = SignFaults(delay_seconds=self.delay_seconds, seed=self.seed + lane_index)
        if self.fault_rate:
            faults.fail_at_rate(self.fault_rate, TRANSIENT_FAULTS)
        return faults
