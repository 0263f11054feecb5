"""Hypothesis profiles, and the case counts of the tests that set their own.

``ci`` runs every property with the case counts the project's CI has always run (10,000 cases per payload
parser, for instance); ``dev``, the default for ``make test`` on a laptop, runs a tenth of them, which still
finds the shallow bugs a change introduces while costing seconds instead of minutes. The environment variable
HYPOTHESIS_PROFILE chooses one; .ci/run sets it to ``ci``.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st

CI_PROFILE = "ci"
DEV_PROFILE = "dev"
PROFILE_VARIABLE = "HYPOTHESIS_PROFILE"
# The dev profile runs this share of each CI case count, and never fewer than DEV_MINIMUM_CASES.
DEV_DIVISOR = 10
DEV_MINIMUM_CASES = 20


ACTIVE_PROFILE = os.environ.get(PROFILE_VARIABLE, DEV_PROFILE)


def register_profiles() -> None:
    """Register both profiles and load the one HYPOTHESIS_PROFILE names (dev when it is unset)."""
    # Tests without a count of their own run hypothesis's default of 100 in CI, as they always did. Neither
    # profile has a deadline per example: the suite runs on every core at once, and an example that waits for a
    # core would fail for the machine's load, not for the code; tests that guard against slow parsing time
    # their parses themselves.
    settings.register_profile(CI_PROFILE, max_examples=100, deadline=None, print_blob=True)
    settings.register_profile(DEV_PROFILE, max_examples=DEV_MINIMUM_CASES * 2, deadline=None)
    settings.load_profile(ACTIVE_PROFILE)


def cases(ci_cases: int) -> int:
    """How many cases a test that CI runs ``ci_cases`` times runs under the active profile."""
    if ACTIVE_PROFILE == CI_PROFILE:
        return ci_cases
    return max(ci_cases // DEV_DIVISOR, DEV_MINIMUM_CASES)


# Text that protobuf strings and JSON both carry: valid UTF-8, so no lone surrogates.
TEXT = st.text(st.characters(codec="utf-8"), max_size=24)
# Any JSON value, small: what a fuzzer puts where a field's value belongs.
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), TEXT),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(TEXT, children, max_size=4)),
    max_leaves=10,
)


@st.composite
def mutated(draw: st.DrawFn, documents: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    """A document of ``documents`` with up to two fields dropped or given random JSON values."""
    document = dict(draw(documents))
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        key = draw(st.sampled_from(sorted(document))) if document and draw(st.booleans()) else draw(TEXT)
        if draw(st.booleans()):
            document.pop(key, None)
        else:
            document[key] = draw(JSON_VALUES)
    return document
