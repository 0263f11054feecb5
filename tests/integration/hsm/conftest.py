"""Fixtures for the PKCS#11 adapter tests, on the session's main token (the ``softhsm`` fixture in
tests/conftest.py makes it)."""

from __future__ import annotations

from collections.abc import Iterator

import pkcs11
import pytest

from custody.hsm.pkcs11 import Pkcs11Hsm
from tests.softhsm_tokens import MAIN_PIN, MAIN_TOKEN_LABEL, SoftHsmSetup


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
