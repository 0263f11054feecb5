"""Signing keys as custody knows them: the HSM holds the private half, the store holds this record."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime

from custody.domain.errors import InvalidInput

# Labels appear in policies, certificates' grants and CLI arguments, so they are kept short and plain.
_LABEL_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
# The daemon labels the HSM keys it makes for itself (the audit log's checkpoint key, say) with this prefix, so
# nobody else may: an operator reading the token must never mistake a signing key for one of the daemon's own.
DAEMON_KEY_LABEL_PREFIX = "custody-"


class KeyState(enum.Enum):
    ACTIVE = "ACTIVE"
    FROZEN = "FROZEN"


@dataclass(frozen=True)
class Key:
    label: str
    key_id: str  # hex of the PKCS#11 CKA_ID shared by the private and public key objects
    address: str  # EIP-55 checksummed Ethereum address derived from the public key
    public_key: bytes  # uncompressed SEC1 point, 65 bytes starting with 0x04
    state: KeyState
    created_at: datetime
    # How many times the key has been frozen. An unfreeze names the freeze it lifts by this number, so an
    # unfreeze approved after a later freeze lifts nothing.
    freezes: int = 0


def validate_key_label(label: str) -> str:
    """Return ``label`` when it is a valid key label, else raise InvalidInput saying what is allowed."""
    if not _LABEL_PATTERN.fullmatch(label):
        raise InvalidInput(
            "a key label is 1 to 63 characters of lowercase letters, digits, '.', '_' or '-',"
            f" starting with a letter or digit; got {label!r}",
            field="label",
        )
    return label


def check_label_not_reserved(label: str) -> str:
    """Return ``label`` unless it is one the daemon keeps for its own keys; then raise InvalidInput naming it."""
    if label.startswith(DAEMON_KEY_LABEL_PREFIX):
        raise InvalidInput(
            f"the key label {label!r} is reserved: labels starting with {DAEMON_KEY_LABEL_PREFIX!r} name the"
            " daemon's own keys",
            field="label",
        )
    return label
