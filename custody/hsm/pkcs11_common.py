"""What custody's two users of PKCS#11 share: the daemon's HSM adapter (custody/hsm/pkcs11.py) and the
approver's own token (custody/approver_keys/pkcs11_token.py).

Both load a library and find a token by its label, log in, make and check Ed25519 key pairs and read public
keys from CKA_EC_POINT; neither lets a python-pkcs11 exception out, and ``custody_error_for`` is the one
mapping from those exceptions to custody's errors. The two users differ only in how a message names the
device ("the HSM", "the token") and in what a refused PIN is: the daemon's PIN is part of its configuration
(PinRefused), an approver's PIN is the approver's own credential (PermissionDenied, as a wrong passphrase of
an approver key file is).

python-pkcs11 calls ``C_Initialize(NULL)`` and releases the GIL inside the library, and SoftHSM2 then runs
without internal locks (docs/design.md): every call into a library holds ``lock_for_library``, one lock per
library file, shared by every user of that file in the process.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pkcs11 import Attribute, KeyType, Mechanism
from pkcs11 import exceptions as p11

from custody.domain.errors import (
    ConfigurationError,
    CustodyError,
    FailedPrecondition,
    HsmUnavailable,
    InternalError,
    InvalidInput,
    NotFound,
)

# DER encoding of the named-curve OID 1.3.132.0.10 (secp256k1), the value of CKA_EC_PARAMS.
SECP256K1_EC_PARAMS = bytes.fromhex("06052b8104000a")
# CKA_EC_PARAMS of an Ed25519 key, in the two forms PKCS#11 3.0 allows: the DER of the curve OID 1.3.101.112
# and the DER PrintableString "edwards25519". SoftHSM2 2.6 accepts the OID and reports the printable name.
ED25519_EC_PARAMS_OID = bytes.fromhex("06032b6570")
ED25519_EC_PARAMS_NAME = b"\x13\x0cedwards25519"
ED25519_EC_PARAMS = frozenset({ED25519_EC_PARAMS_OID, ED25519_EC_PARAMS_NAME})

MAX_KEY_LABEL_BYTES = 255
_ED25519_PUBLIC_KEY_BYTES = 32

# Templates for every key pair custody generates in a token: the private half is a token object that can sign
# and do nothing else, sensitive and never extractable, so it cannot leave the token; the public half only
# verifies.
SIGNING_PUBLIC_KEY_TEMPLATE = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: False,
    Attribute.VERIFY: True,
    Attribute.ENCRYPT: False,
    Attribute.WRAP: False,
    Attribute.DERIVE: False,
}
SIGNING_PRIVATE_KEY_TEMPLATE = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.SIGN: True,
    Attribute.DECRYPT: False,
    Attribute.UNWRAP: False,
    Attribute.DERIVE: False,
}

# Errors after which reopening the session and logging in again can succeed: the session, its login or the
# handles it found are gone, but the token may well be back.
SESSION_LOST_ERRORS: tuple[type[p11.PKCS11Error], ...] = (
    p11.SessionClosed,
    p11.SessionHandleInvalid,
    p11.DeviceRemoved,
    p11.UserNotLoggedIn,
    p11.TokenNotPresent,
    # A logout (for example another session of this process closing) invalidates the handles of private
    # objects, so a stale cached handle is a lost login too.
    p11.ObjectHandleInvalid,
    p11.KeyHandleInvalid,
)

# Errors that say the device itself is failing; reopening the session would not help.
DEVICE_ERRORS: tuple[type[p11.PKCS11Error], ...] = (
    p11.DeviceError,
    p11.DeviceMemory,
    p11.GeneralError,
    p11.FunctionFailed,
    p11.FunctionCancelled,
    p11.HostMemory,
    p11.SessionCount,
    p11.OperationActive,
    p11.TokenNotRecognised,
)

PIN_REFUSED_ERRORS: tuple[type[p11.PKCS11Error], ...] = (p11.PinIncorrect, p11.PinInvalid, p11.PinLenRange)

# One lock per library file: python-pkcs11 loads each library once per process and shares it, so every user of
# the same file must take turns.
_library_locks: dict[str, threading.Lock] = {}
_library_locks_guard = threading.Lock()


def lock_for_library(module_path: str) -> threading.Lock:
    with _library_locks_guard:
        return _library_locks.setdefault(str(Path(module_path).resolve()), threading.Lock())


def require_library_file(module_path: str) -> str:
    """``module_path`` itself; ConfigurationError when no such file exists (python-pkcs11 would only say that
    it could not load it)."""
    if not Path(module_path).is_file():
        raise ConfigurationError(f"the PKCS#11 library {module_path} does not exist")
    return module_path


def check_key_label(label: str, *, field: str) -> None:
    """InvalidInput (for ``field``) unless ``label`` is a CKA_LABEL custody accepts."""
    if not isinstance(label, str) or not 0 < len(label.encode("utf-8")) <= MAX_KEY_LABEL_BYTES:
        raise InvalidInput(f"a key label is 1 to {MAX_KEY_LABEL_BYTES} bytes of UTF-8 text", field=field)


def find_token(library: Any, module_path: str, token_label: str) -> Any:
    """The token labelled ``token_label`` in a loaded library; ConfigurationError when there is none or more
    than one. Other PKCS#11 errors are raised as they are, for the caller's ``custody_error_for``."""
    try:
        return library.get_token(token_label=token_label)
    except p11.NoSuchToken:
        raise ConfigurationError(
            f"no token labelled {token_label!r} was found in the PKCS#11 library {module_path}"
        ) from None
    except p11.MultipleTokensReturned:
        raise ConfigurationError(
            f"more than one token is labelled {token_label!r} in the PKCS#11 library {module_path};"
            " token labels must be unique"
        ) from None


