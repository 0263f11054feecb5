"""The development CA: chains, extensions, identities, file modes, and a real mutual-TLS handshake."""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from custody.domain.errors import InvalidInput
from custody.tls.certificates import (
    IssuedCertificate,
    certificate_identity,
    create_ca,
    issue_client_certificate,
    issue_server_certificate,
    write_private_key,
    write_public_file,
)


@pytest.fixture(scope="module")
def ca() -> IssuedCertificate:
    return create_ca()


def load(issued: IssuedCertificate) -> x509.Certificate:
    return x509.load_pem_x509_certificate(issued.cert_pem)


def test_ca_is_a_p256_ca_limited_to_end_entities(ca: IssuedCertificate) -> None:
    certificate = load(ca)
    certificate.verify_directly_issued_by(certificate)
    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca
    assert constraints.value.path_length == 0
    usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign
    assert usage.crl_sign
    assert not usage.digital_signature
    public_key = certificate.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert isinstance(public_key.curve, ec.SECP256R1)
    assert certificate_identity(ca.cert_pem) == "custody dev CA"


def test_server_certificate_chain_sans_and_eku(ca: IssuedCertificate) -> None:
    server = issue_server_certificate(
        ca, hostnames=["custody.internal", "localhost"], ips=["10.0.0.7", "::1"]
    )
    certificate = load(server)
    certificate.verify_directly_issued_by(load(ca))
    assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "custody.internal"
    sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["custody.internal", "localhost"]
    assert sans.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.0.0.7"),
        ipaddress.ip_address("::1"),
    ]
    eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_server_certificate_defaults_cover_localhost(ca: IssuedCertificate) -> None:
    sans = (
        load(issue_server_certificate(ca))
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value
    )
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert sans.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]


def test_client_certificate_carries_identity_and_client_auth(ca: IssuedCertificate) -> None:
    client = issue_client_certificate(ca, "alice")
    certificate = load(client)
    certificate.verify_directly_issued_by(load(ca))
    eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert certificate_identity(client.cert_pem) == "alice"
    assert certificate_identity(certificate.public_bytes(serialization.Encoding.DER)) == "alice"


def test_private_key_matches_certificate_and_is_unencrypted_pkcs8(ca: IssuedCertificate) -> None:
    client = issue_client_certificate(ca, "bob")
    assert client.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    key = serialization.load_pem_private_key(client.key_pem, password=None)
    assert key.public_key() == load(client).public_key()


def test_certificate_from_another_ca_does_not_verify(ca: IssuedCertificate) -> None:
    other_ca = create_ca("another dev CA")
    stranger = issue_client_certificate(other_ca, "mallory")
    # The issuer names differ, so verification refuses before it even checks the signature.
    with pytest.raises(ValueError, match="does not match certificate issuer"):
        load(stranger).verify_directly_issued_by(load(ca))


def test_same_name_different_ca_fails_on_the_signature(ca: IssuedCertificate) -> None:
    impostor_ca = create_ca("custody dev CA")
    impostor = issue_client_certificate(impostor_ca, "alice")
    with pytest.raises(InvalidSignature):
        load(impostor).verify_directly_issued_by(load(ca))


def test_repr_never_shows_the_private_key(ca: IssuedCertificate) -> None:
    text = repr(issue_client_certificate(ca, "carol"))
    assert "PRIVATE" not in text
    assert "redacted" in text


def test_private_key_file_is_owner_only_even_when_overwriting(tmp_path: Path, ca: IssuedCertificate) -> None:
    path = tmp_path / "client.key"
    path.write_bytes(b"old")
    path.chmod(0o666)
    write_private_key(path, ca.key_pem)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == ca.key_pem

    fresh = tmp_path / "fresh.key"
    old_umask = os.umask(0)
    try:
        write_private_key(fresh, ca.key_pem)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600


def test_private_key_is_not_written_through_a_symlink(tmp_path: Path, ca: IssuedCertificate) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"untouched")
    link = tmp_path / "client.key"
    link.symlink_to(target)
    with pytest.raises(OSError):
        write_private_key(link, ca.key_pem)
    assert target.read_bytes() == b"untouched"


def test_public_file_mode_is_0644(tmp_path: Path, ca: IssuedCertificate) -> None:
    path = tmp_path / "ca.pem"
    old_umask = os.umask(0o077)
    try:
        write_public_file(path, ca.cert_pem)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.read_bytes() == ca.cert_pem


