"""The approver's Ed25519 key in a passphrase-encrypted PKCS#8 PEM file, on a real file system.

Every signature is verified with `cryptography` against the public key that generation returned.
"""

from __future__ import annotations

import base64
import os
import stat
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from custody.approver_keys.pkcs8_file import Pkcs8FileSigner, generate_encrypted_key_file
from custody.domain.approvals import verify_signature
from custody.domain.errors import AlreadyExists, ConfigurationError, InvalidInput, PermissionDenied

PASSPHRASE = b"alice's long approver passphrase"
WRONG_PASSPHRASE = b"bob's guess at alice's passphrase"


@pytest.fixture
def key_file(tmp_path: Path) -> tuple[Path, bytes]:
    path = tmp_path / "alice.pem"
    return path, generate_encrypted_key_file(path, PASSPHRASE)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    previous = os.umask(0)
    yield
    os.umask(previous)


def write_key(path: Path, private_key: object, encryption: serialization.KeySerializationEncryption) -> Path:
    pem = private_key.private_bytes(  # type: ignore[attr-defined]
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=encryption,
    )
    path.write_bytes(pem)
    path.chmod(0o600)
    return path


def test_generated_file_is_owner_only_encrypted_pkcs8(key_file: tuple[Path, bytes]) -> None:
    path, public_key = key_file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    pem = path.read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    loaded = serialization.load_pem_private_key(pem, password=PASSPHRASE)
    assert isinstance(loaded, Ed25519PrivateKey)
    raw = loaded.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert raw == public_key
    assert len(public_key) == 32


@pytest.mark.usefixtures("permissive_umask")
def test_generated_file_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "alice.pem"
    generate_encrypted_key_file(path, PASSPHRASE)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_generation_never_overwrites_a_file(key_file: tuple[Path, bytes]) -> None:
    path, _ = key_file
    before = path.read_bytes()
    with pytest.raises(AlreadyExists) as raised:
        generate_encrypted_key_file(path, PASSPHRASE)
    assert raised.value.message == (
        f"the approver key file {path} already exists; custody never overwrites a key file"
    )
    assert path.read_bytes() == before


def test_generation_never_follows_a_symbolic_link(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    link = tmp_path / "alice.pem"
    link.symlink_to(target)
    with pytest.raises(AlreadyExists):
        generate_encrypted_key_file(link, PASSPHRASE)
    assert not target.exists()


def test_generation_needs_a_passphrase(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as raised:
        generate_encrypted_key_file(tmp_path / "alice.pem", b"")
    assert raised.value.field == "passphrase"
    assert not (tmp_path / "alice.pem").exists()


def test_generation_in_a_missing_directory_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot be created: No such file or directory"):
        generate_encrypted_key_file(tmp_path / "absent" / "alice.pem", PASSPHRASE)


def test_signer_signs_and_cryptography_verifies(key_file: tuple[Path, bytes], statement_bytes: bytes) -> None:
    path, public_key = key_file
    signer = Pkcs8FileSigner(path, PASSPHRASE)
    assert signer.public_key() == public_key
    signature = signer.sign(statement_bytes)
    assert len(signature) == 64
    Ed25519PublicKey.from_public_bytes(public_key).verify(signature, statement_bytes)
    verify_signature(public_key, statement_bytes, signature, "alice")


def test_wrong_passphrase_is_refused_without_showing_it(key_file: tuple[Path, bytes]) -> None:
    path, _ = key_file
    with pytest.raises(PermissionDenied) as raised:
        Pkcs8FileSigner(path, WRONG_PASSPHRASE)
    assert raised.value.message == f"could not decrypt the approver key {path}: wrong passphrase?"
    shown = f"{raised.value} {raised.value!r} {raised.value.args}"
    assert WRONG_PASSPHRASE.decode() not in shown
    assert PASSPHRASE.decode() not in shown
    assert raised.value.__cause__ is None


def test_empty_passphrase_is_refused(key_file: tuple[Path, bytes]) -> None:
    path, _ = key_file
    with pytest.raises(InvalidInput, match="is empty"):
        Pkcs8FileSigner(path, b"")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_key_file_others_may_read_is_refused(key_file: tuple[Path, bytes], mode: int) -> None:
    path, _ = key_file
    path.chmod(mode)
    with pytest.raises(ConfigurationError) as raised:
        Pkcs8FileSigner(path, PASSPHRASE)
    assert raised.value.message == (
        f"the approver key file {path} can be read or changed by other users (mode {mode:04o});"
        f" run `chmod 600 {path}`"
    )


def test_unencrypted_key_file_is_refused(tmp_path: Path) -> None:
    path = write_key(tmp_path / "plain.pem", Ed25519PrivateKey.generate(), serialization.NoEncryption())
    with pytest.raises(ConfigurationError, match="is not encrypted"):
        Pkcs8FileSigner(path, PASSPHRASE)


def test_encrypted_key_of_another_type_is_refused(tmp_path: Path) -> None:
    secp256k1_key = ec.generate_private_key(ec.SECP256K1())
    path = write_key(tmp_path / "ec.pem", secp256k1_key, serialization.BestAvailableEncryption(PASSPHRASE))
    with pytest.raises(ConfigurationError) as raised:
        Pkcs8FileSigner(path, PASSPHRASE)
    assert raised.value.message == (
        f"the approver key file {path} does not hold an Ed25519 key; approvers sign with Ed25519 only"
    )


def test_file_that_is_not_pem_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"alice's approver key is on the yellow sticky note\n")
    path.chmod(0o600)
    with pytest.raises(ConfigurationError, match="is not an encrypted PKCS#8 PEM file"):
        Pkcs8FileSigner(path, PASSPHRASE)


def rewrite_pem(path: Path, begin: str, der: bytes, end: str) -> None:
    lines = textwrap.wrap(base64.b64encode(der).decode(), 64)
    path.write_text("\n".join([begin, *lines, end]) + "\n")


def test_corrupted_encrypted_key_is_refused(key_file: tuple[Path, bytes]) -> None:
    path, public_key = key_file
    begin, *body, end = path.read_text().splitlines()
    der = base64.b64decode("".join(body))
    # The re-encoding alone still loads, so what the signer refuses below is the flipped bit.
    rewrite_pem(path, begin, der, end)
    assert Pkcs8FileSigner(path, PASSPHRASE).public_key() == public_key
    # EncryptedPrivateKeyInfo ends with the ciphertext, so the last byte is ciphertext, not a parameter.
    rewrite_pem(path, begin, der[:-1] + bytes([der[-1] ^ 0x01]), end)
    with pytest.raises(PermissionDenied, match="could not decrypt the approver key"):
        Pkcs8FileSigner(path, PASSPHRASE)


def test_missing_key_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot be read: No such file or directory"):
        Pkcs8FileSigner(tmp_path / "absent.pem", PASSPHRASE)
