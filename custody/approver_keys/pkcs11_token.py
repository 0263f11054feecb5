"""An approver's Ed25519 key in the approver's own PKCS#11 token (a smart card, a USB HSM, SoftHSM2 in tests).

The private key is found by its label and must be an Ed25519 key (CKK_EC_EDWARDS on edwards25519) that is
sensitive, not extractable and allowed to sign; statements are signed with CKM_EDDSA (pure Ed25519). The
public key comes from the matching public key object's CKA_EC_POINT, and every signature is checked against
it before it is handed out, so a token whose public and private objects do not belong together is caught on
the approver's machine rather than refused later by the daemon.

A command-line process signs once and has no threads, but every call into the library still holds the
per-library lock of custody.hsm.pkcs11_common: never two threads in one PKCS#11 library (docs/design.md), also
when an approver signer and the daemon's HSM adapter share a process and a library file, as they do in tests.
No python-pkcs11 exception leaves this module: each becomes a custody error through the mapping the daemon's
adapter uses too, in which a refused PIN is PermissionDenied (the approver's own credential). The PIN appears in
no error.
"""

from __future__ import annotations

import contextlib
import secrets
from types import TracebackType
from typing import Any

import pkcs11
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11

from custody.domain.errors import (
    AlreadyExists,
    ConfigurationError,
    CustodyError,
    FailedPrecondition,
    InternalError,
    PermissionDenied,
)
from custody.hsm.pkcs11_common import (
    ED25519_EC_PARAMS,
    check_key_label,
    custody_error_for,
    ed25519_public_key,
    find_token,
    generate_ed25519_pair,
    lock_for_library,
    open_user_session,
    require_library_file,
)

_KEY_ID_BYTES = 16


class Pkcs11TokenSigner:
    """Signs approval statements with the Ed25519 key labelled ``key_label`` in token ``token_label``.

    The session stays open (and logged in) until ``close``; use the signer as a context manager.
    """

    def __init__(self, module_path: str, token_label: str, key_label: str, pin: str) -> None:
        check_key_label(key_label, field="key_label")
        self._key_label = key_label
        self._token_label = token_label
        self._lock = lock_for_library(require_library_file(module_path))
        with self._lock:
            self._session: Any = _open_logged_in_session(module_path, token_label, pin)
            try:
                self._private_key: Any = _find_one(
                    self._session, ObjectClass.PRIVATE_KEY, key_label, token_label
                )
                _check_private_key(self._private_key, key_label)
                public_object = _find_one(self._session, ObjectClass.PUBLIC_KEY, key_label, token_label)
                self._public_key = _raw_public_key(public_object, key_label)
            except p11.PKCS11Error as exc:
                self._session.close()
                raise _translate(exc, f"read the key {key_label!r} in token {token_label!r}") from None
            except CustodyError:
                self._session.close()
                raise

    def public_key(self) -> bytes:
        return self._public_key

    def sign(self, statement: bytes) -> bytes:
        """Pure Ed25519 (CKM_EDDSA) over ``statement``; the signature is verified before it is returned."""
        with self._lock:
            if self._session is None:
                raise FailedPrecondition(f"the signer for key {self._key_label!r} has been closed")
            try:
                signature = bytes(self._private_key.sign(statement, mechanism=Mechanism.EDDSA))
            except p11.PKCS11Error as exc:
                raise _translate(exc, f"sign with the key {self._key_label!r}") from None
        try:
            Ed25519PublicKey.from_public_bytes(self._public_key).verify(signature, statement)
        except InvalidSignature:
            raise InternalError(
                f"the token {self._token_label!r} made a signature with key {self._key_label!r} that does not"
                " verify with that key's public key object; the token's key objects do not match"
            ) from None
        return signature

    def close(self) -> None:
        """Close the session, which logs the process out of the token; the signer is unusable afterwards."""
        with self._lock:
            session, self._session = self._session, None
            if session is not None:
                # The session is gone either way afterwards; an error while closing it changes nothing.
                with contextlib.suppress(p11.PKCS11Error):
                    session.close()

    def __enter__(self) -> Pkcs11TokenSigner:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def generate_token_key(module_path: str, token_label: str, key_label: str, pin: str) -> bytes:
    """Create an Ed25519 key pair labelled ``key_label`` in the token and return the raw 32-byte public key.

    The private key is a token object, sensitive and not extractable. A label already in use is refused, so
    the signer can always tell which key is meant. Meant for development, tests and the documentation; an
    approver with a real token may equally create the key with the token's own tools.
    """
    check_key_label(key_label, field="key_label")
    lock = lock_for_library(require_library_file(module_path))
    with lock:
        session = _open_logged_in_session(module_path, token_label, pin)
        try:
            if list(session.get_objects({Attribute.LABEL: key_label})):
                raise AlreadyExists(
                    f"the token {token_label!r} already holds an object labelled {key_label!r}"
                )
            public_object, private_key = generate_ed25519_pair(
                session, secrets.token_bytes(_KEY_ID_BYTES), key_label
            )
            # A token may silently ignore template attributes it does not support; checking costs little.
            _check_private_key(private_key, key_label)
            return _raw_public_key(public_object, key_label)
        except p11.PKCS11Error as exc:
            raise _translate(exc, f"generate the key {key_label!r} in token {token_label!r}") from None
        finally:
            session.close()


