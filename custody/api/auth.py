"""Authentication: the verified client certificate's common name names the principal.

TLS (with client certificates required and checked against the configured CA) has already verified the
certificate when a call reaches this code; here the identity is read from that certificate and looked up in
the server configuration, which alone grants roles.

The identity is read from the peer certificate itself, not from the transport's ``x509_common_name``
property: that property holds one common name even when the subject has several, so a certificate naming
both ``admin`` and ``backend`` would pass as whichever the TLS library picked. A subject with any number of
common names other than one is refused.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any

import grpc
from cryptography import x509
from cryptography.x509.oid import NameOID

from custody.domain.errors import Unauthenticated
from custody.domain.principals import Principal

log = logging.getLogger(__name__)

# Distinct client certificates a daemon sees are few (one per identity, renewed now and then); parsing each
# once keeps the per-call cost at a dictionary lookup.
_PARSED_CERTIFICATES_KEPT = 256


@functools.lru_cache(maxsize=_PARSED_CERTIFICATES_KEPT)
def _subject_of(cert_pem: bytes) -> tuple[str, tuple[str, ...]]:
    """The certificate's subject as RFC 4514 text and its common names, in order; raises ValueError for
    something that is not a PEM certificate."""
    subject = x509.load_pem_x509_certificate(cert_pem).subject
    names = tuple(str(attribute.value) for attribute in subject.get_attributes_for_oid(NameOID.COMMON_NAME))
    return subject.rfc4514_string(), names


class CertificateAuthenticator:
    def __init__(self, principals: Mapping[str, Principal]) -> None:
        self._principals = dict(principals)

    @staticmethod
    def presented_subject(context: grpc.ServicerContext) -> str:
        """The subject of the certificate the peer presented (RFC 4514), or "" without a readable one: what a
        refusal is about, whether or not it names a configured identity."""
        return CertificateAuthenticator.subject_of_certificate(_peer_certificate(context.auth_context()))

    def authenticate(self, context: grpc.ServicerContext) -> Principal:
        auth: Mapping[str, Any] = context.auth_context()
        cert_pem = _peer_certificate(auth)
        if list(auth.get("transport_security_type") or []) != [b"ssl"]:
            cert_pem = None
        return self.principal_for_certificate(cert_pem, context.peer())

    def principal_for_certificate(self, cert_pem: bytes | None, peer: str) -> Principal:
        """The principal a certificate that TLS verified against the CA names; ``peer`` is for the log.

        Shared by the gRPC services and the JSON-RPC endpoint, so one certificate means one identity on both.
        """
        if cert_pem is None:
            log.warning("refused a call without a verified client certificate from %s", peer)
            raise Unauthenticated("a client certificate signed by the custody CA is required")
        try:
            subject, names = _subject_of(cert_pem)
        except ValueError:
            log.warning("refused a call whose client certificate cannot be read from %s", peer)
            raise Unauthenticated("the client certificate cannot be read") from None
        if len(names) != 1:
            log.warning("refused a certificate with %d common names (%s) from %s", len(names), subject, peer)
            raise Unauthenticated(
                "the client certificate's subject must name exactly one common name (CN), the identity;"
                f" {subject!r} names {len(names)}"
            )
        identity = names[0]
        principal = self._principals.get(identity)
        if principal is None:
            log.warning("refused certificate identity %r from %s: not in the configuration", identity, peer)
            raise Unauthenticated(f"the certificate identity {identity!r} is not configured on this server")
        return principal

    @staticmethod
    def subject_of_certificate(cert_pem: bytes | None) -> str:
        """The subject (RFC 4514) of a presented certificate, or "" without a readable one."""
        if cert_pem is None:
            return ""
        try:
            return _subject_of(cert_pem)[0]
        except ValueError:
            return ""


def _peer_certificate(auth: Mapping[str, Any]) -> bytes | None:
    """The PEM of the certificate the peer presented and TLS verified, when there is exactly one."""
    certificates: list[bytes] = list(auth.get("x509_pem_cert") or [])
    return certificates[0] if len(certificates) == 1 else None
