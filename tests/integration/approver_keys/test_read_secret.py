"""Where passphrases and PINs come from: a file readable by its owner only, an environment variable, or a
prompt on a real terminal (exercised through a pseudo-terminal in a child process)."""

from __future__ import annotations

import io
import os
import select
import subprocess
import sys
from pathlib import Path

import pytest

from custody.approver_keys import MAX_SECRET_FILE_BYTES, read_secret
from custody.domain.errors import ConfigurationError, InvalidInput

SECRET = b"correct horse battery staple"


def write_secret_file(path: Path, content: bytes, mode: int) -> Path:
    path.write_bytes(content)
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_owner_only_file_is_read_without_its_trailing_newline(tmp_path: Path, mode: int) -> None:
    path = write_secret_file(tmp_path / "passphrase", SECRET + b"\n", mode)
    assert read_secret(file=path, env=None, prompt=None) == SECRET


def test_only_one_trailing_newline_is_dropped(tmp_path: Path) -> None:
    path = write_secret_file(tmp_path / "passphrase", b"  spaced  \r\n\n", 0o600)
    assert read_secret(file=path, env=None, prompt=None) == b"  spaced  \r\n"


def test_windows_line_ending_is_dropped(tmp_path: Path) -> None:
    path = write_secret_file(tmp_path / "passphrase", SECRET + b"\r\n", 0o600)
    assert read_secret(file=path, env=None, prompt=None) == SECRET


def test_a_file_always_wins_over_the_prompt(tmp_path: Path) -> None:
    path = write_secret_file(tmp_path / "passphrase", SECRET, 0o600)
    assert read_secret(file=path, env=None, prompt="Passphrase: ") == SECRET


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o660])
def test_file_others_may_read_or_write_is_refused(tmp_path: Path, mode: int) -> None:
    path = write_secret_file(tmp_path / "passphrase", SECRET, mode)
    with pytest.raises(ConfigurationError) as raised:
        read_secret(file=path, env=None, prompt=None)
    assert raised.value.message == (
        f"the secret file {path} can be read or changed by other users (mode {mode:04o}); run `chmod 600 {path}`"
    )
    assert SECRET.decode() not in raised.value.message


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot be read: No such file or directory"):
        read_secret(file=tmp_path / "absent", env=None, prompt=None)


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="is not a regular file"):
        read_secret(file=tmp_path, env=None, prompt=None)


def test_named_pipe_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe, 0o600)
    with pytest.raises(ConfigurationError, match="is not a regular file"):
        read_secret(file=pipe, env=None, prompt=None)


@pytest.mark.parametrize("content", [b"", b"\n"])
def test_empty_file_is_refused(tmp_path: Path, content: bytes) -> None:
    path = write_secret_file(tmp_path / "passphrase", content, 0o600)
    with pytest.raises(ConfigurationError, match="is empty"):
        read_secret(file=path, env=None, prompt=None)


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    path = write_secret_file(tmp_path / "passphrase", b"x" * (MAX_SECRET_FILE_BYTES + 1), 0o600)
    with pytest.raises(ConfigurationError, match=f"larger than {MAX_SECRET_FILE_BYTES} bytes"):
        read_secret(file=path, env=None, prompt=None)


def test_environment_variable_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTODY_TEST_PASSPHRASE", SECRET.decode())
    assert read_secret(file=None, env="CUSTODY_TEST_PASSPHRASE", prompt=None) == SECRET


def test_unset_environment_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUSTODY_TEST_PASSPHRASE", raising=False)
    with pytest.raises(ConfigurationError) as raised:
        read_secret(file=None, env="CUSTODY_TEST_PASSPHRASE", prompt="Passphrase: ")
    assert raised.value.message == (
        "the environment variable CUSTODY_TEST_PASSPHRASE that should hold the secret is not set"
    )


def test_empty_environment_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTODY_TEST_PASSPHRASE", "")
    with pytest.raises(ConfigurationError, match="is empty"):
        read_secret(file=None, env="CUSTODY_TEST_PASSPHRASE", prompt=None)


def test_file_and_environment_together_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_secret_file(tmp_path / "passphrase", SECRET, 0o600)
    monkeypatch.setenv("CUSTODY_TEST_PASSPHRASE", SECRET.decode())
    with pytest.raises(InvalidInput) as raised:
        read_secret(file=path, env="CUSTODY_TEST_PASSPHRASE", prompt=None)
    assert raised.value.field == "secret"


def test_no_source_at_all_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="no source for the secret was given"):
        read_secret(file=None, env=None, prompt=None)


def test_prompt_without_a_terminal_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(SECRET.decode() + "\n"))
    with pytest.raises(ConfigurationError, match="standard input is not a terminal"):
        read_secret(file=None, env=None, prompt="Passphrase: ")


PROMPT = b"Passphrase for alice: "
PROMPT_CHILD = """
import sys
from custody.approver_keys import read_secret
secret = read_secret(file=None, env=None, prompt="Passphrase for alice: ")
sys.stdout.write(secret.hex())
"""


def test_prompt_on_a_terminal_reads_the_typed_secret_without_echo() -> None:
    controller, terminal = os.openpty()
    try:
        # A new session has no controlling terminal, so getpass cannot reach the terminal pytest runs in
        # and reads from the pseudo-terminal on standard input instead.
        child = subprocess.Popen(
            [sys.executable, "-c", PROMPT_CHILD],
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        os.close(terminal)
        assert child.stderr is not None
        # getpass flushes pending terminal input when it switches echo off, just before it shows the prompt,
        # so the secret is typed only once the prompt is there, as a person would.
        prompt = b""
        while not prompt.endswith(PROMPT):
            ready, _, _ = select.select([child.stderr], [], [], 30)
            assert ready, f"no prompt within 30 seconds; the child wrote {prompt!r}"
            chunk = os.read(child.stderr.fileno(), 1024)
            assert chunk, f"the child closed its standard error after {prompt!r}"
            prompt += chunk
        os.write(controller, SECRET + b"\n")
        stdout, stderr = child.communicate(timeout=30)
        echoed = read_available(controller)
    finally:
        os.close(controller)
    assert child.returncode == 0, stderr.decode()
    assert bytes.fromhex(stdout.decode()) == SECRET
    assert SECRET not in prompt + stderr
    assert SECRET not in echoed


def read_available(descriptor: int) -> bytes:
    """What the terminal echoed back to its controller; Linux reports EIO once the other end is closed."""
    echoed = b""
    while select.select([descriptor], [], [], 0)[0]:
        try:
            chunk = os.read(descriptor, 1024)
        except OSError:
            break
        if not chunk:
            break
        echoed += chunk
    return echoed
