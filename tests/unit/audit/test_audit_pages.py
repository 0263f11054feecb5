"""The daemon's count of a ListEvents page's bytes, which keeps a page under the message limit, is exact.

The daemon adds up each event's share of the encoded response instead of encoding the growing response again
for every event; the sum must be what protobuf then sends, whatever the events' sizes (the length prefix of an
entry grows from one byte to two at 128 bytes and to three at 16 KiB).
"""

from __future__ import annotations

import pytest

from custody.api._gen import custody_pb2 as pb
from custody.api.servicers import AuditServicer


def event_of_size(sequence: int, details_bytes: int) -> pb.AuditEvent:
    return pb.AuditEvent(
        sequence=sequence,
        time="2025-03-01T09:30:00.000000Z",
        actor="backend",
        kind="request.submitted",
        request_id=f"req_{sequence:032x}",
        details_json='{"note":"' + "x" * details_bytes + '"}',
        previous_hash=bytes(32),
        hash=bytes(range(32)),
    )


@pytest.mark.parametrize("details_bytes", [0, 1, 10, 100, 127, 500, 16_000, 16_400, 70_000])
def test_the_counted_page_size_is_the_encoded_size(details_bytes: int) -> None:
    page = [event_of_size(sequence, details_bytes + sequence) for sequence in range(1, 6)]
    counted = sum(AuditServicer._repeated_entry_bytes(event.ByteSize()) for event in page)
    assert counted == pb.ListEventsResponse(events=page).ByteSize()
    assert counted == len(pb.ListEventsResponse(events=page).SerializeToString())


def test_an_empty_event_still_costs_its_tag_and_length() -> None:
    assert AuditServicer._repeated_entry_bytes(pb.AuditEvent().ByteSize()) == 2
    assert pb.ListEventsResponse(events=[pb.AuditEvent()]).ByteSize() == 2