@pytest.mark.parametrize(
    ("call", "field"),
    [
        pytest.param(lambda ca: issue_client_certificate(ca, ""), "identity", id="empty-identity"),
        pytest.param(lambda ca: issue_client_certificate(ca, "a" * 65), "identity", id="long-identity"),
        pytest.param(lambda ca: issue_client_certificate(ca, "bad\nname"), "identity", id="control-char"),
        pytest.param(
            lambda ca: issue_client_certificate(ca, "alice", valid_days=0), "valid_days", id="zero-days"
        ),
        pytest.param(lambda ca: issue_server_certificate(ca, hostnames=[]), "hostnames", id="no-hostnames"),
        pytest.param(
            lambda ca: issue_server_certificate(ca, hostnames="localhost"), "hostnames", id="str-hosts"
        ),
        pytest.param(lambda ca: issue_server_certificate(ca, ips=["localhost"]), "ips", id="bad-ip"),
        pytest.param(lambda ca: create_ca(valid_days=-1), "valid_days", id="ca-negative-days"),
    ],
)
def test_bad_arguments_raise_invalid_input(
    ca: IssuedCertificate, call: Callable[[IssuedCertificate], object], field: str
) -> None:
    with pytest.raises(InvalidInput) as raised:
        call(ca)
    assert raised.value.field == field


def test_certificate_identity_refuses_garbage() -> None:
    with pytest.raises(InvalidInput) as raised:
        certificate_identity(b"not a certificate")
    assert raised.value.field == "certificate"


def test_mutual_tls_handshake_succeeds_with_issued_certificates(
    tmp_path: Path, ca: IssuedCertificate
) -> None:
    """The certificates work in a real TLS 1.3 handshake with client authentication required."""
    server_cert = issue_server_certificate(ca)
    client_cert = issue_client_certificate(ca, "backend")
    paths = {}
    for name, issued in {"server": server_cert, "client": client_cert}.items():
        write_public_file(tmp_path / f"{name}.pem", issued.cert_pem)
        write_private_key(tmp_path / f"{name}.key", issued.key_pem)
        paths[name] = (str(tmp_path / f"{name}.pem"), str(tmp_path / f"{name}.key"))
    write_public_file(tmp_path / "ca.pem", ca.cert_pem)

    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(*paths["server"])
    server_context.load_verify_locations(str(tmp_path / "ca.pem"))
    server_context.verify_mode = ssl.CERT_REQUIRED

    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.load_cert_chain(*paths["client"])
    client_context.load_verify_locations(str(tmp_path / "ca.pem"))

    server_seen: dict[str, object] = {}
    server_socket, client_socket = socket.socketpair()

    def serve() -> None:
        try:
            with server_context.wrap_socket(server_socket, server_side=True) as tls:
                peer = tls.getpeercert(binary_form=True)
                assert peer is not None
                server_seen["identity"] = certificate_identity(peer)
                tls.sendall(b"ok")
        except Exception as error:  # the main thread reports what went wrong
            server_seen["error"] = error

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client_context.wrap_socket(client_socket, server_hostname="localhost") as tls:
            assert tls.recv(2) == b"ok"
    finally:
        thread.join(timeout=10)
    assert "error" not in server_seen, server_seen.get("error")
    assert server_seen["identity"] == "backend"


def test_client_refuses_server_from_another_ca(ca: IssuedCertificate, tmp_path: Path) -> None:
    other_ca = create_ca("another dev CA")
    server_cert = issue_server_certificate(other_ca)
    write_public_file(tmp_path / "server.pem", server_cert.cert_pem)
    write_private_key(tmp_path / "server.key", server_cert.key_pem)
    write_public_file(tmp_path / "ca.pem", ca.cert_pem)

    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(str(tmp_path / "server.pem"), str(tmp_path / "server.key"))
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.load_verify_locations(str(tmp_path / "ca.pem"))

    server_socket, client_socket = socket.socketpair()

    def serve() -> None:
        try:
            with server_context.wrap_socket(server_socket, server_side=True):
                pass
        except (ssl.SSLError, OSError):
            pass  # The client aborts the handshake, which is the point of this test.

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            client_context.wrap_socket(client_socket, server_hostname="localhost")
    finally:
        client_socket.close()
        thread.join(timeout=10)
