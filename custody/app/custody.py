"""The application as the transport layers see it: every use case, built once by the composition root."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from custody.app.keys import KeyUseCases
from custody.app.signing import ChangeNotifier, SigningUseCases
from custody.domain.errors import CustodyError
from custody.domain.policy import Policy
from custody.hsm.base import Hsm
from custody.store.base import Store


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Health:
    hsm_ok: bool
    store_ok: bool
    detail: str

    @property
    def serving(self) -> bool:
        return self.hsm_ok and self.store_ok


class Custody:
    def __init__(
        self, store: Store, hsm: Hsm, policy: Policy, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self._store = store
        self._hsm = hsm
        self._policy = policy
        self.keys = KeyUseCases(store, hsm, clock)
        self.signing = SigningUseCases(store, hsm, lambda: self._policy, clock, ChangeNotifier())

    @property
    def policy(self) -> Policy:
        return self._policy

    def health(self) -> Health:
        hsm_health = self._hsm.health()
        try:
            self._store.schema_version()
            store_ok, store_detail = True, ""
        except CustodyError as exc:
            store_ok, store_detail = False, exc.message
        detail = "; ".join(part for part in (hsm_health.detail, store_detail) if part)
        return Health(hsm_ok=hsm_health.ok, store_ok=store_ok, detail=detail)

    def close(self) -> None:
        self._hsm.close()
        self._store.close()
