"""Key generation and the refusal of keys that could leave the HSM, read back through python-pkcs11."""

from __future__ import annotations

import secrets

import pkcs11
import pytest
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

from custody.domain.errors import FailedPrecondition, InvalidInput, NotFound
from custody.hsm.pkcs11 import Pkcs11Hsm, unwrap_ec_point
from custody.hsm.pkcs11_common import SECP256K1_EC_PARAMS

from .verify import verify_raw_signature


def _only(session: pkcs11.Session, object_class: ObjectClass, key_id: bytes) -> pkcs11.Object:
    found = list(session.get_objects({Attribute.CLASS: object_class, Attribute.ID: key_id}))
    assert len(found) == 1, f"expected one {object_class} with id {key_id.hex()}, found {len(found)}"
    return found[0]


def test_generated_keys_have_the_required_attributes(hsm: Pkcs11Hsm, raw_session: pkcs11.Session) -> None:
    generated = [hsm.generate_secp256k1_key(f"attrs-{index}") for index in range(3)]

    key_ids = [key.key_id for key in generated]
    assert len(set(key_ids)) == len(key_ids)
    for index, key in enumerate(generated):
        assert len(key.key_id) == 16
        private = _only(raw_session, ObjectClass.PRIVATE_KEY, key.key_id)
        public = _only(raw_session, ObjectClass.PUBLIC_KEY, key.key_id)

        assert private[Attribute.TOKEN] is True
        assert private[Attribute.PRIVATE] is True
        assert private[Attribute.SENSITIVE] is True
        assert private[Attribute.EXTRACTABLE] is False
        assert private[Attribute.ALWAYS_SENSITIVE] is True
        assert private[Attribute.NEVER_EXTRACTABLE] is True
        assert private[Attribute.SIGN] is True
        assert private[Attribute.KEY_TYPE] == KeyType.EC
        assert private[Attribute.EC_PARAMS] == SECP256K1_EC_PARAMS
        assert private[Attribute.LABEL] == f"attrs-{index}"
        with pytest.raises(pkcs11.exceptions.AttributeSensitive):
            _ = private[Attribute.VALUE]

        assert public[Attribute.TOKEN] is True
        assert public[Attribute.VERIFY] is True
        assert public[Attribute.LABEL] == f"attrs-{index}"
        assert unwrap_ec_point(public[Attribute.EC_POINT]) == key.public_point
        assert hsm.public_point(key.key_id) == key.public_point


def test_generated_key_signs_for_its_public_point(hsm: Pkcs11Hsm) -> None:
    key = hsm.generate_secp256k1_key("fresh")
    digest = secrets.token_bytes(32)
    verify_raw_signature(digest, hsm.sign_digest(key.key_id, digest), key.public_point)


@pytest.mark.parametrize(
    ("sensitive", "extractable"),
    [(False, True), (True, True), (False, False)],
    ids=["readable-and-extractable", "extractable", "readable"],
)
def test_a_key_that_can_leave_the_hsm_is_refused(
    hsm: Pkcs11Hsm, raw_session: pkcs11.Session, sensitive: bool, extractable: bool
) -> None:
    key_id = secrets.token_bytes(16)
    parameters = raw_session.create_domain_parameters(
        KeyType.EC, {Attribute.EC_PARAMS: SECP256K1_EC_PARAMS}, local=True
    )
    parameters.generate_keypair(
        id=key_id,
        label="unsafe",
        store=True,
        mechanism=Mechanism.EC_KEY_PAIR_GEN,
        private_template={
            Attribute.SENSITIVE: sensitive,
            Attribute.EXTRACTABLE: extractable,
            Attribute.SIGN: True,
        },
    )

    with pytest.raises(FailedPrecondition) as refused_check:
        hsm.check_key(key_id)
    assert key_id.hex() in str(refused_check.value)
    with pytest.raises(FailedPrecondition) as refused_sign:
        hsm.sign_digest(key_id, secrets.token_bytes(32))
    assert key_id.hex() in str(refused_sign.value)


def test_a_key_that_became_sensitive_later_is_still_refused(
    hsm: Pkcs11Hsm, raw_session: pkcs11.Session
) -> None:
    key_id = secrets.token_bytes(16)
    parameters = raw_session.create_domain_parameters(
        KeyType.EC, {Attribute.EC_PARAMS: SECP256K1_EC_PARAMS}, local=True
    )
    _, private = parameters.generate_keypair(
        id=key_id,
        label="was-readable",
        store=True,
        mechanism=Mechanism.EC_KEY_PAIR_GEN,
        private_template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: False, Attribute.SIGN: True},
    )
    # PKCS#11 lets SENSITIVE go from false to true; ALWAYS_SENSITIVE keeps the history.
    private[Attribute.SENSITIVE] = True

    with pytest.raises(FailedPrecondition, match="not always sensitive"):
        hsm.check_key(key_id)


def test_a_key_on_another_curve_is_refused(hsm: Pkcs11Hsm, raw_session: pkcs11.Session) -> None:
    key_id = secrets.token_bytes(16)
    prime256v1 = bytes.fromhex("06082a8648ce3d030107")  # DER of OID 1.2.840.10045.3.1.7 (RFC 5480)
    parameters = raw_session.create_domain_parameters(
        KeyType.EC, {Attribute.EC_PARAMS: prime256v1}, local=True
    )
    parameters.generate_keypair(id=key_id, label="p256", store=True, mechanism=Mechanism.EC_KEY_PAIR_GEN)

    with pytest.raises(FailedPrecondition, match="secp256k1"):
        hsm.sign_digest(key_id, secrets.token_bytes(32))


def test_an_unknown_key_is_not_found(hsm: Pkcs11Hsm) -> None:
    unknown = secrets.token_bytes(16)
    with pytest.raises(NotFound, match=unknown.hex()):
        hsm.public_point(unknown)
    with pytest.raises(NotFound, match=unknown.hex()):
        hsm.check_key(unknown)
    with pytest.raises(NotFound, match=unknown.hex()):
        hsm.sign_digest(unknown, secrets.token_bytes(32))


@pytest.mark.parametrize("digest", [b"", bytes(31), bytes(33), "00" * 32])
def test_a_digest_that_is_not_32_bytes_is_invalid_input(hsm: Pkcs11Hsm, digest: object) -> None:
    key = hsm.generate_secp256k1_key("digest-length")
    with pytest.raises(InvalidInput) as error:
        hsm.sign_digest(key.key_id, digest)  # type: ignore[arg-type]
    assert error.value.field == "digest"


@pytest.mark.parametrize("key_id", [b"", bytes(65), "ab" * 16])
def test_a_malformed_key_id_is_invalid_input(hsm: Pkcs11Hsm, key_id: object) -> None:
    with pytest.raises(InvalidInput) as error:
        hsm.sign_digest(key_id, bytes(32))  # type: ignore[arg-type]
    assert error.value.field == "key_id"


def test_an_empty_label_is_invalid_input(hsm: Pkcs11Hsm) -> None:
    with pytest.raises(InvalidInput) as error:
        hsm.generate_secp256k1_key("")
    assert error.value.field == "label"
