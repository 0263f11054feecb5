"""The HSM port: the few operations custody asks of a key store that never lets private keys out."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class GeneratedKey:
    key_id: bytes  # CKA_ID shared by the private and the public key object
    public_point: bytes  # uncompressed SEC1 point: 0x04 || x (32 bytes) || y (32 bytes)


@dataclass(frozen=True)
class HsmHealth:
    library_loaded: bool
    token_present: bool
    logged_in: bool
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.library_loaded and self.token_present and self.logged_in


class Hsm(Protocol):
    def generate_secp256k1_key(self, label: str) -> GeneratedKey:
        """Generate a key pair inside the token: private half sensitive, not extractable, a token object."""

    def public_point(self, key_id: bytes) -> bytes:
        """The uncompressed public point of a key; raises NotFound when the token has no such key."""

    def check_key(self, key_id: bytes) -> None:
        """Raise FailedPrecondition for an extractable or non-sensitive private key, NotFound if absent."""

    def sign_digest(self, key_id: bytes, digest: bytes) -> bytes:
        """ECDSA over a 32-byte digest; returns r || s (64 bytes), s as the HSM made it (maybe high). Raises
        KeyFrozen when signing with the key is switched off in the token."""

    def set_signing_allowed(self, key_id: bytes, allowed: bool) -> bool:
        """Switch signing with a secp256k1 key on or off in the token itself (CKA_SIGN of its private half), so
        that a frozen key stays frozen whatever the database says; returns whether it changed.
        FailedPrecondition when the token does not let custody change it, or the key is not secp256k1."""

    def ensure_ed25519_key(self, label: str) -> tuple[bytes, bytes]:
        """Find the Ed25519 key pair labelled ``label`` in the token, or generate it there (sensitive, not
        extractable); returns (key_id, raw 32-byte public key). Used for the audit log's checkpoints."""

    def ed25519_public_key(self, key_id: bytes) -> bytes:
        """The raw 32-byte public key of the Ed25519 pair with CKA_ID ``key_id`` (private half sensitive, not
        extractable); raises NotFound when the token has no such pair. How the daemon finds its audit key."""

    def sign_ed25519(self, key_id: bytes, data: bytes) -> bytes:
        """Pure Ed25519 (CKM_EDDSA) over ``data``; returns the 64-byte signature."""

    def generate_seal_key(self) -> bytes:
        """Generate an HMAC-SHA256 secret key in the token (sensitive, not extractable, a token object) for
        sealing the rows the daemon relies on; returns its CKA_ID, which the daemon stores to find it again."""

    def check_seal_key(self, key_id: bytes) -> None:
        """Raise NotFound when the token has no seal key with that id, FailedPrecondition when it may leave."""

    def seal(self, key_id: bytes, data: bytes) -> bytes:
        """HMAC-SHA256 (CKM_SHA256_HMAC) of ``data`` with the seal key: 32 bytes, one HSM call."""

    def verify_seal(self, key_id: bytes, data: bytes, seal: bytes) -> bool:
        """Whether ``seal`` is the seal of ``data``: the seal recomputed in the HSM, compared in constant time."""

    def seal_key_ids(self) -> list[bytes]:
        """The CKA_IDs of every seal key custody made in the token (secret keys labelled ``custody-seal``), so that
        the daemon sees a seal key whose record the database lost."""

    def retire_seal_keys(self) -> list[bytes]:
        """Relabel every ``custody-seal`` key ``custody-retired-seal`` (kept, never destroyed, so old seals can
        still be checked by hand); returns their CKA_IDs."""

    def read_data_objects(self, label: str) -> list[bytes]:
        """The values of the private token data objects (CKO_DATA) labelled ``label``; the daemon keeps its
        anchor outside the database in such objects."""

    def create_data_object(self, label: str, value: bytes) -> None:
        """Create a private token data object labelled ``label`` holding ``value``."""

    def destroy_data_objects(self, label: str, values: Collection[bytes]) -> None:
        """Destroy the private token data objects labelled ``label`` whose value is one of ``values``."""

    def health(self) -> HsmHealth: ...

    def close(self) -> None: ...
