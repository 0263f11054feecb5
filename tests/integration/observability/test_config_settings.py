"""The operational settings of server.toml (metrics, logging, waiting for the HSM token, HSM lanes, PostgreSQL
URLs, environment variables in paths and URLs), read by the real loader from real files in a temporary layout."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from custody.config import load_server_config
from custody.domain.errors import ConfigurationError

BASE = """\
listen = "127.0.0.1:50051"

[tls]
ca_file = "{tls}/ca.pem"
cert_file = "{tls}/server.pem"
key_file = "{tls}/server.key"

[hsm]
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "custody"
pin_file = "{pin_file}"
{hsm_extra}

[database]
url = "{database_url}"

[policy]
file = "{policy}"

[principals.admin]
roles = ["admin"]
{extra}
"""


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    for name in ("ca.pem", "server.pem", "server.key"):
        (tmp_path / "tls").mkdir(exist_ok=True)
        (tmp_path / "tls" / name).write_text("placeholder")
    (tmp_path / "policy.toml").write_text("# not read by the loader\n")
    return tmp_path


@pytest.fixture
def environment() -> Iterator[dict[str, str]]:
    """Variables a test sets for the loader, removed again afterwards."""
    names: dict[str, str] = {}
    yield names
    for name in names:
        os.environ.pop(name, None)


def write_config(
    layout: Path,
    *,
    tls: str | None = None,
    pin_file: str = "secrets/hsm.pin",
    hsm_extra: str = "",
    database_url: str = "sqlite:///custody.db",
    policy: str = "policy.toml",
    extra: str = "",
) -> Path:
    path = layout / "server.toml"
    path.write_text(
        BASE.format(
            tls=tls or str(layout / "tls"),
            pin_file=pin_file,
            hsm_extra=hsm_extra,
            database_url=database_url,
            policy=policy,
            extra=extra,
        )
    )
    return path


def test_defaults_when_the_metrics_logging_and_token_settings_are_absent(layout: Path) -> None:
    config = load_server_config(write_config(layout))
    assert config.metrics.listen is None
    assert config.logging.format in ("json", "text")
    assert config.hsm.wait_for_token is False
    assert config.hsm.wait_seconds == 2.0
    assert config.hsm.lanes == 1
    assert config.hsm.sign_in_write_transaction is False


def test_every_metrics_logging_token_and_lane_setting_is_read(layout: Path) -> None:
    config = load_server_config(
        write_config(
            layout,
            hsm_extra="wait_for_token = true\nwait_seconds = 0.5\nlanes = 4",
            extra='\n[metrics]\nlisten = "127.0.0.1:9464"\n\n[logging]\nformat = "text"\n',
        )
    )
    assert config.metrics.listen == "127.0.0.1:9464"
    assert config.logging.format == "text"
    assert (config.hsm.wait_for_token, config.hsm.wait_seconds, config.hsm.lanes) == (True, 0.5, 4)


def test_signing_in_the_write_transaction_is_read_for_an_hsm_without_lanes(layout: Path) -> None:
    config = load_server_config(write_config(layout, hsm_extra="sign_in_write_transaction = true"))
    assert config.hsm.sign_in_write_transaction is True


@pytest.mark.parametrize("url", ["postgresql://custody@db.internal:5432/custody", "postgres://db/custody"])
def test_postgresql_urls_are_accepted(layout: Path, url: str) -> None:
    assert load_server_config(write_config(layout, database_url=url)).database_url == url


@pytest.mark.parametrize(
    ("hsm_extra", "extra", "key", "problem"),
    [
        ("lanes = 0", "", "hsm.lanes", "positive integer"),
        ("lanes = 17", "", "hsm.lanes", "at most 16"),
        ('lanes = "2"', "", "hsm.lanes", "positive integer"),
        ('wait_for_token = "yes"', "", "hsm.wait_for_token", "true or false"),
        ("wait_seconds = 0", "", "hsm.wait_seconds", "positive number"),
        ('sign_in_write_transaction = "yes"', "", "hsm.sign_in_write_transaction", "true or false"),
        ("sign_in_write_transaction = true\nlanes = 2", "", "hsm.sign_in_write_transaction", "with lanes"),
        ("", '[metrics]\nlisten = "localhost"', "metrics.listen", "HOST:PORT"),
        ("", "[metrics]\nport = 9464", "metrics", "unknown setting(s) port"),
        ("", '[logging]\nformat = "xml"', "logging.format", '"json" or "text"'),
        ("", '[logging]\nlevel = "debug"', "logging", "unknown setting(s) level"),
    ],
)
def test_each_bad_setting_names_file_key_and_problem(
    layout: Path, hsm_extra: str, extra: str, key: str, problem: str
) -> None:
    path = write_config(layout, hsm_extra=hsm_extra, extra=extra)
    with pytest.raises(ConfigurationError) as raised:
        load_server_config(path)
    assert str(path) in raised.value.message
    assert f": {key}: " in raised.value.message
    assert problem in raised.value.message


def test_a_database_url_of_another_scheme_is_refused_without_repeating_it(layout: Path) -> None:
    path = write_config(layout, database_url="mysql://custody:hunter2-secret@db/custody")
    with pytest.raises(ConfigurationError, match=r"database\.url") as raised:
        load_server_config(path)
    assert "hunter2-secret" not in raised.value.message


def test_paths_and_the_database_url_expand_environment_variables(
    layout: Path, environment: dict[str, str]
) -> None:
    secrets_dir = layout / "credentials"
    secrets_dir.mkdir()
    environment["CUSTODY_TEST_CREDENTIALS"] = str(secrets_dir)
    environment["CUSTODY_TEST_TLS"] = str(layout / "tls")
    environment["CUSTODY_TEST_DB_PASSWORD"] = "s3cret-from-env"
    os.environ.update(environment)
    config = load_server_config(
        write_config(
            layout,
            tls="${CUSTODY_TEST_TLS}",
            pin_file="${CUSTODY_TEST_CREDENTIALS}/hsm.pin",
            database_url="postgresql://custody:${CUSTODY_TEST_DB_PASSWORD}@db/custody",
            hsm_extra='environment = { VENDOR_CONF = "${CUSTODY_TEST_CREDENTIALS}/vendor.conf" }',
        )
    )
    assert config.hsm.pin_file == secrets_dir / "hsm.pin"
    assert config.tls.ca_file == layout / "tls" / "ca.pem"
    assert config.database_url == "postgresql://custody:s3cret-from-env@db/custody"
    assert config.hsm.environment["VENDOR_CONF"] == str(secrets_dir / "vendor.conf")


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"pin_file": "${CUSTODY_TEST_UNSET_VARIABLE}/hsm.pin"}, "hsm.pin_file"),
        ({"tls": "${CUSTODY_TEST_UNSET_VARIABLE}"}, "tls.ca_file"),
        ({"policy": "${CUSTODY_TEST_UNSET_VARIABLE}/policy.toml"}, "policy.file"),
        ({"database_url": "postgresql://custody:${CUSTODY_TEST_UNSET_VARIABLE}@db/c"}, "database.url"),
    ],
)
def test_an_unset_variable_names_file_key_and_variable(
    layout: Path, overrides: dict[str, str], key: str
) -> None:
    os.environ.pop("CUSTODY_TEST_UNSET_VARIABLE", None)
    path = write_config(layout, **overrides)
    with pytest.raises(ConfigurationError) as raised:
        load_server_config(path)
    message = raised.value.message
    assert str(path) in message and f": {key}: " in message
    assert "CUSTODY_TEST_UNSET_VARIABLE is not set" in message


def test_an_empty_variable_counts_as_unset(layout: Path, environment: dict[str, str]) -> None:
    environment["CUSTODY_TEST_EMPTY"] = ""
    os.environ.update(environment)
    with pytest.raises(ConfigurationError, match="CUSTODY_TEST_EMPTY is not set"):
        load_server_config(write_config(layout, pin_file="${CUSTODY_TEST_EMPTY}/hsm.pin"))


def test_a_malformed_reference_is_refused(layout: Path) -> None:
    with pytest.raises(ConfigurationError, match="not a valid environment variable reference"):
        load_server_config(write_config(layout, pin_file="${1BAD}/hsm.pin"))
