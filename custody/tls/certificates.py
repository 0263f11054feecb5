"""A small certificate authority for development and tests.

``custody dev init`` uses it to make a CA, a server certificate and one client certificate per identity, so
the daemon can run with mutual TLS on a laptop from nothing. The private keys are written as unencrypted
PKCS#8 PEM files with mode 0600: convenient for a development environment and wrong for production.
Production operators bring their own PKI (their CA, certificates and key storage) and point the server
configuration at it.

All keys are EC P-256, which every TLS stack (gRPC's BoringSSL included) supports.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from custody.domain.errors import InvalidInput

# RFC 5280's upper bound for a common name (ub-common-name).
_MAX_COMMON_NAME_LENGTH = 64
# Certificates start a few minutes in the past so that a machine whose clock runs slightly behind the one that
# issued them still accepts them.
_CLOCK_SKEW_ALLOWANCE = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class IssuedCertificate:
    cert_pem: bytes
    key_pem: bytes

    def __repr__(self) -> str:
        # The private key must never reach a log line or a test failure message through repr().
        return f"IssuedCertificate(cert_pem=<{len(self.cert_pem)} bytes>, key_pem=<redacted>)"


def create_ca(common_name: str = "custody dev CA", valid_days: int = 825) -> IssuedCertificate:
    """A self-signed CA that may sign end-entity certificates only (path length 0)."""
    _check_common_name(common_name, "common_name")
    _check_valid_days(valid_days)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    not_before = _now() - _CLOCK_SKEW_ALLOWANCE
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + datetime.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return IssuedCertificate(
        cert_pem=certificate.public_bytes(serialization.Encoding.PEM), key_pem=_key_pem(key)
    )


def issue_server_certificate(
    ca: IssuedCertificate,
    hostnames: Sequence[str] = ("localhost",),
    ips: Sequence[str] = ("127.0.0.1", "::1"),
    valid_days: int = 825,
) -> IssuedCertificate:
    """A server certificate for ``hostnames`` and ``ips``; its common name is the first hostname."""
    if isinstance(hostnames, str) or not hostnames:
        raise InvalidInput("give at least one hostname as a list", field="hostnames")
    for hostname in hostnames:
        _check_common_name(hostname, "hostnames")
    if isinstance(ips, str):
        raise InvalidInput("give the IP addresses as a list", field="ips")
    addresses: list[x509.GeneralName] = []
    for ip in ips:
        try:
            addresses.append(x509.IPAddress(ipaddress.ip_address(ip)))
        except ValueError as error:
            raise InvalidInput(f"{ip!r} is not an IPv4 or IPv6 address", field="ips") from error
    names: list[x509.GeneralName] = [x509.DNSName(hostname) for hostname in hostnames]
    return _issue_end_entity(
        ca,
        common_name=hostnames[0],
        subject_alternative_names=names + addresses,
        extended_key_usage=ExtendedKeyUsageOID.SERVER_AUTH,
        valid_days=valid_days,
    )


def issue_client_certificate(
    ca: IssuedCertificate, identity: str, valid_days: int = 825
) -> IssuedCertificate:
    """A client certificate whose common name is ``identity``: the name the daemon maps to roles."""
    _check_common_name(identity, "identity")
    return _issue_end_entity(
        ca,
        common_name=identity,
        subject_alternative_names=[],
        extended_key_usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        valid_days=valid_days,
    )


def write_private_key(path: Path, key_pem: bytes) -> None:
    """Write a private key readable by its owner only (mode 0600), at no moment readable by anyone else."""
    _write_with_mode(path, key_pem, 0o600)


def write_public_file(path: Path, data: bytes) -> None:
    """Write a certificate or other public file with mode 0644."""
    _write_with_mode(path, data, 0o644)


def certificate_identity(cert_pem_or_der: bytes) -> str:
    """The common name of a certificate given as PEM or DER; for a client certificate, its identity."""
    try:
        if cert_pem_or_der.lstrip().startswith(b"-----BEGIN"):
            certificate = x509.load_pem_x509_certificate(cert_pem_or_der)
        else:
            certificate = x509.load_der_x509_certificate(cert_pem_or_der)
    except ValueError as error:
        raise InvalidInput("not a PEM or DER X.509 certificate", field="certificate") from error
    common_names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(common_names) != 1:
        raise InvalidInput(
            f"the certificate's subject must have exactly one common name, it has {len(common_names)}",
            field="certificate",
        )
    value = common_names[0].value
    return value if isinstance(value, str) else value.decode("utf-8")


def _issue_end_entity(
    ca: IssuedCertificate,
    *,
    common_name: str,
    subject_alternative_names: list[x509.GeneralName],
    extended_key_usage: x509.ObjectIdentifier,
    valid_days: int,
) -> IssuedCertificate:
    _check_valid_days(valid_days)
    ca_certificate = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise InvalidInput("the CA key must be an EC private key", field="ca")
    key = ec.generate_private_key(ec.SECP256R1())
    not_before = _now() - _CLOCK_SKEW_ALLOWANCE
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + datetime.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([extended_key_usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if subject_alternative_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(subject_alternative_names), critical=False
        )
    certificate = builder.sign(ca_key, hashes.SHA256())
    return IssuedCertificate(
        cert_pem=certificate.public_bytes(serialization.Encoding.PEM), key_pem=_key_pem(key)
    )


def _write_with_mode(path: Path, data: bytes, mode: int) -> None:
    # The file is created with the final mode, and an existing file is truncated and re-moded before any byte
    # is written, so new content is never visible under wider permissions. O_NOFOLLOW refuses to write
    # through a symbolic link that someone placed at the path.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        # The process umask may have narrowed the creation mode, and an existing file keeps its old mode.
        os.fchmod(descriptor, mode)
        with os.fdopen(descriptor, "wb") as stream:
            descriptor = -1
            stream.write(data)
    finally:
        if descriptor != -1:
            os.close(descriptor)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def _check_common_name(value: str, field: str) -> None:
    if not isinstance(value, str) or not value or len(value) > _MAX_COMMON_NAME_LENGTH:
        raise InvalidInput(f"must be 1 to {_MAX_COMMON_NAME_LENGTH} characters, got {value!r}", field=field)
    if not value.isprintable() or value != value.strip():
        raise InvalidInput(
            f"must be printable with no leading or trailing spaces, got {value!r}", field=field
        )


def _check_valid_days(valid_days: int) -> None:
    if isinstance(valid_days, bool) or not isinstance(valid_days, int) or valid_days <= 0:
        raise InvalidInput(f"must be a positive number of days, got {valid_days!r}", field="valid_days")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
