"""The SoftHSM2 tokens tests open inside the pytest process, made once per session in one token directory.

SoftHSM2 reads SOFTHSM2_CONF once, when python-pkcs11 first loads it, and python-pkcs11 loads a library once
per process. So every token a test opens in this process (rather than in a child process with a configuration
of its own) lives in one directory, and all of them are created before anything loads the library: the
PKCS#11 adapter's tests use the main and the other token, the in-process application tests the app token.
Under pytest-xdist each worker is a process of its own and makes its own directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pkcs11

from custody.hsm.softhsm import SoftHsmToken, create_softhsm_token

MAIN_TOKEN_LABEL = "custody-hsm-test"
OTHER_TOKEN_LABEL = "custody-hsm-other"
APP_TOKEN_LABEL = "custody-app-test"
MAIN_PIN = "main-user-pin-4711"
OTHER_PIN = "other-user-pin-0815"
APP_PIN = "app-user-pin-2718"
SO_PIN = "security-officer-pin-9999"


@dataclass(frozen=True)
class SoftHsmSetup:
    main: SoftHsmToken
    other: SoftHsmToken
    app: SoftHsmToken

    @property
    def module_path(self) -> str:
        return self.main.module_path


def create_session_tokens(directory: Path) -> SoftHsmSetup:
    """Create every in-process token in ``directory`` and point SOFTHSM2_CONF at it; the caller restores the
    variable afterwards. Nothing skips: without softhsm2 this raises ConfigurationError."""
    setup = SoftHsmSetup(
        main=create_softhsm_token(directory, MAIN_TOKEN_LABEL, MAIN_PIN, SO_PIN),
        other=create_softhsm_token(directory, OTHER_TOKEN_LABEL, OTHER_PIN, SO_PIN),
        app=create_softhsm_token(directory, APP_TOKEN_LABEL, APP_PIN, SO_PIN),
    )
    os.environ["SOFTHSM2_CONF"] = str(setup.main.config_path)
    labels = {token.label for token in pkcs11.lib(setup.module_path).get_tokens()}
    assert {MAIN_TOKEN_LABEL, OTHER_TOKEN_LABEL, APP_TOKEN_LABEL} <= labels, (
        "the SoftHSM2 library was loaded with another SOFTHSM2_CONF before the session's tokens were made; "
        f"it shows tokens {sorted(labels)}"
    )
    return setup
