"""`custody dev init`: every file, its mode, and that the pieces fit together (real token and PKI)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID
from eth_account import Account
from eth_account.messages import encode_typed_data

from custody.cli.dev_env import APPROVERS, CLIENT_IDENTITIES, DevEnvironment, init_dev_environment
from custody.cli.main import run
from custody.cli.profile import load_profile
from custody.config import load_server_config
from custody.domain.errors import AlreadyExists, InvalidInput
from custody.policy_file import dev_policy_toml, load_policy

# The signing digest of the EIP-712 "Mail" example, published in the EIP's text
# (https://eips.ethereum.org/EIPS/eip-712, assets/eip-712/Example.js: "sign(...)" hashes to this value).
EIP712_MAIL_DIGEST = "0xbe609aee343fb3c4b28e1df9e632fca64fcfaede20f02e86244efddf30957bd2"

PRIVATE_FILES = [
    "secrets/hsm.pin",
    "secrets/hsm.so-pin",
    "pki/ca.key",
    "pki/server.key",
    *[f"pki/{identity}.key" for identity in CLIENT_IDENTITIES],
    *[f"approvers/{name}.key" for name in APPROVERS],
    *[f"secrets/{name}.passphrase" for name in APPROVERS],
]
PUBLIC_FILES = [
    "server.toml",
    "policy.toml",
    "pki/ca.pem",
    "pki/server.pem",
    "softhsm/softhsm2.conf",
    "examples/eip1559-tx.json",
    "examples/typed-data.json",
    *[f"pki/{identity}.pem" for identity in CLIENT_IDENTITIES],
    *[f"profiles/{identity}.toml" for identity in CLIENT_IDENTITIES],
    *[f"approvers/{name}.pub" for name in APPROVERS],
]
DIRECTORIES = ["", "softhsm", "secrets", "pki", "approvers", "profiles", "examples"]


@pytest.fixture(scope="module")
def environment(tmp_path_factory: pytest.TempPathFactory) -> DevEnvironment:
    return init_dev_environment(tmp_path_factory.mktemp("dev") / "env", None)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def read_certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def common_name(certificate: x509.Certificate) -> str:
    return str(certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_every_file_exists_with_owner_only_modes_for_secrets(environment: DevEnvironment) -> None:
    root = environment.directory
    for name in DIRECTORIES:
        assert mode(root / name) == 0o700, name
    for name in PRIVATE_FILES:
        assert mode(root / name) == 0o600, name
    for name in PUBLIC_FILES:
        assert (root / name).is_file(), name
    # The token's object files hold key material: nobody but the owner may read them either.
    for path in (root / "softhsm" / "tokens").rglob("*"):
        assert mode(path) & 0o077 == 0, path


def test_certificates_chain_to_the_ca_and_name_their_identities(environment: DevEnvironment) -> None:
    pki = environment.directory / "pki"
    ca = read_certificate(pki / "ca.pem")
    server = read_certificate(pki / "server.pem")
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    for identity in CLIENT_IDENTITIES:
        certificate = read_certificate(pki / f"{identity}.pem")
        certificate.verify_directly_issued_by(ca)
        assert common_name(certificate) == identity
        key = serialization.load_pem_private_key((pki / f"{identity}.key").read_bytes(), password=None)
        assert key.public_key() == certificate.public_key()


def test_approver_keys_are_encrypted_and_open_with_their_passphrase(environment: DevEnvironment) -> None:
    root = environment.directory
    for name in APPROVERS:
        encrypted = (root / "approvers" / f"{name}.key").read_bytes()
        assert b"ENCRYPTED PRIVATE KEY" in encrypted
        with pytest.raises(TypeError):
            serialization.load_pem_private_key(encrypted, password=None)
        passphrase = (root / "secrets" / f"{name}.passphrase").read_bytes()
        key = serialization.load_pem_private_key(encrypted, password=passphrase)
        assert isinstance(key, Ed25519PrivateKey)
        public_raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        assert (root / "approvers" / f"{name}.pub").read_text().strip() == public_raw.hex()
    passphrases = {(root / "secrets" / f"{name}.passphrase").read_text() for name in APPROVERS}
    assert len(passphrases) == len(APPROVERS)


# SoftHSM2 reads SOFTHSM2_CONF once per process, so the token is opened in a fresh interpreter. The PIN goes
# through stdin, never argv, so it cannot show up in a process listing or a failure message.
_LOGIN_SCRIPT = """
import sys, pkcs11
library = pkcs11.lib(sys.argv[1])
token = library.get_token(token_label=sys.argv[2])
try:
    with token.open(user_pin=sys.stdin.read()):
        print("logged in")
