"""Authentication: the verified client certificate's common name names the principal.

TLS (with client certificates required and checked against the configured CA) has already verified the
certificate when a call reaches this code; here the identity is looked up in the server configuration, which
alone grants roles.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import grpc

from custody.domain.errors import Unauthenticated
from custody.domain.principals import Principal

log = logging.getLogger(__name__)


class CertificateAuthenticator:
    def __init__(self, principals: Mapping[str, Principal]) -> None:
        self._principals = dict(principals)

    def authenticate(self, context: grpc.ServicerContext) -> Principal:
        auth: Mapping[str, Any] = context.auth_context()
        names: list[bytes] = list(auth.get("x509_common_name") or [])
        if list(auth.get("transport_security_type") or []) != [b"ssl"] or len(names) != 1:
            log.warning("refused a call without a verified client certificate from %s", context.peer())
            raise Unauthenticated("a client certificate signed by the custody CA is required")
        identity = names[0].decode("utf-8", errors="replace")
        principal = self._principals.get(identity)
        if principal is None:
            log.warning(
                "refused certificate identity %r from %s: not in the configuration", identity, context.peer()
            )
            raise Unauthenticated(f"the certificate identity {identity!r} is not configured on this server")
        return principal
