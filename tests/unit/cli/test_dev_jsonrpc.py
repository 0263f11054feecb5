"""`custody dev init` turns the JSON-RPC endpoint on at the gRPC port + 1 with a bearer token for backend, and
`custody dev add-identity` writes a token for the new identity: each token readable by its owner only, one line,
and only its hash in server.toml."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest

from custody.cli.main import run
from custody.config import load_server_config


@pytest.fixture(scope="module")
def environment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("dev") / "env"
    assert run(["dev", "init", str(directory), "--listen", "127.0.0.1:50301"]) == 0
    return directory


def token_in(path: Path) -> str:
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert text.endswith("\n") and text.count("\n") == 1
    return text.strip()


def test_dev_init_serves_json_rpc_at_the_next_port_with_a_token_for_backend(environment: Path) -> None:
    config = load_server_config(environment / "server.toml")
    assert config.jsonrpc.listen == "127.0.0.1:50302"
    assert config.jsonrpc.plain_http is False
    token = token_in(environment / "tokens" / "backend.token")
    assert len(token) >= 40
    assert dict(config.jsonrpc.tokens) == {"backend": hashlib.sha256(token.encode()).digest()}
    # The token itself is nowhere in the configuration.
    assert token not in (environment / "server.toml").read_text()


def test_dev_init_names_the_endpoint_and_the_token_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["dev", "init", str(tmp_path / "env")]) == 0
    printed = capsys.readouterr().out
    assert "https://127.0.0.1:50052" in printed
    assert str(tmp_path / "env" / "tokens" / "backend.token") in printed


def test_add_identity_writes_a_token_and_prints_the_hash_to_list(
    environment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert run(["dev", "add-identity", "frank", "--dir", str(environment), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    token = token_in(Path(answer["token_file"]))
    assert answer["token_hash"] == "sha256:" + hashlib.sha256(token.encode()).hexdigest()

    assert run(["dev", "add-identity", "grace", "--dir", str(environment)]) == 0
    printed = capsys.readouterr().out
    grace_token = token_in(environment / "tokens" / "grace.token")
    assert f'grace = "sha256:{hashlib.sha256(grace_token.encode()).hexdigest()}"' in printed
    assert grace_token not in printed
