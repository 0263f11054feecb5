"""The [jsonrpc] section of server.toml, read by the real loader from real files: each setting, and a clear
refusal naming the key for each wrong value (plain HTTP off loopback, a token instead of its hash, a token for
an identity the file does not name)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from custody.config import bearer_token_hash, load_server_config, with_listener_overrides
from custody.domain.errors import ConfigurationError

from .test_config_settings import layout, write_config

__all__ = ["layout"]  # the fixture, imported for pytest

HASH = bearer_token_hash("the-admin-token")


def jsonrpc(layout: Path, section: str) -> Path:
    return write_config(layout, extra=f"\n[jsonrpc]\n{section}\n")


def test_without_the_section_the_endpoint_is_off(layout: Path) -> None:
    config = load_server_config(write_config(layout))
    assert config.jsonrpc.listen is None
    assert config.jsonrpc.plain_http is False and config.jsonrpc.upstream is None
    assert config.jsonrpc.max_batch == 20 and dict(config.jsonrpc.tokens) == {}


def test_every_setting_is_read(layout: Path) -> None:
    config = load_server_config(
        jsonrpc(
            layout,
            'listen = "127.0.0.1:8546"\nplain_http = true\nupstream = "https://node.example/v3/key"\n'
            f'max_batch = 5\nchain_id = 31337\n[jsonrpc.tokens]\nadmin = "{HASH}"',
        )
    )
    settings = config.jsonrpc
    assert settings.listen == "127.0.0.1:8546" and settings.plain_http is True
    assert settings.upstream == "https://node.example/v3/key"
    assert settings.max_batch == 5 and settings.chain_id == 31337
    assert dict(settings.tokens) == {"admin": hashlib.sha256(b"the-admin-token").digest()}


@pytest.mark.parametrize(
    ("section", "key", "words"),
    [
        ('listen = "0.0.0.0:8546"\nplain_http = true', "jsonrpc.plain_http", "loopback"),
        ('listen = "[::]:8546"\nplain_http = true', "jsonrpc.plain_http", "loopback"),
        ('listen = "nowhere"', "jsonrpc.listen", "HOST:PORT"),
        ('upstream = "ftp://node.example"', "jsonrpc.upstream", "http:// or https://"),
        ('upstream = "http://node.example:8545"', "jsonrpc.upstream", "must be an https:// URL"),
        ('upstream = "http://10.0.0.5:8545"', "jsonrpc.upstream", "must be an https:// URL"),
        ("max_batch = 0", "jsonrpc.max_batch", "positive"),
        ("max_batch = 100000", "jsonrpc.max_batch", "at most 1000"),
        ("chain_id = -1", "jsonrpc.chain_id", "positive"),
        ("bogus = 1", "jsonrpc", "unknown setting(s) bogus"),
        ('[jsonrpc.tokens]\nadmin = "the-admin-token"', "jsonrpc.tokens.admin", "never the token itself"),
        (f'[jsonrpc.tokens]\nstranger = "{HASH}"', "jsonrpc.tokens.stranger", "not a principal"),
    ],
)
def test_wrong_settings_are_refused_naming_the_key(layout: Path, section: str, key: str, words: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        load_server_config(jsonrpc(layout, section))
    assert f": {key}: " in refused.value.message
    assert words in refused.value.message


def test_a_refused_upstream_url_is_not_repeated_in_the_message(layout: Path) -> None:
    with pytest.raises(ConfigurationError) as refused:
        load_server_config(jsonrpc(layout, 'upstream = "wss://node.example/v3/secret-api-key"'))
    assert "secret-api-key" not in refused.value.message


def test_the_command_line_moves_the_listener_but_not_off_loopback_in_plain_http(layout: Path) -> None:
    config = load_server_config(jsonrpc(layout, 'listen = "127.0.0.1:8546"\nplain_http = true'))
    assert with_listener_overrides(config, jsonrpc_listen="127.0.0.1:0").jsonrpc.listen == "127.0.0.1:0"
    assert with_listener_overrides(config, jsonrpc_listen="[::1]:9000").jsonrpc.listen == "[::1]:9000"
    with pytest.raises(ConfigurationError, match="loopback"):
        with_listener_overrides(config, jsonrpc_listen="10.0.0.5:8546")
    with pytest.raises(ConfigurationError, match="HOST:PORT"):
        with_listener_overrides(config, jsonrpc_listen="8546")


def test_plain_http_reaches_only_a_node_on_this_machine(layout: Path) -> None:
    for url in ("http://127.0.0.1:8545", "http://localhost:8545/", "http://[::1]:8545"):
        assert load_server_config(jsonrpc(layout, f'upstream = "{url}"')).jsonrpc.upstream == url
    with pytest.raises(ConfigurationError) as refused:
        load_server_config(jsonrpc(layout, 'upstream = "http://node.example/v3/secret-api-key"'))
    assert "secret-api-key" not in refused.value.message and "https://" in refused.value.message
