"""Runs the approver-token scenarios in a process of its own and prints their outcomes as JSON.

SoftHSM2 binds SOFTHSM2_CONF the first time a process loads it, and the pytest process may already have
loaded it for another token directory, so the PKCS#11 approver tests run here, in a child that the test
starts with SOFTHSM2_CONF pointing at the approver's token directory. The parent does all the checking
(signatures with `cryptography`); this script only reports what happened.

Usage: token_scenarios.py MODULE TOKEN_LABEL STATEMENT_HEX, with the user PIN in CUSTODY_TEST_APPROVER_PIN.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

from custody.approver_keys import read_secret
from custody.approver_keys.pkcs11_token import Pkcs11TokenSigner, generate_token_key
from custody.domain.errors import CustodyError
from custody.hsm.pkcs11_common import ED25519_EC_PARAMS_OID

KEY_LABEL = "alice-approval"
LEAKY_KEY_LABEL = "leaky-approval"
WRONG_PIN = "not-the-pin-31337"


def outcome(action: Callable[[], Any]) -> dict[str, Any]:
    """The action's result, or the custody error it raised (any other exception fails the run)."""
    try:
        return {"result": action()}
    except CustodyError as exc:
        return {"error": type(exc).__name__, "message": exc.message}


def main() -> None:
    module_path, token_label, statement_hex = sys.argv[1:4]
    pin = read_secret(file=None, env="CUSTODY_TEST_APPROVER_PIN", prompt=None).decode()
    statement = bytes.fromhex(statement_hex)
    results: dict[str, Any] = {}

    results["generate"] = outcome(lambda: generate_token_key(module_path, token_label, KEY_LABEL, pin).hex())
    results["generate_again"] = outcome(
        lambda: generate_token_key(module_path, token_label, KEY_LABEL, pin).hex()
    )

    def sign_twice() -> dict[str, str]:
        with Pkcs11TokenSigner(module_path, token_label, KEY_LABEL, pin) as signer:
            return {
                "public_key": signer.public_key().hex(),
                "signature": signer.sign(statement).hex(),
                "second_signature": signer.sign(statement).hex(),
            }

    results["sign"] = outcome(sign_twice)

    def sign_after_close() -> str:
        signer = Pkcs11TokenSigner(module_path, token_label, KEY_LABEL, pin)
        signer.close()
        return signer.sign(statement).hex()

    results["sign_after_close"] = outcome(sign_after_close)

    token = pkcs11.lib(module_path).get_token(token_label=token_label)
    with token.open(rw=True, user_pin=pin) as session:
        (private_key,) = session.get_objects(
            {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: KEY_LABEL}
        )
        results["private_attributes"] = {
            "key_type": int(private_key[Attribute.KEY_TYPE]),
            "sensitive": bool(private_key[Attribute.SENSITIVE]),
            "extractable": bool(private_key[Attribute.EXTRACTABLE]),
            "always_sensitive": bool(private_key[Attribute.ALWAYS_SENSITIVE]),
            "never_extractable": bool(private_key[Attribute.NEVER_EXTRACTABLE]),
            "token": bool(private_key[Attribute.TOKEN]),
            "private": bool(private_key[Attribute.PRIVATE]),
        }
        # A key pair made by hand whose private half may be read out: the signer must refuse it.
        parameters = session.create_domain_parameters(
            KeyType.EC_EDWARDS, {Attribute.EC_PARAMS: ED25519_EC_PARAMS_OID}, local=True
        )
        parameters.generate_keypair(
            label=LEAKY_KEY_LABEL,
            store=True,
            mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
            private_template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True, Attribute.SIGN: True},
        )

    results["leaky_key"] = outcome(
        lambda: Pkcs11TokenSigner(module_path, token_label, LEAKY_KEY_LABEL, pin).public_key().hex()
    )
    results["unknown_key"] = outcome(
        lambda: Pkcs11TokenSigner(module_path, token_label, "nobody-approval", pin).public_key().hex()
    )
    results["unknown_token"] = outcome(
        lambda: Pkcs11TokenSigner(module_path, "approver-nobody", KEY_LABEL, pin).public_key().hex()
    )
    results["wrong_pin"] = outcome(
        lambda: Pkcs11TokenSigner(module_path, token_label, KEY_LABEL, WRONG_PIN).public_key().hex()
    )
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
