"""What every test layer shares: the hypothesis profiles and a marker for each test's layer (its folder)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzzing import register_profiles

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
