"""Who is calling and what they may do.

A principal is the identity of a client certificate, mapped to roles by the server configuration. Roles never
come from a request body, so a caller can claim nothing the operator did not grant.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from custody.domain.errors import PermissionDenied


class Role(enum.Enum):
    REQUESTER = "requester"  # submits signing requests for the keys granted to it
    APPROVER = "approver"  # approves or rejects pending requests
    SECURITY = "security"  # may freeze keys (the circuit breaker)
    ADMIN = "admin"  # creates keys, proposes policies
    AUDITOR = "auditor"  # reads the audit log


@dataclass(frozen=True)
class Principal:
    name: str
    roles: frozenset[Role]
    keys: frozenset[str] = frozenset()  # key labels a requester may sign with

    def has(self, role: Role) -> bool:
        return role in self.roles

    def require(self, role: Role, action: str) -> None:
        """Raise PermissionDenied unless this principal holds ``role``; ``action`` completes the sentence."""
        if role not in self.roles:
            raise PermissionDenied(f"{self.name} may not {action}: that needs the {role.value} role")

    def require_key_grant(self, key_label: str) -> None:
        self.require(Role.REQUESTER, f"submit requests for key {key_label!r}")
        if key_label not in self.keys:
            raise PermissionDenied(f"{self.name} is not granted key {key_label!r}")

    def sees_all_requests(self) -> bool:
        """Approvers, admins and auditors see every request; a requester only those on its keys."""
        return bool(self.roles & {Role.APPROVER, Role.ADMIN, Role.AUDITOR, Role.SECURITY})
