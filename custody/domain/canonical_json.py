"""The one canonical JSON encoding custody hashes, signs and stores.

Compact separators, keys sorted, and no NaN or infinity (which are not JSON): one value has exactly one text.
Audit event hashes, the details stored with each event and the details sent to clients for offline
verification must agree byte for byte, and so must an approval statement and what the approver signed, so
every such encoding goes through here. ``ascii_only`` is part of each format's definition and must never
change for an existing format: approval statements and audit events escape non-ASCII characters, while
payloads and policy traces keep them as UTF-8.
"""

from __future__ import annotations

import json
from typing import Any


def canonical_json(value: Any, *, ascii_only: bool) -> str:
    """``value`` as canonical JSON text; ValueError for NaN or infinity, TypeError for what JSON cannot hold."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=ascii_only, allow_nan=False)
