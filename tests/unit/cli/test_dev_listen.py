"""`custody dev init --listen` and `custody serve`'s listener overrides: every address follows the option."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from custody.cli.dev_env import CLIENT_IDENTITIES
from custody.cli.main import run
from custody.cli.profile import load_profile
from custody.config import load_server_config, with_listener_overrides
from custody.domain.errors import ConfigurationError


def test_dev_init_listen_moves_server_profiles_and_metrics_address(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "env"
    assert run(["dev", "init", str(directory), "--listen", "127.0.0.1:50161", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["listen"] == "127.0.0.1:50161"

    server_toml = directory / "server.toml"
    assert load_server_config(server_toml).listen == "127.0.0.1:50161"
    for identity in CLIENT_IDENTITIES:
        assert load_profile(directory / "profiles" / f"{identity}.toml").server == "127.0.0.1:50161"

    # The metrics listener is off by default; uncommenting its lines serves it at PORT+2, next to the daemon.
    enabled = server_toml.read_text().replace("# [metrics]\n# listen", "[metrics]\nlisten")
    assert tomllib.loads(enabled)["metrics"]["listen"] == "127.0.0.1:50163"
    server_toml.write_text(enabled)
    assert load_server_config(server_toml).metrics.listen == "127.0.0.1:50163"


def test_dev_init_without_listen_uses_the_default_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "env"
    assert run(["dev", "init", str(directory)]) == 0
    assert "(listens on 127.0.0.1:50051)" in capsys.readouterr().out
    assert load_server_config(directory / "server.toml").listen == "127.0.0.1:50051"
    assert load_profile(directory / "profiles" / "backend.toml").server == "127.0.0.1:50051"


@pytest.mark.parametrize("listen", ["50051", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65534", "host:port"])
def test_dev_init_refuses_a_listen_address_it_cannot_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], listen: str
) -> None:
    directory = tmp_path / "env"
    assert run(["dev", "init", str(directory), "--listen", listen]) != 0
    assert "--listen" in capsys.readouterr().err
    assert not (directory / "server.toml").exists()


def _dev_config(tmp_path: Path) -> Path:
    directory = tmp_path / "env"
    assert run(["dev", "init", str(directory), "--listen", "127.0.0.1:50171"]) == 0
    return directory / "server.toml"


def test_serve_overrides_move_each_listener_on_its_own(tmp_path: Path) -> None:
    config = load_server_config(_dev_config(tmp_path))

    replica = with_listener_overrides(config, listen="127.0.0.1:50181", metrics_listen="127.0.0.1:50183")
    assert (replica.listen, replica.metrics.listen) == ("127.0.0.1:50181", "127.0.0.1:50183")

    any_port = with_listener_overrides(config, listen="127.0.0.1:0")
    assert any_port.listen == "127.0.0.1:0"

    metrics_only = with_listener_overrides(config, metrics_listen="127.0.0.1:0")
    assert (metrics_only.listen, metrics_only.metrics.listen) == ("127.0.0.1:50171", "127.0.0.1:0")

    assert with_listener_overrides(config) == config


@pytest.mark.parametrize(
    ("option", "overrides"),
    [("--listen", {"listen": "no-port"}), ("--metrics-listen", {"metrics_listen": "localhost:99999"})],
)
def test_serve_overrides_refuse_a_malformed_address(
    tmp_path: Path, option: str, overrides: dict[str, str]
) -> None:
    config = load_server_config(_dev_config(tmp_path))
    with pytest.raises(ConfigurationError, match=f"^{option}: must be HOST:PORT"):
        with_listener_overrides(config, **overrides)


def test_serve_help_names_every_listener_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["serve", "--help"]) == 0
    help_text = capsys.readouterr().out
    assert "--listen HOST:PORT" in help_text
    assert "--metrics-listen HOST:PORT" in help_text
