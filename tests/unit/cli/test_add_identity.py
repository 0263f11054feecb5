"""`custody dev add-identity`: a client certificate from the environment's own CA, and a profile that uses it."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from custody.cli.main import run
from custody.cli.profile import load_profile


@pytest.fixture(scope="module")
def environment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("dev") / "env"
    assert run(["dev", "init", str(directory), "--listen", "127.0.0.1:50201"]) == 0
    return directory


def test_new_identity_gets_a_client_certificate_chained_to_the_dev_ca(
    environment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert run(["dev", "add-identity", "erin", "--dir", str(environment), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["roles"] == ["requester"]
    assert answer["approver_key_file"] is None

    certificate = x509.load_pem_x509_certificate((environment / "pki" / "erin.pem").read_bytes())
    ca = x509.load_pem_x509_certificate((environment / "pki" / "ca.pem").read_bytes())
    assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "erin"
    # Raises unless the dev CA's key signed this certificate and the issuer names the CA.
    certificate.verify_directly_issued_by(ca)
    usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]

    private_key_file = environment / "pki" / "erin.key"
    assert stat.S_IMODE(private_key_file.stat().st_mode) == 0o600
    private_key = serialization.load_pem_private_key(private_key_file.read_bytes(), password=None)
    assert isinstance(private_key, ec.EllipticCurvePrivateKey)
    assert private_key.public_key() == certificate.public_key()

    profile = load_profile(environment / "profiles" / "erin.toml")
    assert profile.server == "127.0.0.1:50201"
    # The profile's paths are relative to its own folder (profiles/../pki/...), so compare them resolved.
    assert profile.cert_file.resolve() == (environment / "pki" / "erin.pem").resolve()
    assert profile.key_file.resolve() == private_key_file.resolve()
    assert profile.ca_file.resolve() == (environment / "pki" / "ca.pem").resolve()
    assert profile.approver_key_file is None


def test_an_approver_profile_names_the_key_file_to_create_and_the_steps_to_the_policy(
    environment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert (
        run(["dev", "add-identity", "frank", "--roles", "approver,requester", "--dir", str(environment)]) == 0
    )
    out = capsys.readouterr().out
    assert '[principals.frank]\nroles = ["approver", "requester"]' in out
    assert f"custody --profile {environment / 'profiles' / 'frank.toml'} approver-key create" in out
    assert "policy propose policy-next.toml" in out
    assert "# add the [approvers.frank] table it printed, with its groups; raise version by one" in out

    profile = load_profile(environment / "profiles" / "frank.toml")
    assert profile.approver_key_file is not None
    assert profile.approver_key_file.resolve() == (environment / "approvers" / "frank.key").resolve()
    # The key is the approver's to create, under a passphrase of their choosing.
    assert not profile.approver_key_file.exists()
    assert profile.approver_passphrase_file is None


@pytest.mark.parametrize("name", ["alice", "backend"])
def test_refuses_an_identity_that_exists(
    environment: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    certificate = environment / "pki" / f"{name}.pem"
    before = certificate.read_bytes()
    capsys.readouterr()
    assert run(["dev", "add-identity", name, "--dir", str(environment)]) == 1
    assert f"the identity {name!r} already exists" in capsys.readouterr().err
    assert certificate.read_bytes() == before


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["../escape"], "an identity name is 1 to 64"),
        (["grace", "--roles", "boss"], "unknown role(s) boss"),
    ],
)
def test_refuses_a_bad_name_or_role(
    environment: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    capsys.readouterr()
    assert run(["dev", "add-identity", *arguments, "--dir", str(environment)]) != 0
    assert message in capsys.readouterr().err
    assert not (environment / "profiles" / "grace.toml").exists()


def test_refuses_a_directory_that_is_not_a_dev_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["dev", "add-identity", "erin", "--dir", str(tmp_path)]) != 0
    assert "is not a development environment" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
