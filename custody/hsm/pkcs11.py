"""The PKCS#11 adapter: custody's Hsm port implemented with python-pkcs11 against a real token.

Facts this module is built on (measured with SoftHSM2 2.6.1 and python-pkcs11 0.10.1, see docs/design.md):

- python-pkcs11 calls ``C_Initialize(NULL)``, so SoftHSM2 runs without internal locks, and it releases the
  GIL inside ``C_Sign``: two threads in the library at once crash the process. Every call into the library
  therefore holds one lock, shared by every adapter that uses the same library file. Run ONE ``Pkcs11Hsm``
  per process and get parallelism from several processes, each with its own library load and login.
- Login belongs to the application, not to a session: the adapter logs in once; closing the session that
  logged in logs every session of the process out, and logging in while already logged in is refused with
  UserAlreadyLoggedIn, which the adapter tolerates.
- Key object handles belong to the session that found them, so they are cached per session and the caches
  are dropped whenever the session is reopened.

No python-pkcs11 exception leaves this module: each becomes one of custody's typed errors, through the mapping
it shares with the approver's token signer (custody/hsm/pkcs11_common.py). The PIN is kept only to log in again
after a lost session and never appears in a log line or an error.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable, Collection
from typing import Any, Literal, TypeVar

import pkcs11
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11

from custody.domain.errors import (
    ConfigurationError,
    CustodyError,
    FailedPrecondition,
    HsmUnavailable,
    InternalError,
    InvalidInput,
    KeyFrozen,
    NotFound,
    PinRefused,
)
from custody.hsm.base import GeneratedKey, HsmHealth
from custody.hsm.pkcs11_common import (
    ED25519_EC_PARAMS,
    PIN_REFUSED_ERRORS,
    SECP256K1_EC_PARAMS,
    SESSION_LOST_ERRORS,
    SIGNING_PRIVATE_KEY_TEMPLATE,
    SIGNING_PUBLIC_KEY_TEMPLATE,
    check_key_label,
    custody_error_for,
    ed25519_public_key,
    find_token,
    generate_ed25519_pair,
    lock_for_library,
    open_user_session,
    require_library_file,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

_KEY_ID_BYTES = 16
_MAX_KEY_ID_BYTES = 64
_DIGEST_BYTES = 32
_SIGNATURE_BYTES = 64
_UNCOMPRESSED_POINT_BYTES = 65
_ED25519_SIGNATURE_BYTES = 64
_HEALTH_LOCK_TIMEOUT_SECONDS = 10.0
_SEAL_KEY_BITS = 256
_SEAL_BYTES = 32
# The seal key is a token object that cannot leave the token and can compute and check MACs, nothing else.
_SEAL_KEY_TEMPLATE = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.SIGN: True,
    Attribute.VERIFY: True,
    Attribute.ENCRYPT: False,
    Attribute.DECRYPT: False,
    Attribute.WRAP: False,
    Attribute.UNWRAP: False,
    Attribute.DERIVE: False,
}
_SEAL_KEY_LABEL = "custody-seal"
# What a seal key is relabelled when an operator retires it deliberately (docs/operations.md): kept in the token,
# no longer taken for a live seal key.
_RETIRED_SEAL_KEY_LABEL = "custody-retired-seal"
# Labels of the token objects custody writes itself start with this; nobody else can make such a key through
# custody (`keys create` refuses them).
_RESERVED_LABEL_PREFIX = "custody-"
# The application a data object belongs to (CKA_APPLICATION), for whoever lists the token's objects.
_DATA_OBJECT_APPLICATION = "custody"


SessionWrapper = Callable[[Any], Any]
# The curves custody checks private keys for: secp256k1 for Ethereum signing, Ed25519 for the audit key.
_Curve = Literal["secp256k1", "ed25519"]
# What a key was checked as: one of the curves, or "seal" for the HMAC seal key.
_CheckedAs = _Curve | Literal["seal"]


class Pkcs11Hsm:
    """custody's Hsm port over one token of a PKCS#11 library; one instance per process (see module doc).

    ``session_wrapper``, when given, receives each real python-pkcs11 session the adapter opens and returns
    an object with the same interface that the adapter uses instead (custody.testing.hsm_faults uses it to inject
    errors into the real session).
    """

    def __init__(
        self, module_path: str, token_label: str, pin: str, *, session_wrapper: SessionWrapper | None = None
    ) -> None:
        self._module_path = module_path
        self._token_label = token_label
        self._pin = pin
        self._session_wrapper = session_wrapper
        self._lock = lock_for_library(module_path)
        self._lib: Any = None
        self._token: Any = None
        self._session: Any = None
        self._closed = False
        # Set once the token refused the PIN after a reconnect. Every further login attempt would count against
        # the token's limit of wrong PINs and could lock it for good, so the adapter stops trying.
        self._pin_refusal: str | None = None
        # Private key objects found in the current session, by CKA_ID; valid only for that session.
        self._private_keys: dict[bytes, Any] = {}
        # Key ids whose private key passed the checks in the current session, with the curve it was checked
        # for: a key checked as the Ed25519 audit key must still be refused for secp256k1 signing.
        self._checked_key_ids: dict[bytes, _CheckedAs] = {}
        # Raw Ed25519 public keys by key id. They are plain bytes, not session handles, so a reopened session
        # keeps them; every Ed25519 signature is verified against them before it is returned.
        self._ed25519_public_keys: dict[bytes, bytes] = {}
        require_library_file(module_path)
        with self._lock:
            try:
                self._lib = pkcs11.lib(module_path)
            except p11.PKCS11Error as exc:
                raise ConfigurationError(
                    f"the PKCS#11 library {module_path} could not be loaded: {exc}"
                ) from exc
            try:
                self._token = self._find_token()
                self._session = self._open_logged_in_session()
            except p11.PKCS11Error as exc:
                raise _translate(exc, f"open a session on token {token_label!r}") from exc
        logger.info("opened a PKCS#11 session on token %r of %s", token_label, module_path)

    # The port.

    def generate_secp256k1_key(self, label: str) -> GeneratedKey:
        """Generate a secp256k1 key pair in the token; the private half is sensitive and not extractable."""
        check_key_label(label, field="label")

        def generate() -> GeneratedKey:
            # A fresh id per attempt: if a first attempt created a pair before the session was lost, the
            # retry must not make a second pair under the same id, which would make both unusable.
            key_id = secrets.token_bytes(_KEY_ID_BYTES)
            parameters = self._session.create_domain_parameters(
                KeyType.EC, {Attribute.EC_PARAMS: SECP256K1_EC_PARAMS}, local=True
            )
            public_key, private_key = parameters.generate_keypair(
                id=key_id,
                label=label,
                store=True,
                mechanism=Mechanism.EC_KEY_PAIR_GEN,
                public_template=SIGNING_PUBLIC_KEY_TEMPLATE,
                private_template=SIGNING_PRIVATE_KEY_TEMPLATE,
            )
            # The token is trusted to honour the template, but checking costs little and catches a token
            # that silently ignores attributes it does not support.
            _check_private_key(private_key, key_id)
            point = _checked_public_point(public_key[Attribute.EC_POINT], key_id)
            # The object handle is not cached: signing finds the key through the session (and so through a
            # session wrapper, when there is one) like any other key.
            self._checked_key_ids[key_id] = "secp256k1"
            return GeneratedKey(key_id=key_id, public_point=point)

        generated = self._call(generate, f"generate key {label!r}")
        logger.info("generated secp256k1 key %r with id %s", label, generated.key_id.hex())
        return generated

    def public_point(self, key_id: bytes) -> bytes:
        """The uncompressed public point (65 bytes) of the key; NotFound when the token has no such key."""
        _validate_key_id(key_id)

        def read_point() -> bytes:
            public_key = self._find_one(ObjectClass.PUBLIC_KEY, key_id)
            return _checked_public_point(public_key[Attribute.EC_POINT], key_id)

        return self._call(read_point, f"read the public key {key_id.hex()}")

    def check_key(self, key_id: bytes) -> None:
        """Raise FailedPrecondition when the private key may leave the HSM or is unfit; NotFound if absent."""
        _validate_key_id(key_id)

        def check() -> None:
            # An explicit check always reads the attributes again rather than trusting the cache.
            self._checked_key_ids.pop(key_id, None)
            self._usable_private_key(key_id, "secp256k1")

        self._call(check, f"check key {key_id.hex()}")

    def sign_digest(self, key_id: bytes, digest: bytes) -> bytes:
        """ECDSA (CKM_ECDSA) over a 32-byte digest; returns r || s, 64 bytes, s not normalized."""
        _validate_key_id(key_id)
        if not isinstance(digest, bytes) or len(digest) != _DIGEST_BYTES:
            length = len(digest) if isinstance(digest, bytes | bytearray) else "a non-bytes value"
            raise InvalidInput(f"a digest to sign is exactly 32 bytes; got {length}", field="digest")

        def sign() -> bytes:
            private_key = self._usable_private_key(key_id, "secp256k1")
            try:
                signature: bytes = private_key.sign(digest, mechanism=Mechanism.ECDSA)
            except p11.PKCS11Error:
                # python-pkcs11 names no exception for CKR_KEY_FUNCTION_NOT_PERMITTED: a key whose signing was
                # switched off since it was checked is told apart by reading the switch again.
                if not self._session_lost_or_signing_off(private_key, key_id):
                    raise
                raise KeyFrozen(_signing_off_message(key_id.hex())) from None
            if len(signature) != _SIGNATURE_BYTES:
                raise InternalError(
                    f"the HSM returned a {len(signature)}-byte ECDSA signature for key {key_id.hex()};"
                    " a secp256k1 signature is 64 bytes"
                )
            return signature

        return self._call(sign, f"sign with key {key_id.hex()}")

    def set_signing_allowed(self, key_id: bytes, allowed: bool) -> bool:
        """Set CKA_SIGN of the secp256k1 private key; returns whether it changed. Only a secp256k1 key custody
        could sign transactions with is ever switched (never the audit key, whatever id a caller names), and a
        token that refuses the change says so."""
        _validate_key_id(key_id)

        def switch() -> bool:
            private_key = self._find_one(ObjectClass.PRIVATE_KEY, key_id)
            if private_key[Attribute.KEY_TYPE] != KeyType.EC or (
                bytes(private_key[Attribute.EC_PARAMS]) != SECP256K1_EC_PARAMS
            ):
                raise FailedPrecondition(
                    f"key {key_id.hex()} is not a secp256k1 key; custody switches signing only for the keys it"
                    " signs transactions with"
                )
            if bool(private_key[Attribute.SIGN]) is allowed:
                # Nothing to change: a token that refused to switch signing off has nothing to switch back on.
                return False
            try:
                private_key[Attribute.SIGN] = allowed
            except (p11.AttributeReadOnly, p11.TemplateInconsistent) as exc:
                raise FailedPrecondition(
                    f"the HSM does not let custody switch signing {'on' if allowed else 'off'} for key"
                    f" {key_id.hex()} ({type(exc).__name__}); the key's state is kept in custody's database only"
                ) from None
            # The next signature checks the key again instead of trusting the cached check.
            self._private_keys.pop(key_id, None)
            self._checked_key_ids.pop(key_id, None)
            return True

        return self._call(switch, f"switch signing {'on' if allowed else 'off'} for key {key_id.hex()}")

    def _session_lost_or_signing_off(self, private_key: Any, key_id: bytes) -> bool:
        """Whether a failed signature came from signing switched off for the key (else the caller re-raises)."""
        try:
            signing_on = bool(private_key[Attribute.SIGN])
        except p11.PKCS11Error:
            return False
        if signing_on:
            return False
        self._private_keys.pop(key_id, None)
        self._checked_key_ids.pop(key_id, None)
        return True

    def ensure_ed25519_key(self, label: str) -> tuple[bytes, bytes]:
        """Find the Ed25519 key pair labelled ``label``, or generate it; returns (key_id, raw public key).

        The private half is sensitive and not extractable, checked like a secp256k1 key whether it was found
        or just made. An object with that label that is not such a key pair is refused, never replaced: the
        audit key's identity is what makes old checkpoints verifiable.
        """
        check_key_label(label, field="label")

        def find_or_generate() -> tuple[bytes, bytes]:
            # Looking first also makes the retry after a lost session safe: a pair that the first attempt
            # generated before the session went away is found instead of being made twice.
            found = self._find_ed25519_pair(label)
            if found is not None:
                return found
            key_id = secrets.token_bytes(_KEY_ID_BYTES)
            public_key, private_key = generate_ed25519_pair(self._session, key_id, label)
            _check_ed25519_private_key(private_key, key_id)
            raw = _checked_ed25519_public_key(public_key[Attribute.EC_POINT], key_id)
            self._checked_key_ids[key_id] = "ed25519"
            logger.info("generated Ed25519 key %r with id %s", label, key_id.hex())
            return key_id, raw

        key_id, raw = self._call(find_or_generate, f"find or generate the Ed25519 key {label!r}")
        self._ed25519_public_keys[key_id] = raw
        return key_id, raw

    def ed25519_public_key(self, key_id: bytes) -> bytes:
        """The raw public key of the Ed25519 pair with CKA_ID ``key_id``, its private half checked as the audit
        key's is (sensitive, not extractable); raises NotFound when the token has no such pair."""
        _validate_key_id(key_id)

        def read() -> bytes:
            self._usable_private_key(key_id, "ed25519")
            public_object = self._find_one(ObjectClass.PUBLIC_KEY, key_id)
            return _checked_ed25519_public_key(public_object[Attribute.EC_POINT], key_id)

        raw = self._call(read, f"read the Ed25519 key {key_id.hex()}")
        self._ed25519_public_keys[key_id] = raw
        return raw

    def sign_ed25519(self, key_id: bytes, data: bytes) -> bytes:
        """Pure Ed25519 (CKM_EDDSA) over ``data``; the signature is verified before it is returned."""
        _validate_key_id(key_id)
        if not isinstance(data, bytes):
            raise InvalidInput("the data to sign with Ed25519 must be bytes", field="data")

        def sign() -> tuple[bytes, bytes]:
            private_key = self._usable_private_key(key_id, "ed25519")
            public_key = self._ed25519_public_keys.get(key_id)
            if public_key is None:
                public_object = self._find_one(ObjectClass.PUBLIC_KEY, key_id)
                public_key = _checked_ed25519_public_key(public_object[Attribute.EC_POINT], key_id)
            signature = bytes(private_key.sign(data, mechanism=Mechanism.EDDSA))
            return public_key, signature

        public_key, signature = self._call(sign, f"sign with the Ed25519 key {key_id.hex()}")
        self._ed25519_public_keys[key_id] = public_key
        if len(signature) != _ED25519_SIGNATURE_BYTES:
            raise InternalError(
                f"the HSM returned a {len(signature)}-byte signature for the Ed25519 key {key_id.hex()};"
                " an Ed25519 signature is 64 bytes"
            )
        # A token whose public and private objects do not belong together would make checkpoints that no
        # one can verify later; checking now costs a fraction of a millisecond and catches it at once.
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
        except InvalidSignature:
            raise InternalError(
                f"the HSM made an Ed25519 signature with key {key_id.hex()} that does not verify with that"
                " key's public key object; the token's key objects do not match"
            ) from None
        return signature

    def generate_seal_key(self) -> bytes:
        """Generate the HMAC-SHA256 seal key in the token; returns its CKA_ID for the daemon to store."""

        def generate() -> bytes:
            # A fresh id per attempt, so a retry after a lost session never makes two keys under one id.
            key_id = secrets.token_bytes(_KEY_ID_BYTES)
            secret_key = self._session.generate_key(
                KeyType.GENERIC_SECRET,
                _SEAL_KEY_BITS,
                id=key_id,
                label=_SEAL_KEY_LABEL,
                store=True,
                template=_SEAL_KEY_TEMPLATE,
                mechanism=Mechanism.GENERIC_SECRET_KEY_GEN,
            )
            _check_seal_key(secret_key, key_id)
            self._private_keys[key_id] = secret_key
            self._checked_key_ids[key_id] = "seal"
            return key_id

        key_id = self._call(generate, "generate the seal key")
        logger.info("generated the HMAC seal key with id %s", key_id.hex())
        return key_id

    def check_seal_key(self, key_id: bytes) -> None:
        """NotFound when the token has no such seal key; FailedPrecondition when it could leave the token."""
        _validate_key_id(key_id)

        def check() -> None:
            self._checked_key_ids.pop(key_id, None)
            self._usable_seal_key(key_id)

        self._call(check, f"check the seal key {key_id.hex()}")

    def seal(self, key_id: bytes, data: bytes) -> bytes:
        """HMAC-SHA256 (CKM_SHA256_HMAC) of ``data`` with the seal key, computed in the token."""
        _validate_key_id(key_id)
        if not isinstance(data, bytes):
            raise InvalidInput("the data to seal must be bytes", field="data")

        def compute() -> bytes:
            mac = bytes(self._usable_seal_key(key_id).sign(data, mechanism=Mechanism.SHA256_HMAC))
            if len(mac) != _SEAL_BYTES:
                raise InternalError(f"the HSM returned a {len(mac)}-byte HMAC-SHA256; one is 32 bytes")
            return mac

        return self._call(compute, f"seal with the key {key_id.hex()}")

    def verify_seal(self, key_id: bytes, data: bytes, seal: bytes) -> bool:
        """Recompute the seal in the token and compare in constant time, so timing tells nothing about it."""
        if not isinstance(seal, bytes):
            return False
        return hmac.compare_digest(self.seal(key_id, data), seal)

    def seal_key_ids(self) -> list[bytes]:
        """The CKA_IDs of the secret keys labelled ``custody-seal``: every seal key custody made in this token."""

        def find() -> list[bytes]:
            return [bytes(key[Attribute.ID]) for key in self._live_seal_keys()]

        return self._call(find, "list the seal keys")

    def retire_seal_keys(self) -> list[bytes]:
        """Relabel every ``custody-seal`` key ``custody-retired-seal``; returns their CKA_IDs."""

        def retire() -> list[bytes]:
            retired = []
            for key in self._live_seal_keys():
                key[Attribute.LABEL] = _RETIRED_SEAL_KEY_LABEL
                retired.append(bytes(key[Attribute.ID]))
            return retired

        retired = self._call(retire, "retire the seal keys")
        logger.warning("retired the seal keys %s", ", ".join(key_id.hex() for key_id in retired) or "(none)")
        return retired

    def read_data_objects(self, label: str) -> list[bytes]:
        """The values of the private token data objects labelled ``label`` (a reserved ``custody-`` label)."""
        _check_reserved_label(label)

        def read() -> list[bytes]:
            return [bytes(data_object[Attribute.VALUE]) for data_object in self._data_objects(label)]

        return self._call(read, f"read the token's {label!r} objects")

    def create_data_object(self, label: str, value: bytes) -> None:
        """Create a private token data object; a retry after a lost session may make a second one with the same
        value, which readers treat as one."""
        _check_reserved_label(label)
        if not isinstance(value, bytes):
            raise InvalidInput("a data object's value must be bytes", field="value")

        def create() -> None:
            self._session.create_object(
                {
                    Attribute.CLASS: ObjectClass.DATA,
                    Attribute.TOKEN: True,
                    # Private: only a logged-in user reads or writes it, so only whoever holds the PIN.
                    Attribute.PRIVATE: True,
                    Attribute.LABEL: label,
                    Attribute.APPLICATION: _DATA_OBJECT_APPLICATION,
                    Attribute.VALUE: value,
                }
            )

        self._call(create, f"write a {label!r} object to the token")

    def destroy_data_objects(self, label: str, values: Collection[bytes]) -> None:
        """Destroy the private token data objects labelled ``label`` that hold one of ``values``."""
        _check_reserved_label(label)
        doomed = set(values)

        def destroy() -> None:
            for data_object in self._data_objects(label):
                if bytes(data_object[Attribute.VALUE]) in doomed:
                    data_object.destroy()

        self._call(destroy, f"remove {label!r} objects from the token")

    def health(self) -> HsmHealth:
        """Report whether the library is loaded, the token present and the session logged in; never raises."""
        if not self._lock.acquire(timeout=_HEALTH_LOCK_TIMEOUT_SECONDS):
            return HsmHealth(
                library_loaded=self._lib is not None,
                token_present=False,
                logged_in=False,
                detail=f"the HSM did not answer within {_HEALTH_LOCK_TIMEOUT_SECONDS:.0f} seconds",
            )
        try:
            return self._health_locked()
        except Exception as exc:
            # A health check is asked by probes that must get an answer, so every failure is reported.
            return HsmHealth(
                library_loaded=False,
                token_present=False,
                logged_in=False,
                detail=f"the health check failed unexpectedly ({type(exc).__name__})",
            )
        finally:
            self._lock.release()

    def close(self) -> None:
        """Close the session (which logs the process out of the token); the adapter is unusable afterwards."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._drop_session_caches()
            session, self._session = self._session, None
            if session is not None:
                try:
                    session.close()
                except p11.PKCS11Error as exc:
                    logger.warning(
                        "closing the PKCS#11 session on token %r failed (%s)",
                        self._token_label,
                        type(exc).__name__,
                    )
        logger.info("closed the PKCS#11 session on token %r", self._token_label)

    # Session management; every method below runs with self._lock held.

    def _call(self, operation: Callable[[], T], action: str) -> T:
        """Run ``operation`` under the lock; after a lost session reopen, log in and retry it once."""
        with self._lock:
            if self._closed:
                raise HsmUnavailable(f"could not {action}: this HSM connection has been closed")
            if self._pin_refusal is not None:
                raise PinRefused(
                    f"could not {action}: {self._pin_refusal}; custody does not try the PIN again until it is"
                    " restarted with the right one"
                )
            if self._session is None:
                # An earlier reconnect failed (the token was away); try again before the operation, so the
                # adapter recovers on its own once the token is back.
                self._reconnect(action)
            return self._run_with_one_retry(operation, action)

    def _run_with_one_retry(self, operation: Callable[[], T], action: str) -> T:
        try:
            return operation()
        except p11.PKCS11Error as exc:
            if not self._is_session_lost(exc):
                raise _translate(exc, action) from exc
            logger.warning(
                "lost the PKCS#11 session on token %r (%s) while trying to %s; reopening it",
                self._token_label,
                type(exc).__name__,
                action,
            )
        self._reconnect(action)
        try:
            return operation()
        except p11.PKCS11Error as exc:
            if self._is_session_lost(exc):
                raise HsmUnavailable(
                    f"could not {action}: the HSM session was lost again right after it was reopened"
                    f" ({type(exc).__name__})"
                ) from exc
            raise _translate(exc, action) from exc

    def _is_session_lost(self, exc: p11.PKCS11Error) -> bool:
        # python-pkcs11 reports CKR_CRYPTOKI_NOT_INITIALIZED (the library was finalized under us) only as a
        # bare PKCS11Error, so the library's own flag is what tells that case apart.
        return isinstance(exc, SESSION_LOST_ERRORS) or (self._lib is not None and not self._lib.initialized)

    def _reconnect(self, action: str) -> None:
        self._drop_session_caches()
        old_session, self._session = self._session, None
        if old_session is not None:
            try:
                old_session.close()
            except p11.PKCS11Error as exc:
                # The old session is usually already gone; closing it is only tidying up.
                logger.debug("closing the lost PKCS#11 session failed as expected (%s)", type(exc).__name__)
        try:
            # pkcs11.lib returns the process's cached library and initializes it again if it was finalized.
            self._lib = pkcs11.lib(self._module_path)
            self._token = self._find_token()
            self._session = self._open_logged_in_session()
        except PinRefused as exc:
            self._pin_refusal = exc.message
            raise
        except ConfigurationError:
            raise
        except p11.PKCS11Error as exc:
            raise HsmUnavailable(
                f"could not {action}: the HSM session was lost and could not be reopened"
                f" ({type(exc).__name__})"
            ) from exc
        logger.info("reopened the PKCS#11 session on token %r and logged in again", self._token_label)

    def _drop_session_caches(self) -> None:
        self._private_keys.clear()
        self._checked_key_ids.clear()

    def _find_token(self) -> Any:
        return find_token(self._lib, self._module_path, self._token_label)

    def _open_logged_in_session(self) -> Any:
        # A refused PIN is reported here with what the operator must do, before the shared mapping sees it:
        # the daemon stops trying a PIN the token refused (see _call).
        try:
            session = open_user_session(self._token, self._token_label, self._pin, log=logger)
        except PIN_REFUSED_ERRORS:
            raise PinRefused(f"the HSM refused the PIN for token {self._token_label!r}") from None
        except p11.PinLocked:
            raise PinRefused(
                f"the PIN for token {self._token_label!r} is locked after too many wrong attempts;"
                " the security officer must unlock it"
            ) from None
        except p11.PinExpired:
            raise PinRefused(
                f"the PIN for token {self._token_label!r} has expired and must be changed"
            ) from None
        except p11.UserPinNotInitialized:
            raise ConfigurationError(f"token {self._token_label!r} has no user PIN set yet") from None
        if self._session_wrapper is not None:
            return self._session_wrapper(session)
        return session

    # Keys.

    def _find_one(self, object_class: ObjectClass, key_id: bytes) -> Any:
        found = list(self._session.get_objects({Attribute.CLASS: object_class, Attribute.ID: key_id}))
        kind = "private" if object_class == ObjectClass.PRIVATE_KEY else "public"
        if not found:
            raise NotFound(f"the HSM has no {kind} key with id {key_id.hex()}")
        if len(found) > 1:
            raise FailedPrecondition(
                f"the HSM holds {len(found)} {kind} keys with id {key_id.hex()}, so custody cannot tell"
                " which one to use"
            )
        return found[0]

    def _usable_private_key(self, key_id: bytes, curve: _Curve) -> Any:
        private_key = self._private_keys.get(key_id)
        found_now = private_key is None
        if private_key is None:
            private_key = self._find_one(ObjectClass.PRIVATE_KEY, key_id)
        if found_now or self._checked_key_ids.get(key_id) != curve:
            # Kept only once it passes: python-pkcs11 gives an object found while CKA_SIGN was false no sign
            # method, so a key found while frozen is found again once it may sign.
            self._private_keys.pop(key_id, None)
            if curve == "secp256k1":
                _check_private_key(private_key, key_id)
            else:
                _check_ed25519_private_key(private_key, key_id)
            self._checked_key_ids[key_id] = curve
        self._private_keys[key_id] = private_key
        return private_key

    def _usable_seal_key(self, key_id: bytes) -> Any:
        secret_key = self._private_keys.get(key_id)
        if secret_key is None:
            found = list(
                self._session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.ID: key_id})
            )
            if not found:
                raise NotFound(f"the HSM has no seal key with id {key_id.hex()}")
            if len(found) > 1:
                raise FailedPrecondition(
                    f"the HSM holds {len(found)} secret keys with id {key_id.hex()}, so custody cannot tell"
                    " which one seals its rows"
                )
            secret_key = found[0]
            self._private_keys[key_id] = secret_key
        if self._checked_key_ids.get(key_id) != "seal":
            _check_seal_key(secret_key, key_id)
            self._checked_key_ids[key_id] = "seal"
        return secret_key

    def _live_seal_keys(self) -> list[Any]:
        # Listed in full before anything is changed: an object search stays open while it is iterated.
        return list(
            self._session.get_objects(
                {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: _SEAL_KEY_LABEL}
            )
        )

    def _data_objects(self, label: str) -> list[Any]:
        return list(
            self._session.get_objects(
                {
                    Attribute.CLASS: ObjectClass.DATA,
                    Attribute.TOKEN: True,
                    Attribute.PRIVATE: True,
                    Attribute.LABEL: label,
                }
            )
        )

    def _find_ed25519_pair(self, label: str) -> tuple[bytes, bytes] | None:
        """The (key_id, raw public key) of the checked Ed25519 pair labelled ``label``; None if absent."""
        private_keys = list(
            self._session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: label})
        )
        if not private_keys:
            if list(self._session.get_objects({Attribute.LABEL: label})):
                raise FailedPrecondition(
                    f"the HSM holds objects labelled {label!r} but no private key with that label, so custody"
                    " will neither use nor replace them"
                )
            return None
        if len(private_keys) > 1:
            raise FailedPrecondition(
                f"the HSM holds {len(private_keys)} private keys labelled {label!r}, so custody cannot tell"
                " which one to use"
            )
        private_key = private_keys[0]
        key_id = bytes(private_key[Attribute.ID])
        if not 0 < len(key_id) <= _MAX_KEY_ID_BYTES:
            raise FailedPrecondition(
                f"the private key labelled {label!r} has an id of {len(key_id)} bytes; custody needs 1 to"
                f" {_MAX_KEY_ID_BYTES}"
            )
        _check_ed25519_private_key(private_key, key_id)
        public_key = self._find_one(ObjectClass.PUBLIC_KEY, key_id)
        raw = _checked_ed25519_public_key(public_key[Attribute.EC_POINT], key_id)
        self._private_keys[key_id] = private_key
        self._checked_key_ids[key_id] = "ed25519"
        return key_id, raw

    def _health_locked(self) -> HsmHealth:
        if self._closed:
            return HsmHealth(True, False, False, detail="this HSM connection has been closed")
        if self._lib is None or not self._lib.initialized:
            return HsmHealth(False, False, False, detail="the PKCS#11 library is not initialized")
        try:
            token_info = self._token.slot.get_token()
        except p11.PKCS11Error as exc:
            return HsmHealth(True, False, False, detail=f"the token cannot be read ({type(exc).__name__})")
        if token_info.label != self._token_label:
            return HsmHealth(True, False, False, detail=f"the slot now holds token {token_info.label!r}")
        try:
            self._run_with_one_retry(self._probe_login, "check the HSM login")
        except CustodyError as exc:
            return HsmHealth(True, True, False, detail=exc.message)
        return HsmHealth(True, True, True)

    def _probe_login(self) -> None:
        """Prove the session is logged in by creating and destroying a private session object.

        Creating a private object is refused with UserNotLoggedIn when the login is gone and has no lasting
        effect otherwise; python-pkcs11 offers no C_GetSessionInfo to ask directly.
        """
        probe_object = self._session.create_object(
            {
                Attribute.CLASS: ObjectClass.DATA,
                Attribute.TOKEN: False,
                Attribute.PRIVATE: True,
                Attribute.LABEL: "custody-health-probe",
            }
        )
        probe_object.destroy()


def _check_reserved_label(label: str) -> None:
    if not isinstance(label, str) or not label.startswith(_RESERVED_LABEL_PREFIX):
        raise InvalidInput(
            f"custody writes token objects only under labels starting with {_RESERVED_LABEL_PREFIX!r}",
            field="label",
        )


def _validate_key_id(key_id: bytes) -> None:
    if not isinstance(key_id, bytes) or not 0 < len(key_id) <= _MAX_KEY_ID_BYTES:
        raise InvalidInput(f"a key id is 1 to {_MAX_KEY_ID_BYTES} bytes", field="key_id")


def _check_private_key(private_key: Any, key_id: bytes) -> None:
    """Raise FailedPrecondition unless the key is a secp256k1 signing key that cannot leave the HSM (KeyFrozen,
    one of them, when signing with it is switched off)."""
    name = key_id.hex()
    if private_key[Attribute.KEY_TYPE] != KeyType.EC:
        raise FailedPrecondition(f"key {name} is not an elliptic-curve key, so it cannot sign for Ethereum")
    if bytes(private_key[Attribute.EC_PARAMS]) != SECP256K1_EC_PARAMS:
        raise FailedPrecondition(f"key {name} is not on the secp256k1 curve, so it cannot sign for Ethereum")
    _check_cannot_leave(private_key, name)


def _check_ed25519_private_key(private_key: Any, key_id: bytes) -> None:
    """Raise FailedPrecondition unless the key is an Ed25519 signing key that cannot leave the HSM."""
    name = key_id.hex()
    if private_key[Attribute.KEY_TYPE] != KeyType.EC_EDWARDS:
        raise FailedPrecondition(f"key {name} is not an Edwards-curve key, so it cannot sign with Ed25519")
    if bytes(private_key[Attribute.EC_PARAMS]) not in ED25519_EC_PARAMS:
        raise FailedPrecondition(f"key {name} is not on edwards25519, so it cannot sign with Ed25519")
    _check_cannot_leave(private_key, name)


def _check_seal_key(secret_key: Any, key_id: bytes) -> None:
    """Raise FailedPrecondition unless the key is a generic secret that cannot leave the HSM and may MAC."""
    name = key_id.hex()
    if secret_key[Attribute.KEY_TYPE] != KeyType.GENERIC_SECRET:
        raise FailedPrecondition(
            f"key {name} is not a generic secret key, so it cannot seal with HMAC-SHA256"
        )
    _check_cannot_leave(secret_key, name)


def _check_cannot_leave(private_key: Any, name: str) -> None:
    """Raise FailedPrecondition unless the private key is sensitive, never extractable and may sign."""
    if not private_key[Attribute.SENSITIVE]:
        raise FailedPrecondition(
            f"key {name} is not marked sensitive; custody refuses keys whose private half can be read out"
        )
    if private_key[Attribute.EXTRACTABLE]:
        raise FailedPrecondition(
            f"key {name} is extractable; custody refuses keys whose private half can leave the HSM"
        )
    # These two record the key's history: a key once readable may have been copied, whatever it says now.
    if _optional_attribute(private_key, Attribute.ALWAYS_SENSITIVE) is False:
        raise FailedPrecondition(
            f"key {name} was not always sensitive, so its private half may have been read out before"
        )
    if _optional_attribute(private_key, Attribute.NEVER_EXTRACTABLE) is False:
        raise FailedPrecondition(
            f"key {name} was extractable at some time, so its private half may have left the HSM"
        )
    if not private_key[Attribute.SIGN]:
        raise KeyFrozen(_signing_off_message(name))


def _signing_off_message(key_name: str) -> str:
    return (
        f"the HSM refuses to sign with key {key_name}: signing with it is switched off in the token (CKA_SIGN"
        " is false), as custody does when it freezes a key"
    )


def _optional_attribute(key_object: Any, attribute: Attribute) -> bool | None:
    """Read a boolean attribute the token may not implement; None when it does not."""
    try:
        return bool(key_object[attribute])
    except p11.AttributeTypeInvalid:
        return None


def unwrap_ec_point(encoded: bytes) -> bytes:
    """Return the uncompressed point 0x04||x||y from CKA_EC_POINT, DER OCTET STRING wrapped or raw.

    PKCS#11 says CKA_EC_POINT holds the DER encoding of an OCTET STRING, but some tokens store the raw point.
    The two are told apart by length: the wrapped form of a 65-byte point is 67 bytes (tag 0x04, length 0x41).
    """
    encoded = bytes(encoded)
    if len(encoded) == _UNCOMPRESSED_POINT_BYTES + 2 and encoded[:2] == b"\x04\x41":
        point = encoded[2:]
    elif len(encoded) == _UNCOMPRESSED_POINT_BYTES:
        point = encoded
    else:
        raise ValueError(f"CKA_EC_POINT of {len(encoded)} bytes is not an uncompressed secp256k1 point")
    if point[0] != 0x04:
        raise ValueError("CKA_EC_POINT does not hold an uncompressed point (first byte is not 0x04)")
    return point


def _checked_public_point(encoded: bytes, key_id: bytes) -> bytes:
    try:
        point = unwrap_ec_point(encoded)
        # Parsing checks the point lies on secp256k1, so a wrong curve or a corrupt object is caught here.
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), point)
    except ValueError as exc:
        raise FailedPrecondition(
            f"the public key {key_id.hex()} is not a valid secp256k1 point: {exc}"
        ) from None
    return point


def _checked_ed25519_public_key(encoded: bytes, key_id: bytes) -> bytes:
    return ed25519_public_key(encoded, key_id.hex(), FailedPrecondition)


def _translate(exc: p11.PKCS11Error, action: str) -> CustodyError:
    """The custody error for the person who asked the daemon's HSM to ``action``."""
    return custody_error_for(exc, action, device="HSM", refused_pin=PinRefused)
