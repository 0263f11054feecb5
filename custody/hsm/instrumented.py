"""The daemon's HSM: the real adapter behind a wrapper that times every call and can open it again.

``InstrumentedHsm`` implements the Hsm port by delegation. Each call is timed into
``custody_hsm_call_seconds{operation}`` and each error counted in ``custody_hsm_errors_total{error}``.

It also owns the adapter's lifetime, because the adapter cannot always heal itself: a token that was removed
and put back is only seen again after the library is initialized anew, and an adapter whose reconnection
failed keeps no session to retry with. ``reopen()`` closes the adapter and builds a fresh one through the
factory it was given (which rescans the library first); the health monitor calls it while the HSM is
unhealthy. Until an adapter is open, every call raises HsmUnavailable, so a daemon waiting for its token
answers UNAVAILABLE rather than failing in some other way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from typing import TypeVar

from custody.domain.errors import ConfigurationError, CustodyError, HsmUnavailable
from custody.hsm.base import GeneratedKey, Hsm, HsmHealth
from custody.observability.metrics import HSM_CALL_SECONDS, HSM_ERRORS

log = logging.getLogger(__name__)

T = TypeVar("T")


class InstrumentedHsm:
    def __init__(self, open_hsm: Callable[[], Hsm], *, not_open_detail: str = "the HSM is not open") -> None:
        self._open_hsm = open_hsm
        self._inner: Hsm | None = None
        self._not_open_detail = not_open_detail
        # Set when reopening failed in a way retrying cannot fix (a refused PIN): trying again and again could
        # lock the PIN on a real HSM, so the HSM stays closed until the daemon is restarted.
        self._gave_up = False
        # Serializes opening and closing; calls themselves only read the current adapter.
        self._lifecycle = threading.Lock()

    @property
    def is_open(self) -> bool:
        return self._inner is not None

    def open(self) -> None:
        """Open the adapter; raises what the factory raises (the HSM stays closed then)."""
        with self._lifecycle:
            if self._inner is None:
                self._inner = self._open_hsm()

    def reopen(self) -> bool:
        """Close the adapter and open a fresh one; True when it is open again. Never raises for HSM trouble:
        the failure is logged, the HSM stays closed and calls answer HsmUnavailable until the next try."""
        with self._lifecycle:
            if self._gave_up:
                return False
            old, self._inner = self._inner, None
            if old is not None:
                old.close()
            try:
                self._inner = self._open_hsm()
            except CustodyError as exc:
                self._not_open_detail = f"the HSM could not be opened again: {exc.message}"
                self._gave_up = isinstance(exc, ConfigurationError)
                log.log(logging.ERROR if self._gave_up else logging.WARNING, "%s", self._not_open_detail)
                return False
        log.info("reopened the HSM")
        return True

    # The port.

    def generate_secp256k1_key(self, label: str) -> GeneratedKey:
        return self._timed("generate_secp256k1_key", lambda hsm: hsm.generate_secp256k1_key(label))

    def public_point(self, key_id: bytes) -> bytes:
        return self._timed("public_point", lambda hsm: hsm.public_point(key_id))

    def check_key(self, key_id: bytes) -> None:
        self._timed("check_key", lambda hsm: hsm.check_key(key_id))

    def sign_digest(self, key_id: bytes, digest: bytes) -> bytes:
        return self._timed("sign_digest", lambda hsm: hsm.sign_digest(key_id, digest))

    def set_signing_allowed(self, key_id: bytes, allowed: bool) -> bool:
        return self._timed("set_signing_allowed", lambda hsm: hsm.set_signing_allowed(key_id, allowed))

    def ensure_ed25519_key(self, label: str) -> tuple[bytes, bytes]:
        return self._timed("ensure_ed25519_key", lambda hsm: hsm.ensure_ed25519_key(label))

    def ed25519_public_key(self, key_id: bytes) -> bytes:
        return self._timed("ed25519_public_key", lambda hsm: hsm.ed25519_public_key(key_id))

    def sign_ed25519(self, key_id: bytes, data: bytes) -> bytes:
        return self._timed("sign_ed25519", lambda hsm: hsm.sign_ed25519(key_id, data))

    def generate_seal_key(self) -> bytes:
        return self._timed("generate_seal_key", lambda hsm: hsm.generate_seal_key())

    def check_seal_key(self, key_id: bytes) -> None:
        self._timed("check_seal_key", lambda hsm: hsm.check_seal_key(key_id))

    def seal(self, key_id: bytes, data: bytes) -> bytes:
        return self._timed("seal", lambda hsm: hsm.seal(key_id, data))

    def verify_seal(self, key_id: bytes, data: bytes, seal: bytes) -> bool:
        return self._timed("verify_seal", lambda hsm: hsm.verify_seal(key_id, data, seal))

    def seal_key_ids(self) -> list[bytes]:
        return self._timed("seal_key_ids", lambda hsm: hsm.seal_key_ids())

    def retire_seal_keys(self) -> list[bytes]:
        return self._timed("retire_seal_keys", lambda hsm: hsm.retire_seal_keys())

    def read_data_objects(self, label: str) -> list[bytes]:
        return self._timed("read_data_objects", lambda hsm: hsm.read_data_objects(label))

    def create_data_object(self, label: str, value: bytes) -> None:
        self._timed("create_data_object", lambda hsm: hsm.create_data_object(label, value))

    def destroy_data_objects(self, label: str, values: Collection[bytes]) -> None:
        self._timed("destroy_data_objects", lambda hsm: hsm.destroy_data_objects(label, values))

    def health(self) -> HsmHealth:
        inner = self._inner
        if inner is None:
            return HsmHealth(False, False, False, detail=self._not_open_detail)
        return inner.health()

    def close(self) -> None:
        with self._lifecycle:
            inner, self._inner = self._inner, None
            self._not_open_detail = "this HSM connection has been closed"
            if inner is not None:
                inner.close()

    def _timed(self, operation: str, call: Callable[[Hsm], T]) -> T:
        inner = self._inner
        if inner is None:
            HSM_ERRORS.labels(error=HsmUnavailable.__name__).inc()
            raise HsmUnavailable(f"{self._not_open_detail}; try again later")
        started = time.perf_counter()
        try:
            return call(inner)
        except CustodyError as exc:
            HSM_ERRORS.labels(error=type(exc).__name__).inc()
            raise
        finally:
            HSM_CALL_SECONDS.labels(operation=operation).observe(time.perf_counter() - started)
