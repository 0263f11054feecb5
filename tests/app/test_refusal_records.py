"""Refused calls reach the audit log aggregated per peer: the first at once, the rest of each minute in one
event that carries their number, so a flood of refusals costs one write a minute, not one a call."""

from __future__ import annotations

from custody.api.refusals import Refusal, RefusalRecorder
from custody.audit.events import AuditKind
from custody.domain.errors import PermissionDenied, Unauthenticated

from .conftest import App

MALLORY = "CN=mallory"
TRENT = "CN=trent"


class MonotonicClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _unknown(identity: str) -> Refusal:
    return Refusal(
        actor="unauthenticated",
        kind=AuditKind.AUTH_REFUSED,
        error=Unauthenticated(f"the certificate identity {identity!r} is not configured on this server"),
        method="ListKeys",
        peer="ipv4:127.0.0.1:50000",
    )


def _refusals_written(app: App, after: int) -> list[tuple[str, str, int, str]]:
    """(kind, actor, refusals, reason) of each refusal event after ``after``."""
    return [
        (event.kind, event.actor, event.details["refusals"], event.details["reason"])
        for event in app.events(after_sequence=after)
        if event.kind in (AuditKind.AUTH_REFUSED, AuditKind.PERMISSION_DENIED)
    ]


def test_a_flood_of_refusals_is_one_event_a_minute_with_its_count(app: App) -> None:
    clock = MonotonicClock()
    recorder = RefusalRecorder(lambda: app.custody, window_seconds=60, clock=clock)
    start = app.head()

    for _ in range(500):
        recorder.refused(MALLORY, _unknown("mallory"))
    recorder.record_waiting()
    mallory_reason = "the certificate identity 'mallory' is not configured on this server"
    assert _refusals_written(app, start) == [("auth.refused", "unauthenticated", 1, mallory_reason)]

    # Once the minute is over the 499 that followed are written together, and refusals going on after that
    # wait for the end of the next minute.
    clock.now += 60
    recorder.record_waiting()
    for _ in range(20):
        recorder.refused(MALLORY, _unknown("mallory"))
    clock.now += 30
    recorder.record_waiting()
    assert _refusals_written(app, start) == [
        ("auth.refused", "unauthenticated", 1, mallory_reason),
        ("auth.refused", "unauthenticated", 499, mallory_reason),
    ]
    clock.now += 30
    recorder.record_waiting()
    assert [count for _, _, count, _ in _refusals_written(app, start)] == [1, 499, 20]

    # After a quiet minute the next refusal is written at once again.
    clock.now += 61
    recorder.record_waiting()
    recorder.refused(MALLORY, _unknown("mallory"))
    assert [count for _, _, count, _ in _refusals_written(app, start)] == [1, 499, 20, 1]


def test_each_peer_and_kind_has_a_window_of_its_own(app: App) -> None:
    clock = MonotonicClock()
    recorder = RefusalRecorder(lambda: app.custody, window_seconds=60, clock=clock)
    start = app.head()
    denied = Refusal(
        actor="backend",
        kind=AuditKind.PERMISSION_DENIED,
        error=PermissionDenied("backend may not create keys: that needs the admin role"),
        method="CreateKey",
        peer="ipv4:127.0.0.1:50001",
    )
    for _ in range(3):
        recorder.refused(MALLORY, _unknown("mallory"))
        recorder.refused(TRENT, _unknown("trent"))
        recorder.refused("backend", denied)
    assert sorted((kind, actor, count) for kind, actor, count, _ in _refusals_written(app, start)) == [
        ("auth.refused", "unauthenticated", 1),
        ("auth.refused", "unauthenticated", 1),
        ("permission.denied", "backend", 1),
    ]
    # Stopping (the daemon's shutdown) writes what waits, whatever is left of its minute.
    recorder.stop()
    written = _refusals_written(app, start)
    assert sorted((kind, count, reason) for kind, _, count, reason in written[3:]) == [
        ("auth.refused", 2, "the certificate identity 'mallory' is not configured on this server"),
        ("auth.refused", 2, "the certificate identity 'trent' is not configured on this server"),
        ("permission.denied", 2, "backend may not create keys: that needs the admin role"),
    ]
