"""The command line without a daemon: options on either side, profiles, errors and their exit codes.

Transport tests use a real gRPC server with the environment's TLS material and no services registered: it
proves the profile's mTLS settings complete a handshake, without standing in for the daemon's behaviour.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from custody.cli.dev_env import DevEnvironment, init_dev_environment
from custody.cli.main import cli, run
from custody.cli.sign import MAX_PAYLOAD_BYTES
from custody.tls.certificates import create_ca, issue_client_certificate, write_private_key, write_public_file


@pytest.fixture(scope="module")
def environment(tmp_path_factory: pytest.TempPathFactory) -> DevEnvironment:
    return init_dev_environment(tmp_path_factory.mktemp("cli") / "env", None)


def test_help_documents_the_exit_codes() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "Exit codes:" in result.output
    for line in ("3  the request ended unsigned", "4  the daemon or one of its dependencies is unavailable"):
        assert line in result.output


def test_missing_profile_is_one_sentence_and_a_usage_exit_code(
    no_profile_in_environment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["keys", "list"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "error: no client profile given; pass --profile FILE or set CUSTODY_PROFILE.\n"


def test_missing_profile_suggests_the_dev_environment_when_there_is_one(
    no_profile_in_environment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (no_profile_in_environment / "dev-env" / "profiles").mkdir(parents=True)
    assert run(["requests", "list"]) == 2
    assert "--profile dev-env/profiles/admin.toml" in capsys.readouterr().err


def test_profile_from_the_environment_variable_and_the_subcommand_option_wins(
    no_profile_in_environment: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CUSTODY_PROFILE", "from-environment.toml")
    assert run(["keys", "list"]) == 1
    assert capsys.readouterr().err == "error: client profile from-environment.toml does not exist.\n"
    assert run(["--profile", "from-group.toml", "keys", "show", "ops"]) == 1
    assert "from-group.toml does not exist" in capsys.readouterr().err
    assert run(["--profile", "from-group.toml", "keys", "show", "ops", "--profile", "from-command.toml"]) == 1
    assert "from-command.toml does not exist" in capsys.readouterr().err


def test_invalid_profile_names_the_file_and_the_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text('server = "127.0.0.1:1"\nca_file = "ca.pem"\ncert_file = "c.pem"\n')
    assert run(["keys", "list", "--profile", str(profile)]) == 1
    assert capsys.readouterr().err == f'error: client profile {profile} needs key_file = "PATH".\n'
    profile.write_text(
        'server = "127.0.0.1:1"\nca_file = "ca.pem"\ncert_file = "c.pem"\nkey_file = "k.pem"\nsrever = 1\n'
    )
    assert run(["keys", "list", "--profile", str(profile)]) == 1
    assert "unknown entries srever" in capsys.readouterr().err
    profile.write_text(
        'server = "127.0.0.1:1"\nca_file = "ca.pem"\ncert_file = "c.pem"\nkey_file = "k.pem"\n'
    )
    assert run(["keys", "list", "--profile", str(profile)]) == 1
    assert capsys.readouterr().err == (
        f"error: cannot read ca_file {tmp_path / 'ca.pem'} named by client profile {profile}:"
        " no such file or directory.\n"
    )


def test_unreachable_daemon_names_the_address_and_exits_4(
    environment: DevEnvironment, closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    address = f"127.0.0.1:{closed_port}"
    profile = environment.profiles["admin"]
    assert run(["--profile", str(profile), "--server", address, "keys", "list"]) == 4
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"error: could not reach the custody daemon at {address} (")
    assert "check that `custody serve` is running there" in captured.err
    assert str(profile) in captured.err
    assert captured.err.count("\n") == 1
    assert "Traceback" not in captured.err


def test_mtls_handshake_with_the_profile_reaches_the_server(
    environment: DevEnvironment, bare_tls_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = environment.profiles["admin"]
    # The server knows no service, so a completed handshake shows up as UNIMPLEMENTED, not as UNAVAILABLE.
    assert run(["keys", "freeze", "ops", "--profile", str(profile), "--server", bare_tls_server]) == 1
    assert capsys.readouterr().err == (
        f"error: the custody daemon at {bare_tls_server} does not offer this operation yet.\n"
    )


def test_a_client_certificate_from_another_ca_is_refused(
    environment: DevEnvironment, bare_tls_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stranger = issue_client_certificate(create_ca(), "mallory")
    write_public_file(tmp_path / "mallory.pem", stranger.cert_pem)
    write_private_key(tmp_path / "mallory.key", stranger.key_pem)
    profile = tmp_path / "mallory.toml"
    profile.write_text(
        f'server = "{bare_tls_server}"\nca_file = "{environment.ca_file}"\n'
        'cert_file = "mallory.pem"\nkey_file = "mallory.key"\n'
    )
    exit_code = run(["--profile", str(profile), "keys", "list"])
    captured = capsys.readouterr()
    assert exit_code == 4, captured.err
    assert captured.err.startswith(f"error: could not reach the custody daemon at {bare_tls_server} (")


def test_sign_refuses_a_payload_over_128_kib_before_connecting(
    tmp_path: Path, no_profile_in_environment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = tmp_path / "big.json"
    payload.write_bytes(b" " * (MAX_PAYLOAD_BYTES + 1))
    assert run(["sign", "tx", "--key", "ops", "--file", str(payload)]) == 1
    assert capsys.readouterr().err == (
        f"error: --file: the payload is larger than the limit of {MAX_PAYLOAD_BYTES} bytes (128 KiB).\n"
    )
    assert run(["sign", "message", "--key", "ops", "--text", "x" * (MAX_PAYLOAD_BYTES + 1)]) == 1
    assert "--text: the payload is larger" in capsys.readouterr().err


def test_sign_reports_an_unreadable_file(
    tmp_path: Path, no_profile_in_environment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.json"
    assert run(["sign", "typed-data", "--key", "ops", "--file", str(missing)]) == 1
    assert capsys.readouterr().err == f"error: --file: cannot read {missing}: no such file or directory.\n"


def test_a_payload_within_the_limit_gets_as_far_as_the_profile(
    tmp_path: Path, no_profile_in_environment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = tmp_path / "ok.json"
    payload.write_bytes(b"{}".ljust(MAX_PAYLOAD_BYTES))
    assert run(["sign", "tx", "--key", "ops", "--file", str(payload)]) == 2
    assert "no client profile given" in capsys.readouterr().err


def test_usage_errors_exit_2() -> None:
    runner = CliRunner()
    both = runner.invoke(cli, ["sign", "message", "--key", "ops", "--text", "a", "--file", "b"])
    assert both.exit_code == 2
    assert "exactly one of --text or --file" in both.output
    neither = runner.invoke(cli, ["sign", "message", "--key", "ops"])
    assert neither.exit_code == 2
    bad_state = runner.invoke(cli, ["requests", "list", "--state", "HALF_SIGNED"])
    assert bad_state.exit_code == 2
    assert "HALF_SIGNED" in bad_state.output
    bad_limit = runner.invoke(cli, ["requests", "list", "--limit", "1001"])
    assert bad_limit.exit_code == 2
