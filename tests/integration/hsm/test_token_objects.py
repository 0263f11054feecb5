"""The token objects custody keeps outside the database, in the real token: private data objects under reserved
labels (the audit log's anchor), and the seal keys listed and retired by label.

What the adapter wrote is read back through an independent python-pkcs11 session.
"""

from __future__ import annotations

import secrets

import pkcs11
import pytest
from pkcs11 import Attribute, ObjectClass

from custody.domain.errors import InvalidInput
from custody.hsm.pkcs11 import Pkcs11Hsm

LABEL = "custody-test-object"


def _values(session: pkcs11.Session, label: str) -> list[bytes]:
    found = session.get_objects({Attribute.CLASS: ObjectClass.DATA, Attribute.LABEL: label})
    return sorted(bytes(data_object[Attribute.VALUE]) for data_object in found)


def test_a_data_object_is_a_private_token_object(hsm: Pkcs11Hsm, raw_session: pkcs11.Session) -> None:
    label = f"{LABEL}-{secrets.token_hex(4)}"
    value = secrets.token_bytes(100)

    hsm.create_data_object(label, value)

    assert hsm.read_data_objects(label) == [value]
    assert _values(raw_session, label) == [value]
    (data_object,) = raw_session.get_objects({Attribute.CLASS: ObjectClass.DATA, Attribute.LABEL: label})
    assert data_object[Attribute.TOKEN] is True
    # Private: only a session logged in with the user PIN reads it.
    assert data_object[Attribute.PRIVATE] is True


def test_destroying_removes_only_the_objects_holding_the_values_named(hsm: Pkcs11Hsm) -> None:
    label = f"{LABEL}-{secrets.token_hex(4)}"
    kept, removed = b"kept", b"removed"
    for value in (kept, removed, removed):
        hsm.create_data_object(label, value)

    hsm.destroy_data_objects(label, [removed])

    assert hsm.read_data_objects(label) == [kept]


@pytest.mark.parametrize("label", ["anchor", "seal", "", "Custody-anchor"])
def test_labels_outside_the_reserved_prefix_are_refused(hsm: Pkcs11Hsm, label: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        hsm.create_data_object(label, b"value")
    assert refused.value.field == "label"
    with pytest.raises(InvalidInput):
        hsm.read_data_objects(label)


def test_retired_seal_keys_are_no_longer_listed_and_still_seal(hsm: Pkcs11Hsm) -> None:
    key_id = hsm.generate_seal_key()
    assert key_id in hsm.seal_key_ids()
    seal = hsm.seal(key_id, b"sealed before")

    assert key_id in hsm.retire_seal_keys()

    assert key_id not in hsm.seal_key_ids()
    # Found by its id whatever its label: a database that names it keeps its seals.
    hsm.check_seal_key(key_id)
    assert hsm.verify_seal(key_id, b"sealed before", seal)
