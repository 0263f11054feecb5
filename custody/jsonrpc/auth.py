"""Who calls the JSON-RPC endpoint: a client certificate of the custody CA, as for gRPC, or a bearer token.

Tools that cannot present a certificate (ethers, viem, cast) send ``Authorization: Bearer TOKEN``. The
configuration holds only each identity's SHA-256 of its token; the token presented is hashed and compared
with every configured hash in constant time, so neither the timing nor a log line gives a token away.
A certificate and a token that name different identities are refused: one call has one caller.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from custody.api.auth import CertificateAuthenticator
from custody.domain.errors import Unauthenticated
from custody.domain.principals import Principal

# Tokens are generated as 32 random bytes in URL-safe base64; anything much longer is not one of ours.
MAX_TOKEN_CHARS = 512
BEARER = "bearer"


class Credentials:
    """What the caller presented: the certificate TLS verified (PEM), the Authorization header, and where it
    came from (``peer`` as gRPC writes it, ``host`` the address alone)."""

    def __init__(
        self, certificate_pem: bytes | None, authorization: str | None, peer: str, host: str
    ) -> None:
        self.certificate_pem = certificate_pem
        self.authorization = authorization
        self.peer = peer
        self.host = host

    def description(self) -> str:
        """Who presented what, for the refusal records, which aggregate refusals per description: a
        certificate's subject, else the kind of credential and the caller's address without its port (a new
        connection must not open a new window). Never the token."""
        subject = CertificateAuthenticator.subject_of_certificate(self.certificate_pem)
        if subject:
            return subject
        return f"bearer token from {self.host}" if self.authorization else f"no credentials from {self.host}"


class JsonRpcAuthenticator:
    def __init__(
        self,
        principals: Mapping[str, Principal],
        tokens: Mapping[str, bytes],
        certificates: CertificateAuthenticator,
    ) -> None:
        self._principals = dict(principals)
        self._tokens = dict(tokens)
        self._certificates = certificates

    def authenticate(self, credentials: Credentials) -> Principal:
        by_token = self._token_principal(credentials.authorization) if credentials.authorization else None
        if credentials.certificate_pem is not None:
            by_certificate = self._certificates.principal_for_certificate(
                credentials.certificate_pem, credentials.peer
            )
            if by_token is not None and by_token.name != by_certificate.name:
                raise Unauthenticated("the client certificate and the bearer token name different identities")
            return by_certificate
        if by_token is None:
            raise Unauthenticated(
                "credentials are required: a client certificate of the custody CA, or an Authorization:"
                " Bearer token configured in [jsonrpc.tokens]"
            )
        return by_token

    def _token_principal(self, authorization: str) -> Principal:
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != BEARER or not token:
            raise Unauthenticated('the Authorization header must be "Bearer TOKEN"')
        if len(token) > MAX_TOKEN_CHARS or not token.isascii():
            raise Unauthenticated("the bearer token is not valid")
        presented = hashlib.sha256(token.encode("ascii")).digest()
        found: str | None = None
        # Every configured hash is compared, whichever matches, so the time taken says nothing about which.
        for name, expected in self._tokens.items():
            if hmac.compare_digest(presented, expected):
                found = name
        if found is None or found not in self._principals:
            raise Unauthenticated("the bearer token is not valid")
        return self._principals[found]
