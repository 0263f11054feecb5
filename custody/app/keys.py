"""Use cases for signing keys: create them inside the HSM, read them back."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from custody.chains.evm.address import address_from_public_point
from custody.domain.errors import AlreadyExists, NotFound
from custody.domain.keys import Key, KeyState, validate_key_label
from custody.domain.principals import Principal, Role
from custody.hsm.base import Hsm
from custody.store.base import Store

log = logging.getLogger(__name__)


class KeyUseCases:
    def __init__(self, store: Store, hsm: Hsm, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._hsm = hsm
        self._clock = clock

    def create_key(self, caller: Principal, label: str) -> Key:
        """Generate a secp256k1 key pair in the HSM and record it; only admins create keys."""
        caller.require(Role.ADMIN, "create keys")
        validate_key_label(label)
        # Checking first keeps the common mistake (a label in use) from leaving an orphan key pair in the token;
        # the store's unique constraint still decides a race between two admins.
        if self._store.get_key(label) is not None:
            raise AlreadyExists(f"a key labelled {label!r} already exists")
        generated = self._hsm.generate_secp256k1_key(label)
        self._hsm.check_key(generated.key_id)
        key = Key(
            label=label,
            key_id=generated.key_id.hex(),
            address=address_from_public_point(generated.public_point),
            public_key=generated.public_point,
            state=KeyState.ACTIVE,
            created_at=self._clock(),
        )
        self._store.insert_key(key)
        log.info("created key %s (%s) for %s", label, key.address, caller.name)
        return key

    def get_key(self, caller: Principal, label: str) -> Key:
        del caller  # Any authenticated principal may read public key material.
        return self.get_key_record(validate_key_label(label))

    def get_key_record(self, label: str) -> Key:
        """The stored key for a label the caller already holds a request for (no permission to check)."""
        key = self._store.get_key(label)
        if key is None:
            raise NotFound(f"there is no key labelled {label!r}")
        return key

    def list_keys(self, caller: Principal) -> Sequence[Key]:
        del caller
        return self._store.list_keys()

    def verify_keys_in_hsm(self) -> None:
        """At start: every key the store knows must be in the token, sensitive and not extractable, and its
        public point must still give the recorded address. Raises the first problem found."""
        for key in self._store.list_keys():
            key_id = bytes.fromhex(key.key_id)
            self._hsm.check_key(key_id)
            if address_from_public_point(self._hsm.public_point(key_id)) != key.address:
                raise NotFound(
                    f"the HSM's key {key.label!r} no longer matches the recorded address {key.address}"
                )
