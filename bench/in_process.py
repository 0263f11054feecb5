"""What the benchmarks that build custody in their own process start from: a fresh SoftHSM2 token, and approver
keys made for the run with the development policy that names them. Benchmarks run as scripts
(`python bench/NAME.py`), so they import this module by its file name."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from custody.hsm.pkcs11 import Pkcs11Hsm
from custody.hsm.softhsm import create_softhsm_token
from custody.policy_file import DEV_APPROVERS, dev_policy_toml

# A throwaway token's PINs, made for one run and deleted with its directory.
PIN = "bench-user-pin-1234"
SO_PIN = "bench-so-pin-5678"


def fresh_hsm(directory: Path, label: str) -> Pkcs11Hsm:
    """The HSM adapter on a new token under ``directory``; SoftHSM2 is pointed at it before it first loads."""
    token = create_softhsm_token(directory / "tokens", label, PIN, SO_PIN)
    os.environ["SOFTHSM2_CONF"] = str(token.config_path)
    return Pkcs11Hsm(token.module_path, label, PIN)


def dev_approvers() -> tuple[dict[str, Ed25519PrivateKey], str]:
    """An Ed25519 key for each development approver, and the development policy naming their public keys."""
    keys = {name: Ed25519PrivateKey.generate() for name in DEV_APPROVERS}
    public_keys = {
        name: key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()
        for name, key in keys.items()
    }
    return keys, dev_policy_toml(public_keys)