def _open_logged_in_session(module_path: str, token_label: str, pin: str) -> Any:
    """Load the library, find the token and open a read-write session logged in as the user."""
    try:
        token = find_token(pkcs11.lib(module_path), module_path, token_label)
        return open_user_session(token, token_label, pin)
    except p11.PKCS11Error as exc:
        raise _translate(exc, f"open a session on token {token_label!r}") from None


def _find_one(session: Any, object_class: ObjectClass, key_label: str, token_label: str) -> Any:
    found = list(session.get_objects({Attribute.CLASS: object_class, Attribute.LABEL: key_label}))
    kind = "private" if object_class == ObjectClass.PRIVATE_KEY else "public"
    if not found:
        raise ConfigurationError(f"the token {token_label!r} has no {kind} key labelled {key_label!r}")
    if len(found) > 1:
        raise ConfigurationError(
            f"the token {token_label!r} holds {len(found)} {kind} keys labelled {key_label!r}, so custody"
            " cannot tell which one is the approver's"
        )
    return found[0]


def _check_private_key(private_key: Any, key_label: str) -> None:
    """Raise ConfigurationError unless the key is an Ed25519 signing key that cannot leave the token."""
    if private_key[Attribute.KEY_TYPE] != KeyType.EC_EDWARDS:
        raise ConfigurationError(
            f"the key {key_label!r} is not an Edwards-curve key; approvers sign with Ed25519"
        )
    if bytes(private_key[Attribute.EC_PARAMS]) not in ED25519_EC_PARAMS:
        raise ConfigurationError(f"the key {key_label!r} is not on edwards25519; approvers sign with Ed25519")
    if not private_key[Attribute.SENSITIVE]:
        raise ConfigurationError(
            f"the key {key_label!r} is not sensitive, so its private half can be read out"
        )
    if private_key[Attribute.EXTRACTABLE]:
        raise ConfigurationError(
            f"the key {key_label!r} is extractable, so its private half can leave the token"
        )
    if not private_key[Attribute.SIGN]:
        raise ConfigurationError(f"the key {key_label!r} is not allowed to sign (CKA_SIGN is false)")


def _raw_public_key(public_object: Any, key_label: str) -> bytes:
    return ed25519_public_key(public_object[Attribute.EC_POINT], repr(key_label), ConfigurationError)


def _translate(exc: p11.PKCS11Error, action: str) -> CustodyError:
    """The custody error for the approver who asked their token to ``action``."""
    return custody_error_for(exc, action, device="token", refused_pin=PermissionDenied)
