"""A new approver key's passphrase: at least 12 characters, and not trivially guessed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from custody.approver_keys.pkcs8_file import check_new_passphrase
from custody.cli.dev_env import APPROVERS, DevEnvironment, init_dev_environment
from custody.domain.errors import InvalidInput

CUSTODY = str(Path(sys.executable).with_name("custody"))


@pytest.fixture(scope="module")
def environment(tmp_path_factory: pytest.TempPathFactory) -> DevEnvironment:
    return init_dev_environment(tmp_path_factory.mktemp("passphrase") / "env", None)


@pytest.mark.parametrize(
    ("passphrase", "problem"),
    [
        ("hunter", "it has 6 characters, at least 12 are needed"),
        ("", "it has 0 characters, at least 12 are needed"),
        ("aaaaaaaaaaaaaaaa", "it is one character repeated"),
        ("314159265358979", "it is all digits"),
        ("carol.approver", "it is the approver's own name"),
        ("CAROL.APPROVER", "it is the approver's own name"),
    ],
)
def test_weak_passphrases_are_refused_naming_what_is_wrong(passphrase: str, problem: str) -> None:
    with pytest.raises(InvalidInput, match="the approver passphrase is too weak") as refused:
        check_new_passphrase(passphrase.encode(), "carol.approver")
    assert problem in refused.value.message
    # The message names the problem, never the passphrase.
    assert not passphrase or passphrase not in refused.value.message


def test_a_short_repeated_digit_passphrase_names_every_problem() -> None:
    with pytest.raises(InvalidInput) as refused:
        check_new_passphrase(b"11111", "carol")
    message = refused.value.message
    assert "it has 5 characters" in message
    assert "one character repeated" in message
    assert "all digits" in message


@pytest.mark.parametrize("passphrase", ["correct horse battery", "twelve chars", "ünïcödé-pässphräse"])
def test_long_varied_passphrases_are_accepted(passphrase: str) -> None:
    check_new_passphrase(passphrase.encode(), "carol")


def test_dev_init_generates_passphrases_that_pass(environment: DevEnvironment) -> None:
    for name in APPROVERS:
        passphrase = (environment.directory / "secrets" / f"{name}.passphrase").read_bytes()
        check_new_passphrase(passphrase, name)


def _create_key(
    environment: DevEnvironment, tmp_path: Path, passphrase: str
) -> subprocess.CompletedProcess[str]:
    """`approver-key create` for carol (her certificate names her), with a new key file and the passphrase in
    the environment, as a script would give it."""
    pki = environment.directory / "pki"
    profile = tmp_path / "carol.toml"
    profile.write_text(
        f'server = "127.0.0.1:1"\nca_file = "{environment.ca_file}"\n'
        f'cert_file = "{pki / "carol.pem"}"\nkey_file = "{pki / "carol.key"}"\n'
        f'approver_key_file = "{tmp_path / "carol.key"}"\n'
    )
    variables = {key: value for key, value in os.environ.items() if key != "CUSTODY_PROFILE"}
    return subprocess.run(
        [CUSTODY, "--profile", str(profile), "approver-key", "create"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={**variables, "CUSTODY_APPROVER_PASSPHRASE": passphrase},
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("passphrase", "problem"),
    [("abcde", "it has 5 characters, at least 12 are needed"), ("carol", "it is the approver's own name")],
)
def test_approver_key_create_refuses_a_weak_passphrase_and_creates_nothing(
    environment: DevEnvironment, tmp_path: Path, passphrase: str, problem: str
) -> None:
    result = _create_key(environment, tmp_path, passphrase)
    assert result.returncode != 0
    assert "the approver passphrase is too weak" in result.stderr
    assert problem in result.stderr
    assert not (tmp_path / "carol.key").exists()


def test_approver_key_create_accepts_a_strong_passphrase(environment: DevEnvironment, tmp_path: Path) -> None:
    result = _create_key(environment, tmp_path, "a long and varied passphrase")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "carol.key").exists()
