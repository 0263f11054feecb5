"""deploy/custody.example.toml is a configuration the daemon accepts, and it names every setting there is.

The example is laid out in a temporary directory standing for /etc/custody and /var/lib/custody, with the files
it names created there, and read by the daemon's own parser; so the example cannot drift from the code.
Added run time: under 1 s.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

import custody.config
from custody.config import Limits, ServerConfig, load_server_config
from tests.deploy.conftest import DEPLOY

EXAMPLE = DEPLOY / "custody.example.toml"
PRODUCTION_PREFIXES = ("/etc/custody", "/var/lib/custody")


def lay_out(example: Path, root: Path) -> Path:
    """Write the example under ``root`` with every production path moved there; return its server.toml."""
    text = example.read_text(encoding="utf-8")
    for prefix in PRODUCTION_PREFIXES:
        text = text.replace(prefix, f"{root}{prefix}")
    server_toml = root / "etc" / "custody" / "server.toml"
    server_toml.parent.mkdir(parents=True)
    server_toml.write_text(text, encoding="utf-8")
    for value in string_values(tomllib.loads(text)):
        if value.startswith(str(root)) and not value.endswith("/"):
            path = Path(value)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    (root / "var" / "lib" / "custody").mkdir(parents=True, exist_ok=True)
    return server_toml


def string_values(data: Any) -> list[str]:
    if isinstance(data, str):
        return [data]
    if isinstance(data, dict):
        return [value for item in data.values() for value in string_values(item)]
    if isinstance(data, list):
        return [value for item in data for value in string_values(item)]
    return []


@pytest.fixture
def loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ServerConfig:
    # systemd hands the secrets over in $CREDENTIALS_DIRECTORY; the example names them there.
    credentials = tmp_path / "run" / "credentials" / "custody.service"
    credentials.mkdir(parents=True)
    for name in ("hsm.pin", "server.key"):
        (credentials / name).write_text("not a real secret\n")
        (credentials / name).chmod(0o400)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    return load_server_config(lay_out(EXAMPLE, tmp_path / "root"))


def test_the_example_is_a_valid_production_configuration(loaded: ServerConfig, tmp_path: Path) -> None:
    root = tmp_path / "root"
    credentials = tmp_path / "run" / "credentials" / "custody.service"
    assert loaded.listen == "0.0.0.0:50051"
    assert loaded.tls.ca_file == root / "etc/custody/pki/ca.pem"
    assert loaded.tls.key_file == credentials / "server.key"
    assert loaded.hsm.pin_file == credentials / "hsm.pin"
    assert loaded.hsm.pin_env is None
    assert loaded.database_url == f"sqlite:///{root}/var/lib/custody/custody.db"
    assert loaded.policy_file == root / "etc/custody/policy.toml"
    assert {"backend", "alice", "bob", "carol", "dave", "admin", "auditor"} == set(loaded.principals)


def test_the_example_states_the_default_limits(loaded: ServerConfig) -> None:
    # The comments call these the defaults; an operator copying the file must get the daemon's behaviour.
    assert loaded.limits == Limits()


def test_every_setting_the_code_knows_is_documented_in_the_example() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    documented = set(re.findall(r"^[#\s]*([A-Za-z_][A-Za-z0-9_]*)\s*=", text, flags=re.MULTILINE))
    sections = re.findall(r"^\[([^\]]+)\]", text, flags=re.MULTILINE)
    documented |= {part for section in sections for part in section.split(".")}
    # Each settings class of the configuration module stands for one table of server.toml.
    settings_classes = [
        value
        for value in vars(custody.config).values()
        if isinstance(value, type)
        and dataclasses.is_dataclass(value)
        and value.__module__ == custody.config.__name__
        and value is not ServerConfig
    ]
    assert settings_classes
    missing = {
        f"{settings.__name__}.{entry.name}"
        for settings in settings_classes
        for entry in dataclasses.fields(settings)
        if entry.name not in documented
    }
    assert not missing, f"settings not documented in {EXAMPLE.name}: {sorted(missing)}"
    top_level = getattr(custody.config, "_TOP_LEVEL_KEYS", set())
    assert top_level <= documented, sorted(top_level - documented)


def test_the_postgresql_url_the_example_suggests_is_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    suggested = re.search(r"^#\s+(postgresql://\S+)$", text, flags=re.MULTILINE)
    assert suggested is not None
    variant = tmp_path / "custody.example.toml"
    variant.write_text(re.sub(r'^url = ".*"$', f'url = "{suggested.group(1)}"', text, flags=re.MULTILINE))
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "server.key").touch()
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    assert load_server_config(lay_out(variant, tmp_path / "root")).database_url == suggested.group(1)
