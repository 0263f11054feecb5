"""Loading a policy from disk: file errors and TOML syntax errors name the file."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from custody.domain.errors import ConfigurationError
from custody.policy_file import dev_policy_toml, load_policy

DEV_KEYS = {
    name: Ed25519PrivateKey.generate().public_key().public_bytes_raw().hex()
    for name in ("alice", "bob", "carol", "dave")
}


def test_loads_a_policy_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(dev_policy_toml(DEV_KEYS), encoding="utf-8")
    policy = load_policy(path)
    assert [rule.name for rule in policy.rules] == [
        "ops-transactions",
        "ops-mail",
        "ops-messages",
        "treasury-transactions",
        "treasury-safe-transactions",
        "treasury-admin-transactions",
        "treasury-admin-safe-transactions",
        "treasury-governance-proposals",
    ]
    assert {name: approver.public_key.hex() for name, approver in policy.approvers.items()} == DEV_KEYS


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(
        ConfigurationError, match=re.escape(f"{path}: cannot read the policy file: No such file")
    ):
        load_policy(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(dev_policy_toml(DEV_KEYS), encoding="utf-8")
    path.chmod(0)
    with pytest.raises(
        ConfigurationError, match=re.escape(f"{path}: cannot read the policy file: Permission")
    ):
        load_policy(path)


def test_directory_instead_of_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(f"{tmp_path}: cannot read the policy file")):
        load_policy(tmp_path)


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('version = 1\n\n[[rules]]\nname = "ops\nkeys = ["ops"]\n', encoding="utf-8")
    with pytest.raises(ConfigurationError) as raised:
        load_policy(path)
    assert raised.value.message.startswith(f"{path}: not valid TOML: ")
    assert "line 4" in raised.value.message


def test_non_utf8_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_bytes(b"version = 1\n# caf\xe9\n")
    with pytest.raises(ConfigurationError, match=re.escape(f"{path}: the policy file is not valid UTF-8")):
        load_policy(path)


def test_validation_errors_name_the_file_path(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text("version = 1\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match=re.escape(f"{path}: rules: a policy needs at least one")):
        load_policy(path)


def test_errors_in_approvers_name_the_file_path(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    text = dev_policy_toml(DEV_KEYS).replace(DEV_KEYS["carol"], "00" * 32)
    path.write_text(text, encoding="utf-8")
    with pytest.raises(
        ConfigurationError, match=re.escape(f"{path}: approver 'carol': public_key: is a weak Ed25519 key")
    ):
        load_policy(path)