def open_user_session(token: Any, token_label: str, pin: str, *, log: logging.Logger | None = None) -> Any:
    """A read-write session on ``token`` with the user logged in; PKCS#11 errors are raised as they are.

    Login belongs to the process, not to a session: when a session of this process has logged in already, the
    token refuses a second login (UserAlreadyLoggedIn) and a session opened without the PIN has the user's
    rights. python-pkcs11 does not hand back the session it opened before the refused C_Login; that handle
    stays open until the library is finalized. ``log``, when given, notes the reused login.
    """
    try:
        return token.open(rw=True, user_pin=pin)
    except p11.UserAlreadyLoggedIn:
        if log is not None:
            log.info("token %r is already logged in by this process; reusing that login", token_label)
        return token.open(rw=True)


def generate_ed25519_pair(session: Any, key_id: bytes, label: str) -> tuple[Any, Any]:
    """Generate an Ed25519 key pair (public object, private object) from the signing templates."""
    parameters = session.create_domain_parameters(
        KeyType.EC_EDWARDS, {Attribute.EC_PARAMS: ED25519_EC_PARAMS_OID}, local=True
    )
    public_key, private_key = parameters.generate_keypair(
        id=key_id,
        label=label,
        store=True,
        mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
        public_template=SIGNING_PUBLIC_KEY_TEMPLATE,
        private_template=SIGNING_PRIVATE_KEY_TEMPLATE,
    )
    return public_key, private_key


def ed25519_public_key(encoded: bytes, key_name: str, error: type[CustodyError]) -> bytes:
    """The 32-byte key from CKA_EC_POINT, which PKCS#11 stores as a DER OCTET STRING (some tokens raw).

    ``key_name`` names the key in the message of ``error``, raised when the value is not an Ed25519 key.
    """
    encoded = bytes(encoded)
    if len(encoded) == _ED25519_PUBLIC_KEY_BYTES + 2 and encoded[:2] == bytes(
        [0x04, _ED25519_PUBLIC_KEY_BYTES]
    ):
        raw = encoded[2:]
    elif len(encoded) == _ED25519_PUBLIC_KEY_BYTES:
        raw = encoded
    else:
        raise error(
            f"the public key {key_name} has a CKA_EC_POINT of {len(encoded)} bytes, not an Ed25519 key"
        )
    try:
        Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise error(f"the public key {key_name} is not a valid Ed25519 key") from None
    return raw


def custody_error_for(
    exc: p11.PKCS11Error, action: str, *, device: str, refused_pin: type[CustodyError]
) -> CustodyError:
    """The custody error for the person who asked to ``action`` when the library raised ``exc``.

    ``device`` is how the message names the device ("HSM", "token"); ``refused_pin`` is the class of a refused
    or locked PIN, which depends on whose PIN it is (see the module doc).
    """
    name = type(exc).__name__
    if isinstance(exc, (*SESSION_LOST_ERRORS, *DEVICE_ERRORS)):
        return HsmUnavailable(f"could not {action}: the {device} is not available ({name})")
    if isinstance(exc, p11.NoSuchKey):
        return NotFound(f"could not {action}: the {device} has no such key")
    if isinstance(exc, PIN_REFUSED_ERRORS):
        return refused_pin(f"could not {action}: the {device} refused the PIN")
    if isinstance(exc, p11.PinLocked):
        return refused_pin(
            f"could not {action}: the PIN is locked after too many wrong attempts; the security officer must"
            " unlock it"
        )
    if isinstance(exc, p11.PinExpired | p11.UserPinNotInitialized):
        return ConfigurationError(
            f"could not {action}: the {device}'s user PIN is expired or not set ({name})"
        )
    if isinstance(exc, p11.MechanismInvalid | p11.DomainParamsInvalid | p11.FunctionNotSupported):
        return FailedPrecondition(
            f"could not {action}: the {device} does not support this key type or mechanism ({name})"
        )
    if isinstance(exc, p11.TokenWriteProtected | p11.SessionReadOnly):
        return FailedPrecondition(f"could not {action}: the token is read-only ({name})")
    if isinstance(exc, p11.ArgumentsBad | p11.DataInvalid | p11.DataLenRange | p11.AttributeValueInvalid):
        return InvalidInput(f"could not {action}: the {device} rejected the arguments ({name})")
    return InternalError(f"could not {action}: unexpected {device} error ({name})")
