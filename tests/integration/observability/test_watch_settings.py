"""[limits] max_watches and watch_seconds, read by the real loader from real files in a temporary layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from custody.config import Limits, load_server_config
from custody.domain.errors import ConfigurationError

CONFIG = """\
[tls]
ca_file = "tls/ca.pem"
cert_file = "tls/server.pem"
key_file = "tls/server.key"

[hsm]
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "custody"
pin_file = "secrets/hsm.pin"

[database]
url = "sqlite:///custody.db"

[policy]
file = "policy.toml"

[principals.admin]
roles = ["admin"]

[limits]
"""


def load(tmp_path: Path, limits: str) -> Limits:
    (tmp_path / "tls").mkdir(exist_ok=True)
    for name in ("ca.pem", "server.pem", "server.key"):
        (tmp_path / "tls" / name).write_text("placeholder")
    (tmp_path / "policy.toml").write_text("# not read by the loader\n")
    path = tmp_path / "server.toml"
    path.write_text(CONFIG + limits)
    return load_server_config(path).limits


def test_the_defaults_keep_three_quarters_of_the_threads_for_other_calls(tmp_path: Path) -> None:
    limits = load(tmp_path, "")
    assert (limits.max_workers, limits.max_watches, limits.watch_seconds) == (16, 4, 60.0)
    assert limits == Limits()


@pytest.mark.parametrize(("max_workers", "max_watches"), [(2, 1), (4, 1), (8, 2), (64, 16)])
def test_an_unset_max_watches_follows_max_workers(tmp_path: Path, max_workers: int, max_watches: int) -> None:
    assert load(tmp_path, f"max_workers = {max_workers}\n").max_watches == max_watches


def test_settings_given_are_used(tmp_path: Path) -> None:
    limits = load(tmp_path, "max_workers = 4\nmax_watches = 3\nwatch_seconds = 0.5\n")
    assert (limits.max_workers, limits.max_watches, limits.watch_seconds) == (4, 3, 0.5)


@pytest.mark.parametrize("max_watches", [4, 5])
def test_watches_that_could_take_every_thread_are_refused(tmp_path: Path, max_watches: int) -> None:
    with pytest.raises(ConfigurationError) as refused:
        load(tmp_path, f"max_workers = 4\nmax_watches = {max_watches}\n")
    assert "server.toml: limits.max_watches: must be below max_workers (4)" in refused.value.message
    assert f"got {max_watches}" in refused.value.message


def test_one_thread_leaves_none_for_watches_and_says_which_setting_to_raise(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as refused:
        load(tmp_path, "max_workers = 1\n")
    assert "server.toml: limits.max_workers: must be at least 2, got 1" in refused.value.message


@pytest.mark.parametrize(
    ("setting", "problem"),
    [
        ("max_watches = 0", "limits.max_watches: must be a positive integer"),
        ("max_watches = 1.5", "limits.max_watches: must be a positive integer"),
        ("watch_seconds = 0", "limits.watch_seconds: must be a positive number"),
        ('watch_seconds = "60"', "limits.watch_seconds: must be a positive number"),
    ],
)
def test_values_that_are_not_positive_numbers_are_refused(tmp_path: Path, setting: str, problem: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        load(tmp_path, setting + "\n")
    assert problem in refused.value.message
