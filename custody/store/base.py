"""The storage port: what the use cases need from a database, whichever database it is.

Every method is one database transaction. ``transition_request`` is a conditional update: it changes a request
only while it is still in the expected state, so of two callers racing from one state exactly one wins and the
other gets ``Aborted``. A signature is part of the same update that marks the request SIGNED and is committed
before the method returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from custody.domain.keys import Key, KeyState
from custody.domain.requests import RequestState, SignatureResult, SigningRequest


class Store(Protocol):
    def insert_key(self, key: Key) -> None:
        """Store a new key; raises AlreadyExists when the label or key id is taken."""

    def get_key(self, label: str) -> Key | None: ...

    def list_keys(self) -> Sequence[Key]: ...

    def set_key_state(self, label: str, expected: KeyState, new: KeyState, at: datetime) -> Key:
        """Conditional update of a key's state; raises NotFound or Aborted."""

    def insert_request(self, request: SigningRequest) -> None:
        """Store a new request in its initial state; raises AlreadyExists for a duplicate request id."""

    def get_request(self, request_id: str) -> SigningRequest | None: ...

    def list_requests(
        self,
        *,
        state: RequestState | None = None,
        key_label: str | None = None,
        requester: str | None = None,
        limit: int = 100,
    ) -> Sequence[SigningRequest]:
        """Newest first."""

    def transition_request(
        self,
        request_id: str,
        expected: RequestState,
        new: RequestState,
        at: datetime,
        *,
        result: SignatureResult | None = None,
        error: str | None = None,
    ) -> SigningRequest:
        """Move a request from ``expected`` to ``new`` in one transaction and return the stored row.

        Raises NotFound for an unknown id, WrongState when the transition is not one of the state machine's,
        and Aborted when the stored state is no longer ``expected`` (another caller won).
        """

    def schema_version(self) -> int: ...

    def close(self) -> None: ...
