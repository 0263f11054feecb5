"""What every test layer shares: the hypothesis profiles, a marker for each test's layer (its folder), and the
session's SoftHSM2 tokens."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fuzzing import register_profiles
from tests.softhsm_tokens import SoftHsmSetup, create_session_tokens

TESTS = Path(__file__).parent
# The folders under tests/ that hold a layer of the suite; each test is marked with its folder's name, so
# `pytest -m "not e2e"` or `-m app` selects layers wherever a test file sits inside them.
LAYERS = ("unit", "integration", "app", "e2e", "deploy")

register_profiles()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        layer = item.path.relative_to(TESTS).parts[0]
        if layer in LAYERS:
            item.add_marker(getattr(pytest.mark, layer))


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsmSetup]:
    """Every SoftHSM2 token tests open in this process (see tests/softhsm_tokens.py)."""
    previous = os.environ.get("SOFTHSM2_CONF")
    yield create_session_tokens(tmp_path_factory.mktemp("softhsm"))
    if previous is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = previous
