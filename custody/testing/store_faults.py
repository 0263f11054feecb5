"""Write faults for tests: make a real SqliteStore fail its audit writes the way a full disk does.

Failing closed is only proven by making a write fail. Filling a real file system is the most faithful way, but
it needs root and a mount; this module gives the same failure in-process on any machine, for the store's own
tests and for end-to-end tests that run the daemon in their process. While a fault is active the store opens
real sqlite3 connections of a subclass that raises SQLite's own "database or disk is full" error instead of
inserting an audit event (of the chosen kinds); every other statement, and the rollback that follows the
error, is SQLite's own work. Nothing here is read from the environment or configuration, so a deployed daemon
cannot be put into this mode.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Any

from custody.store.codec import AUDIT_COLUMNS
from custody.store.sqlite import SqliteStore

_AUDIT_INSERT = "INSERT INTO audit_events "
_KIND_POSITION = AUDIT_COLUMNS.index("kind")
# SQLite's result code for a full disk, which the store turns into StoreUnavailable.
_SQLITE_FULL = 13


class AuditWriteFault:
    """An active fault: which audit event kinds it fails (None for every kind) and how often it has struck."""

    def __init__(self, kinds: Collection[str] | None) -> None:
        self.kinds = None if kinds is None else frozenset(kinds)
        self._hits = 0
        self._lock = threading.Lock()

    @property
    def hits(self) -> int:
        """How many audit writes this fault has failed so far."""
        with self._lock:
            return self._hits

    def strikes(self, parameters: Any) -> bool:
        if self.kinds is not None and parameters[_KIND_POSITION] not in self.kinds:
            return False
        with self._lock:
            self._hits += 1
        return True


def disk_full_error() -> sqlite3.OperationalError:
    """The error sqlite3 raises when the disk is full, with the result code it carries."""
    error = sqlite3.OperationalError("database or disk is full")
    error.sqlite_errorcode = _SQLITE_FULL
    error.sqlite_errorname = "SQLITE_FULL"
    return error


@contextmanager
def failing_audit_writes(
    store: SqliteStore, *, kinds: Collection[str] | None = None
) -> Iterator[AuditWriteFault]:
    """Within the block, every attempt through ``store`` to write an audit event (of one of ``kinds``, or of
    any kind) fails as on a full disk; the store behaves normally again once the block ends.

    The fault covers work that takes a connection after the block begins: idle connections are replaced at
    once, and a transaction already running finishes on its own connection, which is then closed, not pooled.
    """
    fault = AuditWriteFault(kinds)

    class FaultyConnection(sqlite3.Connection):
        def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
            if sql.startswith(_AUDIT_INSERT) and fault.strikes(parameters):
                raise disk_full_error()
            return super().execute(sql, parameters)

    # The store keeps this hook private: it exists for this module, which production code never imports.
    store._use_connection_factory(FaultyConnection)
    try:
        yield fault
    finally:
        store._use_connection_factory(sqlite3.Connection)
