"""The daemon's log lines: one JSON object per line, or plain text for a person at a terminal.

Every line logged while an RPC runs carries that call's ``request_id``: the id of the signing request the call
names, or a fresh correlation id ("call_<hex>") for calls that name none. The servicer sets it in a context
variable for the duration of the call, so code deeper down logs as usual and still gets the id.

A call logs one line at INFO, when it ends: who called what, how it ended and how long it took, followed by
what the use cases noted on the way (``note``: "request ... on key ops: APPROVED", "request ... signed"). One
line per request instead of three keeps logging cheap on the signing path (each line is formatted and written
to stderr on the calling thread), and the notes are only formatted when INFO is on. Warnings and errors are
lines of their own, as they happen, so every refusal and failure stays visible. Log messages
never hold secrets (PINs, passphrases, private keys), by the convention of every module that logs; this
module adds nothing from the environment to a line.
"""

from __future__ import annotations

import contextvars
import json
import logging
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Literal

LogFormat = Literal["json", "text"]

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("custody_request_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(request_suffix)s: %(message)s"


def new_correlation_id() -> str:
    return f"call_{secrets.token_hex(8)}"


def current_request_id() -> str | None:
    return _request_id.get()


@contextmanager
def request_context(request_id: str | None) -> Iterator[str]:
    """Tag every line logged inside the block with ``request_id`` (or a fresh correlation id); yields it."""
    value = request_id or new_correlation_id()
    token = _request_id.set(value)
    try:
        yield value
    finally:
        _request_id.reset(token)


class CallNotes:
    """What the use cases noted during one call, formatted only when the call's line is (lazily, by logging)."""

    def __init__(self) -> None:
        self._notes: list[tuple[str, tuple[object, ...]]] = []

    def add(self, message: str, args: tuple[object, ...]) -> None:
        self._notes.append((message, args))

    def __str__(self) -> str:
        return "".join("; " + (message % args if args else message) for message, args in self._notes)


_call_notes: contextvars.ContextVar[CallNotes | None] = contextvars.ContextVar(
    "custody_call_notes", default=None
)


@contextmanager
def call_notes() -> Iterator[CallNotes]:
    """Collect the ``note`` calls made inside the block, for the call's one log line."""
    notes = CallNotes()
    token = _call_notes.set(notes)
    try:
        yield notes
    finally:
        _call_notes.reset(token)


def note(logger: logging.Logger, message: str, *args: object) -> None:
    """Say at INFO what happened: inside a call, as part of the call's one line; outside (the background
    worker), as a line of its own on ``logger``."""
    notes = _call_notes.get()
    if notes is None:
        logger.info(message, *args, stacklevel=2)
    elif logger.isEnabledFor(logging.INFO):
        notes.add(message, args)


class RequestIdFilter(logging.Filter):
    """Copies the call's request id onto each record, so both formatters can show it."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = _request_id.get()
        record.request_id = request_id
        record.request_suffix = f" [{request_id}]" if request_id else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, request_id when in a call."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            line["request_id"] = request_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def default_format() -> LogFormat:
    """Text for a person watching a terminal; JSON for journald, containers and log shippers."""
    return "text" if sys.stderr.isatty() else "json"


def configure_logging(log_format: LogFormat, level_name: str = "INFO") -> None:
    """Send every log line to stderr in ``log_format``, replacing whatever handlers were installed before."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level_name.upper(), logging.INFO))
