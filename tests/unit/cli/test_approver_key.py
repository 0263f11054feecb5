"""`custody approver-key create` and `show` for an approver key in a file, without a daemon.

The token variant runs end to end in tests/e2e/test_approver_token.py. Here the key files are real encrypted
PKCS#8 files; each new key is checked by decrypting it with `cryptography` and verifying a signature made with
it against the public key the command printed. The passphrase prompt is answered on a real pseudo-terminal.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from custody.cli.dev_env import DevEnvironment, init_dev_environment
from tests.cli_children import run_at_a_terminal

CUSTODY = str(Path(sys.executable).with_name("custody"))
PASSPHRASE = "a-new-approver-passphrase-4711"


@pytest.fixture(scope="module")
def environment(tmp_path_factory: pytest.TempPathFactory) -> DevEnvironment:
    return init_dev_environment(tmp_path_factory.mktemp("approver-key") / "env", None)


def profile_for(environment: DevEnvironment, tmp_path: Path, extra: str) -> Path:
    """A profile for carol (her client certificate names her) with the approver lines given."""
    pki = environment.directory / "pki"
    profile = tmp_path / "carol.toml"
    profile.write_text(
        f'server = "127.0.0.1:1"\nca_file = "{environment.ca_file}"\n'
        f'cert_file = "{pki / "carol.pem"}"\nkey_file = "{pki / "carol.key"}"\n' + extra
    )
    return profile


def invoke(profile: Path, *args: str, passphrase: str | None = None) -> tuple[int, str, str]:
    """Run the real console script as an approver would, with the passphrase in the environment if given."""
    environment = {key: value for key, value in os.environ.items() if key != "CUSTODY_APPROVER_PASSPHRASE"}
    if passphrase is not None:
        environment["CUSTODY_APPROVER_PASSPHRASE"] = passphrase
    result = subprocess.run(
        [CUSTODY, "--profile", str(profile), *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={**environment, "CUSTODY_PROFILE": ""},
        timeout=60,
        check=False,
    )
    return result.returncode, result.stdout, result.stderr


def decrypted(key_file: Path, passphrase: str) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(key_file.read_bytes(), passphrase.encode())
    assert isinstance(key, Ed25519PrivateKey)
    return key


def test_create_writes_an_encrypted_owner_only_key_and_prints_its_public_key(
    environment: DevEnvironment, tmp_path: Path
) -> None:
    key_file = tmp_path / "carol-new.key"
    profile = profile_for(environment, tmp_path, f'approver_key_file = "{key_file}"\n')
    code, out, err = invoke(profile, "--json", "approver-key", "create", passphrase=PASSPHRASE)
    assert code == 0, err
    answer = json.loads(out)
    assert answer["approver"] == "carol"
    assert str(key_file) in answer["stored_in"]
    assert key_file.stat().st_mode & 0o777 == 0o600
    private_key = decrypted(key_file, PASSPHRASE)
    public_key = private_key.public_key()
    assert public_key.public_bytes_raw().hex() == answer["public_key"]
    public_key.verify(private_key.sign(b"statement"), b"statement")
    assert PASSPHRASE not in out + err + key_file.read_text()

    code, out, err = invoke(profile, "--json", "approver-key", "show", passphrase=PASSPHRASE)
    assert code == 0, err
    assert json.loads(out)["public_key"] == answer["public_key"]


def test_the_text_answer_gives_the_policy_entry(environment: DevEnvironment, tmp_path: Path) -> None:
    key_file = tmp_path / "carol-new.key"
    profile = profile_for(environment, tmp_path, f'approver_key_file = "{key_file}"\n')
    code, out, err = invoke(profile, "approver-key", "create", passphrase=PASSPHRASE)
    assert code == 0, err
    public_key = decrypted(key_file, PASSPHRASE).public_key().public_bytes_raw().hex()
    assert f'[approvers.carol]\npublic_key = "{public_key}"\n' in out


def test_create_never_overwrites_an_existing_key_file(environment: DevEnvironment, tmp_path: Path) -> None:
    key_file = environment.approver_keys["carol"]
    before = key_file.read_bytes()
    profile = profile_for(environment, tmp_path, f'approver_key_file = "{key_file}"\n')
    code, _out, err = invoke(profile, "approver-key", "create", passphrase=PASSPHRASE)
    assert code == 1
    assert "already exists; custody never overwrites a key file" in err
    assert key_file.read_bytes() == before


def test_show_prints_the_public_key_dev_init_recorded(environment: DevEnvironment) -> None:
    code, out, err = invoke(environment.profiles["carol"], "--json", "approver-key", "show")
    assert code == 0, err
    expected = (environment.directory / "approvers" / "carol.pub").read_text().strip()
    assert json.loads(out) == {
        "approver": "carol",
        "public_key": expected,
        "stored_in": f"file {environment.approver_keys['carol']}",
    }


def test_show_with_a_wrong_passphrase_is_refused_without_echoing_it(environment: DevEnvironment) -> None:
    profile = environment.profiles["carol"]
    wrong = "certainly-not-carols-passphrase"
    # The profile's passphrase file wins over the environment, so a copy without it is needed.
    copy = profile.with_name("carol-no-passphrase.toml")
    copy.write_text(
        "\n".join(line for line in profile.read_text().splitlines() if "passphrase" not in line) + "\n"
    )
    code, out, err = invoke(copy, "approver-key", "show", passphrase=wrong)
    assert code == 1
    assert "wrong passphrase" in err
    assert wrong not in out + err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("", "names no approver key; add approver_key_file"),
        (
            'approver_key_file = "/nonexistent/k"\napprover_pkcs11_module = "/usr/lib/softhsm/libsofthsm2.so"\n',
            "names both approver_key_file and approver_pkcs11_module",
        ),
        (
            'approver_pkcs11_module = "/usr/lib/softhsm/libsofthsm2.so"\napprover_token_label = "t"\n',
            "not both approver_token_label and approver_key_label",
        ),
    ],
)
def test_a_profile_that_names_no_single_key_is_refused_before_anything_is_created(
    environment: DevEnvironment, tmp_path: Path, extra: str, message: str
) -> None:
    profile = profile_for(environment, tmp_path, extra)
    code, _out, err = invoke(profile, "approver-key", "create", passphrase=PASSPHRASE)
    assert code == 1
    assert message in err
    assert list(tmp_path.iterdir()) == [profile]


def create_at_a_terminal(profile: Path, answers: list[str]) -> tuple[int, str]:
    """Run `approver-key create` at a pseudo-terminal, typing ``answers`` at its prompts."""
    environment = {key: value for key, value in os.environ.items() if key != "CUSTODY_APPROVER_PASSPHRASE"}
    return run_at_a_terminal(
        [CUSTODY, "--profile", str(profile), "approver-key", "create"],
        [answer.encode() + b"\n" for answer in answers],
        {**environment, "CUSTODY_PROFILE": ""},
    )


def test_a_typed_passphrase_must_be_typed_the_same_twice(environment: DevEnvironment, tmp_path: Path) -> None:
    key_file = tmp_path / "typed.key"
    profile = profile_for(environment, tmp_path, f'approver_key_file = "{key_file}"\n')
    code, screen = create_at_a_terminal(profile, [PASSPHRASE, PASSPHRASE + "x"])
    assert code == 1, screen
    assert "the two passphrases typed differ; no key was created" in screen
    assert not key_file.exists()
    assert PASSPHRASE not in screen

    code, screen = create_at_a_terminal(profile, [PASSPHRASE, PASSPHRASE])
    assert code == 0, screen
    assert decrypted(key_file, PASSPHRASE).public_key().public_bytes_raw().hex() in screen
    assert PASSPHRASE not in screen


def test_the_passphrase_prompt_names_the_key_file_without_dot_dot(
    environment: DevEnvironment, tmp_path: Path
) -> None:
    # Profiles name files relative to their own folder, as dev init's "../approvers/NAME.key" does.
    (tmp_path / "profiles").mkdir()
    profile = profile_for(environment, tmp_path / "profiles", 'approver_key_file = "../typed.key"\n')
    code, screen = create_at_a_terminal(profile, [PASSPHRASE, PASSPHRASE])
    assert code == 0, screen
    assert f"New passphrase for approver key {tmp_path / 'typed.key'}: " in screen
    assert "/../" not in screen
