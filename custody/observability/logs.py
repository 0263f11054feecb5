"""The daemon's log lines: one JSON object per line, or plain text for a person at a terminal.

Every line logged while an RPC runs carries that call's ``request_id``: the id of the signing request the call
names, or a fresh correlation id ("call_<hex>") for calls that name none. The servicer sets it in a context
variable for the duration of the call, so code deeper down logs as usual and still gets the id. Log messages
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
