"""The body of one racing process in the two-process test; a module of its own so spawn can import it."""

from __future__ import annotations

from typing import Any

from custody.domain.errors import Aborted
from custody.domain.requests import RequestState, SignatureResult
from custody.store.sqlite import SqliteStore

from .helpers import later


def race_for_requests(db_path: str, racer: int, request_ids: list[str], start: Any, results: Any) -> None:
    """Try to sign every request; report the ids this process won and how many it lost to the other racer.

    The signature bytes carry the racer's number, so the parent can tell whose signature was stored.
    """
    store = SqliteStore(db_path)
    won: list[str] = []
    lost = 0
    try:
        start.wait(timeout=60)
        for request_id in request_ids:
            try:
                store.transition_request(
                    request_id,
                    RequestState.APPROVED,
                    RequestState.SIGNED,
                    later(1),
                    result=SignatureResult(signature=racer_signature(racer)),
                )
                won.append(request_id)
            except Aborted:
                lost += 1
    finally:
        store.close()
    results.put((racer, won, lost))


def racer_signature(racer: int) -> bytes:
    """Opaque 65 bytes naming the racer; the store does not interpret signatures, so none is computed here."""
    return bytes([racer]) * 65
