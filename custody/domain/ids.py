"""Identifiers handed out by custody."""

from __future__ import annotations

import re
import secrets
import time

from custody.domain.errors import InvalidInput

_REQUEST_ID_PATTERN = re.compile(r"req_[0-9a-f]{32}")


def new_request_id(now_seconds: float | None = None) -> str:
    """A request id that sorts by creation time: 48 bits of milliseconds, then 80 random bits."""
    millis = int((time.time() if now_seconds is None else now_seconds) * 1000)
    return f"req_{millis:012x}{secrets.token_hex(10)}"


def validate_request_id(request_id: str) -> str:
    if not _REQUEST_ID_PATTERN.fullmatch(request_id):
        raise InvalidInput(f"not a request id: {request_id!r}", field="request_id")
    return request_id
