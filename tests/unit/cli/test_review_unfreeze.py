"""The approver's screen for an unfreeze says which freeze of the key it lifts, read from the payload the
approval binds, so approving it is never read as lifting a later freeze."""

from __future__ import annotations

import hashlib

import pytest

from custody.api._gen import custody_pb2
from custody.app.policy import unfreeze_payload
from custody.cli.review import recompute_hashes, review_text


def unfreeze_request(payload: bytes) -> custody_pb2.SigningRequest:
    digest = hashlib.sha256(payload).digest()
    return custody_pb2.SigningRequest(
        request_id="req_unfreeze",
        key_label="treasury",
        key_id="0a0b0c",
        address="0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        requester="admin",
        kind=custody_pb2.PAYLOAD_KIND_KEY_UNFREEZE,
        payload=payload,
        payload_hash=digest,
        digest=digest,
        decision=custody_pb2.Decision(
            action="approve",
            reason="governance needs the admin quorum",
            policy_version=1,
            quorum=[custody_pb2.QuorumTerm(group="admin", threshold=2)],
        ),
        state=custody_pb2.REQUEST_STATE_PENDING_APPROVAL,
        created_at="2030-03-17T17:46:40Z",
        updated_at="2030-03-17T17:46:40Z",
    )


def screen(payload: bytes) -> str:
    request = unfreeze_request(payload)
    return review_text(request, recompute_hashes(request))


def test_the_screen_names_the_freeze_the_unfreeze_lifts() -> None:
    text = screen(unfreeze_payload("treasury", 3))
    assert "  unfreeze key   treasury: once approved it signs again" in text
    assert "  lifts          freeze 3 only; a later freeze of the key stays" in text


@pytest.mark.parametrize(
    "payload",
    [b'{"action":"unfreeze","key":"treasury"}', b'{"action":"unfreeze","freeze":true,"key":"treasury"}'],
)
def test_an_unfreeze_naming_no_freeze_is_shown_to_change_nothing(payload: bytes) -> None:
    assert "  lifts          no named freeze: approving it changes nothing" in screen(payload)
