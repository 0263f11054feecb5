"""Approvers: the people who may approve requests, with their Ed25519 public keys and their groups."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from custody.domain.ed25519_points import ed25519_public_key_problem
from custody.domain.errors import ConfigurationError
from custody.domain.policy.fields import FailFactory, parse_string_set, quoted_list, type_name

_GROUP_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
# Approver ids are the common names of client certificates, which people often write as e-mail addresses.
_APPROVER_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
_PUBLIC_KEY_PATTERN = re.compile(r"[0-9a-fA-F]{64}")
_APPROVER_KEYS = frozenset({"public_key", "groups"})


@dataclass(frozen=True)
class Approver:
    id: str  # the common name of the approver's client certificate
    public_key: bytes  # raw 32-byte Ed25519 public key
    groups: frozenset[str]


def members_by_group(approvers: Mapping[str, Approver]) -> dict[str, frozenset[str]]:
    """Each group the approvers list, with its members' ids."""
    members: dict[str, set[str]] = {}
    for approver in approvers.values():
        for group in approver.groups:
            members.setdefault(group, set()).add(approver.id)
    return {group: frozenset(ids) for group, ids in members.items()}


def parse_approvers(data: Mapping[str, Any], source: str) -> dict[str, Approver]:
    """The document's ``[approvers.ID]`` tables, each with ``public_key`` and ``groups``."""
    raw_approvers = data.get("approvers", {})
    if not isinstance(raw_approvers, Mapping):
        raise ConfigurationError(
            f"{source}: approvers: must be a table of [approvers.ID] tables, got {type_name(raw_approvers)}"
        )
    approvers: dict[str, Approver] = {}
    owner_by_public_key: dict[bytes, str] = {}
    for approver_id, raw in raw_approvers.items():
        if not _APPROVER_ID_PATTERN.fullmatch(approver_id):
            raise ConfigurationError(
                f"{source}: approvers: {approver_id!r} is not a valid approver id (1 to 64 letters, digits,"
                " '.', '_', '@' or '-', starting with a letter or digit; it must equal the approver's"
                " certificate common name)"
            )
        where = f"{source}: approver {approver_id!r}"

        def fail(field: str, problem: str, where: str = where) -> ConfigurationError:
            return ConfigurationError(f"{where}: {field}: {problem}")

        if not isinstance(raw, Mapping):
            raise ConfigurationError(f"{where}: must be a table, got {type_name(raw)}")
        unknown = sorted(set(raw) - _APPROVER_KEYS)
        if unknown:
            raise ConfigurationError(
                f"{where}: unknown key {quoted_list(unknown)}; allowed are {quoted_list(sorted(_APPROVER_KEYS))}"
            )
        if "public_key" not in raw:
            raise fail("public_key", "is required (the raw Ed25519 public key as 64 hex digits)")
        public_key = _parse_public_key(raw["public_key"], fail)
        if public_key in owner_by_public_key:
            raise fail("public_key", f"is the same key as approver {owner_by_public_key[public_key]!r}'s")
        owner_by_public_key[public_key] = approver_id
        if "groups" not in raw:
            raise fail("groups", "is required (a non-empty list of group names)")
        groups = parse_string_set(raw["groups"], "groups", "group names", fail)
        for group in sorted(groups):
            if not _GROUP_NAME_PATTERN.fullmatch(group):
                raise fail(
                    "groups",
                    f"{group!r} is not a valid group name (1 to 63 lowercase letters, digits, '.', '_' or '-')",
                )
        approvers[approver_id] = Approver(id=approver_id, public_key=public_key, groups=groups)
    return approvers


def _parse_public_key(value: Any, fail: FailFactory) -> bytes:
    if not isinstance(value, str) or not _PUBLIC_KEY_PATTERN.fullmatch(value):
        shown = value[:80] if isinstance(value, str) else value
        raise fail("public_key", f"must be 64 hex digits (a raw 32-byte Ed25519 public key), got {shown!r}")
    raw = bytes.fromhex(value)
    problem = ed25519_public_key_problem(raw)
    if problem is not None:
        raise fail("public_key", problem)
    return raw
