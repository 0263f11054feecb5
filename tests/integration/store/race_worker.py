"""The bodies of racing processes in the two-process tests; a module of their own so spawn can import them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from custody.domain.errors import Aborted, AlreadyExists
from custody.domain.requests import RequestState, SignatureResult
from custody.store import open_store

from .helpers import Approver, later, make_approval, make_draft


def race_for_requests(url: str, racer: int, request_ids: list[str], start: Any, results: Any) -> None:
    """Try to sign every request; report the ids this process won and how many it lost to the other racer.

    The signature bytes carry the racer's number, so the parent can tell whose signature was stored.
    """
    store = open_store(url, Path("/"))
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


def race_to_approve(
    url: str, racer: int, private_key: bytes, request_ids: list[str], start: Any, results: Any
) -> None:
    """For every request, record this racer's approval and move the request PENDING_APPROVAL -> APPROVED in one
    transaction; report the ids this process won and how many attempts it lost.

    A lost attempt is one whose transition was aborted (the other racer approved first), which rolls back the
    approval recorded with it, or one refused because this racer's approval was already counted.
    """
    approver = Approver(
        name=approver_name(racer), private_key=Ed25519PrivateKey.from_private_bytes(private_key)
    )
    store = open_store(url, Path("/"))
    won: list[str] = []
    lost = 0
    try:
        start.wait(timeout=60)
        for request_id in request_ids:
            try:
                with store.transaction() as tx:
                    request = tx.get_request(request_id)
                    assert request is not None  # the parent stored every request
                    tx.insert_approval(make_approval(request, approver, created_at=later(1)))
                    tx.transition_request(
                        request_id, RequestState.PENDING_APPROVAL, RequestState.APPROVED, later(1)
                    )
                won.append(request_id)
            except (Aborted, AlreadyExists):
                lost += 1
    finally:
        store.close()
    results.put((racer, won, lost))


def approver_name(racer: int) -> str:
    return f"approver-{racer}"


def append_audit_events(url: str, racer: int, count: int, start: Any, results: Any) -> None:
    """Append ``count`` audit events as actor ``racer-N``, half alone and half inside a transaction that also
    reads the head; report the sequence numbers the store gave them."""
    store = open_store(url, Path("/"))
    sequences: list[int] = []
    try:
        start.wait(timeout=60)
        for index in range(count):
            draft = make_draft(index, actor=f"racer-{racer}")
            if index % 2:
                sequences.append(store.append_audit(draft).sequence)
            else:
                with store.transaction() as tx:
                    head = tx.audit_head()
                    event = tx.append_audit(draft)
                    assert event.sequence == (0 if head is None else head.sequence) + 1
                    sequences.append(event.sequence)
            # A pause between appends, so that the other process, waiting for the write lock (asleep in
            # SQLite's busy handler, say), gets it now and then and the two really interleave.
            time.sleep(0.002)
    finally:
        store.close()
    results.put((racer, sequences))
