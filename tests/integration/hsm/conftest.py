"""Fixtures for the PKCS#11 adapter tests: fresh SoftHSM2 tokens made once per test session.

SoftHSM2 reads SOFTHSM2_CONF when python-pkcs11 first loads it, and python-pkcs11 loads a library once per
process, so both tokens live in one token directory and the variable is set before anything loads the
library. Nothing here skips: without softhsm2 the fixture raises ConfigurationError and the tests fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pkcs11
import pytest

from custody.hsm.pkcs11 import Pkcs11Hsm
from custody.hsm.softhsm import SoftHsmToken, create_softhsm_token

MAIN_TOKEN_LABEL = "custody-hsm-test"
OTHER_TOKEN_LABEL = "custody-hsm-other"
MAIN_PIN = "main-user-pin-4711"
OTHER_PIN = "other-user-pin-0815"
SO_PIN = "security-officer-pin-9999"


@dataclass(frozen=True)
class SoftHsmSetup:
    main: SoftHsmToken
    other: SoftHsmToken

    @property
    def module_path(self) -> str:
        return self.main.module_path


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsmSetup]:
    directory = tmp_path_factory.mktemp("softhsm")
    main = create_softhsm_token(directory, MAIN_TOKEN_LABEL, MAIN_PIN, SO_PIN)
    other = create_softhsm_token(directory, OTHER_TOKEN_LABEL, OTHER_PIN, SO_PIN)
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(main.config_path)
    labels = {token.label for token in pkcs11.lib(main.module_path).get_tokens()}
    assert {MAIN_TOKEN_LABEL, OTHER_TOKEN_LABEL} <= labels, (
        "the SoftHSM2 library was loaded with another SOFTHSM2_CONF before this fixture ran; "
        f"it shows tokens {sorted(labels)}"
    )
    yield SoftHsmSetup(main=main, other=other)
    if previous is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = previous


@pytest.fixture
def hsm(softhsm: SoftHsmSetup) -> Iterator[Pkcs11Hsm]:
    adapter = Pkcs11Hsm(softhsm.module_path, MAIN_TOKEN_LABEL, MAIN_PIN)
    yield adapter
    adapter.close()


@pytest.fixture
def raw_session(softhsm: SoftHsmSetup, hsm: Pkcs11Hsm) -> Iterator[pkcs11.Session]:
    """An independent python-pkcs11 session on the main token, for reading what the adapter did.

    Login belongs to the process, so this session opened without the PIN shares the adapter's login; it is
    closed before the adapter, and closing a session that did not log in logs nobody out.
    """
    token = pkcs11.lib(softhsm.module_path).get_token(token_label=MAIN_TOKEN_LABEL)
    session = token.open(rw=True)
    yield session
    session.close()
