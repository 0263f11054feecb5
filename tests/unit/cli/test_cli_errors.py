"""How the command line reports errors: one "error: " prefix on stderr, or one JSON object on stdout with
--json, the same exit codes either way, and sentences a user can act on instead of gRPC or TLS internals.

Transport cases use a real gRPC server with the development environment's TLS material and no services.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from custody.cli.dev_env import DevEnvironment, init_dev_environment
from custody.cli.main import run
from custody.tls.certificates import create_ca, write_public_file


@pytest.fixture(scope="module")
def environment(tmp_path_factory: pytest.TempPathFactory) -> DevEnvironment:
    return init_dev_environment(tmp_path_factory.mktemp("cli-errors") / "env", None)


def _json_error(output: str) -> dict[str, str]:
    document = json.loads(output)
    assert set(document) == {"error"}
    error: dict[str, str] = document["error"]
    assert set(error) == {"code", "message"}
    return error


def test_a_usage_error_is_spelled_like_every_other_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["keys", "list", "--no-such-option"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Error:" not in captured.err
    assert captured.err.splitlines()[-1] == "error: No such option '--no-such-option'."
    # The usage line and the hint to --help still come first, for a person at a terminal.
    assert captured.err.startswith("Usage: custody keys list")


def test_a_usage_error_with_json_is_one_json_object_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--json", "keys", "list", "--no-such-option"]) == 2
    captured = capsys.readouterr()
    assert _json_error(captured.out) == {"code": "usage", "message": "No such option '--no-such-option'."}
    assert captured.err == ""


def test_a_blank_reject_reason_is_a_usage_error_with_the_common_prefix(
    environment: DevEnvironment, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = str(environment.profiles["alice"])
    assert run(["--profile", profile, "reject", "req-1", "--reason", "  "]) == 2
    last_line = capsys.readouterr().err.splitlines()[-1]
    assert last_line == "error: Invalid value for --reason: say why you reject the request."


def test_a_missing_profile_is_reported_before_the_missing_terminal(
    no_profile_in_environment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Under pytest stdin is not a terminal, so without a profile check first the terminal would be blamed.
    assert run(["reject", "req-1", "--reason", "wrong recipient"]) == 2
    assert capsys.readouterr().err == (
        "error: no client profile given; pass --profile FILE or set CUSTODY_PROFILE.\n"
    )


def test_a_missing_profile_with_json_keeps_its_usage_exit_code(
    no_profile_in_environment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["keys", "list", "--json"]) == 2
    captured = capsys.readouterr()
    error = _json_error(captured.out)
    assert error["code"] == "usage"
    assert error["message"].startswith("no client profile given")
    assert captured.err == ""


def test_the_suggested_rerun_of_a_refused_reject_keeps_its_reason(
    environment: DevEnvironment, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = str(environment.profiles["alice"])
    assert run(["--profile", profile, "reject", "req-1", "--reason", "wrong recipient"]) == 1
    message = capsys.readouterr().err
    assert "run `custody reject req-1 --reason 'wrong recipient'` again with --yes." in message


def test_malformed_json_input_names_the_line_and_column(
    environment: DevEnvironment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = tmp_path / "tx.json"
    payload.write_text('{\n  "to": "0x00",\n  "value": 1,\n}\n')
    profile = str(environment.profiles["backend"])
    assert run(["--profile", profile, "sign", "tx", "--key", "ops", "--file", str(payload)]) == 1
    assert capsys.readouterr().err == (
        f"error: --file: {payload} is not valid JSON:"
        " Expecting property name enclosed in double quotes at line 4, column 1.\n"
    )


def test_malformed_json_with_json_output_is_an_invalid_argument(
    environment: DevEnvironment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = tmp_path / "typed.json"
    payload.write_text('{"types": [}')
    profile = str(environment.profiles["backend"])
    assert (
        run(["--profile", profile, "--json", "sign", "typed-data", "--key", "ops", "--file", str(payload)])
        == 1
    )
    error = _json_error(capsys.readouterr().out)
    assert error["code"] == "INVALID_ARGUMENT"
    assert "line 1, column 12" in error["message"]


def test_an_unreachable_daemon_with_json_keeps_exit_code_4(
    environment: DevEnvironment, closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    address = f"127.0.0.1:{closed_port}"
    profile = str(environment.profiles["admin"])
    assert run(["--profile", profile, "--server", address, "--json", "keys", "list"]) == 4
    captured = capsys.readouterr()
    error = _json_error(captured.out)
    assert error["code"] == "unreachable"
    assert error["message"].startswith(f"could not reach the custody daemon at {address} (nothing accepts")
    assert captured.err == ""


@pytest.mark.parametrize("server", ["no-such-host.invalid:50051", "bad:host:port"])
def test_a_bad_server_address_is_one_sentence(
    environment: DevEnvironment, server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = str(environment.profiles["admin"])
    assert run(["--profile", profile, "--server", server, "keys", "list"]) == 4
    message = capsys.readouterr().err
    assert message.startswith(
        f"error: could not reach the custody daemon at {server} (the address does not resolve to a host);"
    )
    assert message.count("\n") == 1
    assert "lookup" not in message


def test_a_wrong_ca_is_one_sentence_without_tls_internals(
    environment: DevEnvironment, bare_tls_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The profile trusts a CA that did not sign the daemon's certificate.
    write_public_file(tmp_path / "other-ca.pem", create_ca().cert_pem)
    pki = environment.directory / "pki"
    profile = tmp_path / "wrong-ca.toml"
    profile.write_text(
        f'server = "{bare_tls_server}"\nca_file = "other-ca.pem"\n'
        f'cert_file = "{pki / "admin.pem"}"\nkey_file = "{pki / "admin.key"}"\n'
    )
    assert run(["--profile", str(profile), "keys", "list"]) == 4
    message = capsys.readouterr().err
    assert message == (
        f"error: could not reach the custody daemon at {bare_tls_server} (the TLS handshake failed: the daemon's"
        " certificate is not signed by the profile's CA, or the daemon does not accept the profile's client"
        f" certificate); check that `custody serve` is running there and that {profile} names the right address"
        " and certificates.\n"
    )