except pkcs11.exceptions.PinIncorrect:
    print("pin incorrect")
"""


def login(environment: DevEnvironment, module: str, label: str, pin: str) -> str:
    completed = subprocess.run(
        [sys.executable, "-c", _LOGIN_SCRIPT, module, label],
        input=pin,
        capture_output=True,
        text=True,
        env=dict(os.environ, SOFTHSM2_CONF=str(environment.softhsm_config)),
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.strip()


def test_server_config_loads_and_its_hsm_pin_logs_in(environment: DevEnvironment) -> None:
    config = load_server_config(environment.server_config)
    root = environment.directory.resolve()
    assert config.listen == "127.0.0.1:50051"
    assert config.tls.ca_file.resolve() == root / "pki" / "ca.pem"
    assert config.tls.key_file.resolve() == root / "pki" / "server.key"
    assert config.hsm.token_label == "custody-dev"
    assert Path(config.hsm.environment["SOFTHSM2_CONF"]).resolve() == environment.softhsm_config.resolve()
    assert config.hsm.pin_file is not None
    assert config.hsm.pin_file.resolve() == environment.hsm_pin_file.resolve()
    assert config.database_url == "sqlite:///custody.db"
    assert config.policy_file.resolve() == root / "policy.toml"
    assert set(config.principals) == set(CLIENT_IDENTITIES)

    pin = environment.hsm_pin_file.read_text()
    assert login(environment, config.hsm.module, config.hsm.token_label, pin) == "logged in"
    so_pin = (environment.directory / "secrets" / "hsm.so-pin").read_text()
    assert so_pin != pin
    assert login(environment, config.hsm.module, config.hsm.token_label, so_pin) == "pin incorrect"


def test_policy_names_each_approver_with_the_key_in_their_key_file(environment: DevEnvironment) -> None:
    root = environment.directory
    public_keys = {}
    for name in APPROVERS:
        # The public key is taken from the decrypted private key, not from the .pub file dev init wrote.
        passphrase = (root / "secrets" / f"{name}.passphrase").read_bytes()
        key = serialization.load_pem_private_key(
            (root / "approvers" / f"{name}.key").read_bytes(), passphrase
        )
        assert isinstance(key, Ed25519PrivateKey)
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        public_keys[name] = raw.hex()
    assert environment.policy_file.read_text() == dev_policy_toml(public_keys)
    document = tomllib.loads(environment.policy_file.read_text())
    assert {name: entry["public_key"] for name, entry in document["approvers"].items()} == public_keys
    rules = load_policy(environment.policy_file).rules
    assert {rule.name for rule in rules} >= {"ops-transactions", "treasury-transactions"}


def test_profiles_resolve_to_the_environment_files(environment: DevEnvironment) -> None:
    pki = environment.directory / "pki"
    for identity in CLIENT_IDENTITIES:
        profile = load_profile(environment.profiles[identity])
        assert profile.server == "127.0.0.1:50051"
        assert profile.ca_file.resolve() == (pki / "ca.pem").resolve()
        assert common_name(read_certificate(profile.cert_file)) == identity
        assert profile.key_file.resolve() == (pki / f"{identity}.key").resolve()
        if identity in APPROVERS:
            assert profile.approver_key_file is not None
            assert profile.approver_passphrase_file is not None
            key = serialization.load_pem_private_key(
                profile.approver_key_file.read_bytes(), password=profile.approver_passphrase_file.read_bytes()
            )
            assert isinstance(key, Ed25519PrivateKey)
        else:
            assert profile.approver_key_file is None


def test_example_transaction_is_a_valid_eip1559_transaction(environment: DevEnvironment) -> None:
    transaction = json.loads(environment.example_transaction.read_text())
    assert transaction["chainId"] == 11155111
    assert transaction["type"] == 2
    assert transaction["value"] == 10**16
    account = Account.create()
    signed = Account.sign_transaction(transaction, account.key)
    assert Account.recover_transaction(signed.raw_transaction) == account.address


def test_example_typed_data_is_the_eip712_mail_example(environment: DevEnvironment) -> None:
    typed_data = json.loads(environment.example_typed_data.read_text())
    signable = encode_typed_data(full_message=typed_data)
    account = Account.create()
    signed = Account.sign_message(signable, account.key)
    assert "0x" + signed.message_hash.hex() == EIP712_MAIL_DIGEST
    assert Account.recover_message(signable, signature=signed.signature) == account.address


def test_refuses_a_directory_that_holds_an_environment(environment: DevEnvironment) -> None:
    before = environment.server_config.read_bytes()
    with pytest.raises(AlreadyExists, match="already holds a custody environment"):
        init_dev_environment(environment.directory, None)
    assert environment.server_config.read_bytes() == before
    assert environment.hsm_pin_file.is_file()


def test_refuses_a_directory_with_other_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(AlreadyExists, match="not an empty directory"):
        init_dev_environment(tmp_path, None)
    assert [child.name for child in tmp_path.iterdir()] == ["notes.txt"]


def test_builds_in_an_existing_empty_directory_and_makes_it_private(tmp_path: Path) -> None:
    directory = tmp_path / "env"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    init_dev_environment(directory, "postgresql://custody@db.example/custody")
    assert mode(directory) == 0o700
    assert tomllib.loads((directory / "server.toml").read_text())["database"]["url"] == (
        "postgresql://custody@db.example/custody"
    )


def test_refuses_a_database_url_it_does_not_know_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="--database"):
        init_dev_environment(tmp_path / "env", "mysql://root@localhost/custody")
    assert not (tmp_path / "env").exists()


def test_cli_prints_next_steps_and_never_a_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "env"
    assert run(["dev", "init", str(directory)]) == 0
    captured = capsys.readouterr()
    assert f"custody serve --config {directory / 'server.toml'}" in captured.out
    assert f"--profile {directory / 'profiles' / 'admin.toml'} keys create --label ops" in captured.out
    assert "sign tx --key ops --file" in captured.out
    profiles = directory / "profiles"
    for line in (
        f"custody --profile {profiles / 'admin.toml'} keys create --label treasury",
        f"custody --profile {profiles / 'backend.toml'} sign tx --key treasury --file"
        f" {directory / 'examples' / 'eip1559-tx.json'}",
        f"custody --profile {profiles / 'alice.toml'} approve REQUEST_ID",
        f"custody --profile {profiles / 'bob.toml'} approve REQUEST_ID",
    ):
        assert line in captured.out
    secrets = [
        (directory / "secrets" / name).read_text()
        for name in ["hsm.pin", "hsm.so-pin", *[f"{approver}.passphrase" for approver in APPROVERS]]
    ]
    for secret in secrets:
        assert secret not in captured.out
        assert secret not in captured.err

    assert run(["dev", "init", str(directory)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"error: {directory} already holds a custody environment (it has a server.toml); remove the directory"
        " or choose another one.\n"
    )


def test_next_steps_leave_out_serve_when_the_caller_starts_the_daemon(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "env"
    assert run(["dev", "init", str(directory), "--daemon-starts-next"]) == 0
    printed = capsys.readouterr().out
    assert "custody serve" not in printed
    assert "Next steps, in a second terminal once the daemon below says it is listening:" in printed
    assert f"--profile {directory / 'profiles' / 'admin.toml'} keys create --label ops" in printed
    # The option is for `make run`, which starts the daemon itself; people are not shown it.
    assert run(["dev", "init", "--help"]) == 0
    assert "--daemon-starts-next" not in capsys.readouterr().out


def test_make_run_tells_dev_init_that_it_starts_the_daemon_next(tmp_path: Path) -> None:
    repository = Path(__file__).resolve().parents[3]
    planned = subprocess.run(
        ["make", "-n", "-C", str(repository), "run", f"DEV_DIR={tmp_path / 'env'}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    (init_line,) = [line for line in planned.splitlines() if " dev init " in line]
    assert "--daemon-starts-next" in init_line


def test_cli_json_lists_the_paths_whichever_side_of_the_command_json_is_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for index, arguments in enumerate([["--json", "dev", "init"], ["dev", "init", "--json"]]):
        directory = tmp_path / f"env{index}"
        assert run([*arguments, str(directory)]) == 0
        answer = json.loads(capsys.readouterr().out)
        assert answer["server_config"] == str(directory / "server.toml")
        assert answer["profiles"]["backend"] == str(directory / "profiles" / "backend.toml")
        assert answer["database"] == "sqlite:///custody.db"
