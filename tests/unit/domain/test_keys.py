"""Key labels: short, plain, and checked whole."""

from __future__ import annotations

import pytest

from custody.domain.errors import InvalidInput
from custody.domain.keys import validate_key_label


@pytest.mark.parametrize("label", ["ops", "treasury-2", "a", "a" * 63, "0.safe_owner"])
def test_plain_labels_are_accepted(label: str) -> None:
    assert validate_key_label(label) == label


@pytest.mark.parametrize(
    "label",
    ["", "Ops", "-ops", "ops\n", "ops\nother", "\nops", "ops ", "a" * 64, "opś", "ops/1"],
)
def test_anything_else_is_refused_naming_the_label(label: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        validate_key_label(label)
    assert refused.value.field == "label"
    assert repr(label) in refused.value.message
