"""An approver's Ed25519 key in a passphrase-encrypted PKCS#8 PEM file.

The file is written readable by its owner only and encrypted with cryptography's best available scheme (PBES2
with scrypt or PBKDF2 and AES-256). A signer refuses a file that other users can read, an unencrypted file,
and a key that is not Ed25519. Neither the passphrase nor the key ever appears in an error.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from custody.approver_keys import read_owner_only_file
from custody.domain.errors import AlreadyExists, ConfigurationError, InvalidInput, PermissionDenied

ENCRYPTED_PEM_HEADER = b"-----BEGIN ENCRYPTED PRIVATE KEY-----"
# The shortest passphrase a new approver key may have. The key file's encryption is only as strong as its
# passphrase, and a stolen file can be attacked offline without limit.
MIN_PASSPHRASE_CHARACTERS = 12
PLAIN_PEM_HEADER = b"-----BEGIN PRIVATE KEY-----"
# An encrypted Ed25519 PKCS#8 PEM is a few hundred bytes.
MAX_KEY_FILE_BYTES = 64 * 1024


def check_new_passphrase(passphrase: bytes, approver: str) -> None:
    """Refuse a passphrase for ``approver``'s new key that is too short or trivially guessed, naming every
    problem found (never the passphrase itself)."""
    text = passphrase.decode("utf-8", errors="replace")
    problems = []
    if len(text) < MIN_PASSPHRASE_CHARACTERS:
        problems.append(f"it has {len(text)} characters, at least {MIN_PASSPHRASE_CHARACTERS} are needed")
    if text and len(set(text)) == 1:
        problems.append("it is one character repeated")
    if text.isdigit():
        problems.append("it is all digits")
    if text.strip().casefold() == approver.strip().casefold():
        problems.append("it is the approver's own name")
    if problems:
        raise InvalidInput(
            "the approver passphrase is too weak: "
            + "; ".join(problems)
            + ". Choose a longer one, for example several unrelated words; no key was created",
            field="passphrase",
        )


def generate_encrypted_key_file(path: Path, passphrase: bytes) -> bytes:
    """Create a new Ed25519 key in ``path`` (mode 0600, encrypted with ``passphrase``); return its public key.

    An existing file is never overwritten: it may be the only copy of someone's approver key.
    """
    if not passphrase:
        raise InvalidInput("an approver key file needs a non-empty passphrase", field="passphrase")
    private_key = Ed25519PrivateKey.generate()
    pem = private_key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.BestAvailableEncryption(passphrase),
    )
    try:
        # O_EXCL makes "does it exist?" and "create it" one step, so nothing can appear in between.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise AlreadyExists(
            f"the approver key file {path} already exists; custody never overwrites a key file"
        ) from None
    except OSError as exc:
        raise ConfigurationError(f"the approver key file {path} cannot be created: {exc.strerror}") from None
    with os.fdopen(descriptor, "wb") as handle:
        # The creation mode was filtered through the umask; set it exactly.
        os.fchmod(handle.fileno(), 0o600)
        handle.write(pem)
    return _raw_public_key(private_key)


class Pkcs8FileSigner:
    """Signs approval statements with the Ed25519 key in an encrypted PKCS#8 PEM file."""

    def __init__(self, path: Path, passphrase: bytes) -> None:
        pem = read_owner_only_file(path, "approver key file", MAX_KEY_FILE_BYTES)
        if pem.lstrip().startswith(PLAIN_PEM_HEADER):
            raise ConfigurationError(
                f"the approver key file {path} is not encrypted; custody uses only passphrase-encrypted keys"
            )
        if not pem.lstrip().startswith(ENCRYPTED_PEM_HEADER):
            raise ConfigurationError(
                f"the approver key file {path} is not an encrypted PKCS#8 PEM file"
                " (it does not begin with -----BEGIN ENCRYPTED PRIVATE KEY-----)"
            )
        if not passphrase:
            raise InvalidInput(f"the passphrase for the approver key {path} is empty", field="passphrase")
        try:
            private_key = serialization.load_pem_private_key(pem, password=passphrase)
        except (ValueError, TypeError):
            # cryptography reports a wrong passphrase and a corrupt encrypted file alike; the wrong passphrase
            # is by far the more common cause, so the message leads with it.
            raise PermissionDenied(f"could not decrypt the approver key {path}: wrong passphrase?") from None
        if not isinstance(private_key, Ed25519PrivateKey):
            raise ConfigurationError(
                f"the approver key file {path} does not hold an Ed25519 key; approvers sign with Ed25519 only"
            )
        self._private_key = private_key
        self._public_key = _raw_public_key(private_key)

    def public_key(self) -> bytes:
        return self._public_key

    def sign(self, statement: bytes) -> bytes:
        return self._private_key.sign(statement)


def _raw_public_key(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(
        encoding=serialization.Encoding.Raw, format=serialization.PublicFormat.Raw
    )
