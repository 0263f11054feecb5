"""What custody knows about contracts, read once from the JSON files beside this module.

Contract knowledge lives in data, not code, so that it can be checked against its sources line by line and
extended without touching the decoder: ``functions.json`` holds function ABIs (input names, types and display
labels) per contract family, ``typed_data.json`` the EIP-712 type strings custody recognises per primary type,
and ``roles.json`` the AccessControl role names shown by name. Each file and each family names its sources.

The files are read at import; a file that does not describe what the decoder expects (a duplicate selector, a
tuple without components, a malformed type entry) fails the import, so a broken data file cannot ship.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_utils.crypto import keccak

_HERE = Path(__file__).parent
SELECTOR_BYTES = 4


@dataclass(frozen=True)
class Parameter:
    """One function input as the ABI JSON describes it, with the label approvers read."""

    name: str
    type: str  # the ABI JSON spelling: "address", "uint256[]", "tuple", "tuple[]"
    label: str
    components: tuple[Parameter, ...] = ()

    @property
    def abi_type(self) -> str:
        """The canonical type as it appears in a signature, e.g. ``(address,uint160)[]`` for ``tuple[]``."""
        if self.type.startswith("tuple"):
            inner = ",".join(component.abi_type for component in self.components)
            return f"({inner}){self.type[len('tuple') :]}"
        return self.type


@dataclass(frozen=True)
class KnownFunction:
    family: str
    name: str
    parameters: tuple[Parameter, ...]
    # Decoded for display, but judged as an unknown intent: it does nothing a policy has words for.
    display_only: bool = False

    @property
    def parameter_types(self) -> tuple[str, ...]:
        return tuple(parameter.abi_type for parameter in self.parameters)

    @property
    def signature(self) -> str:
        return f"{self.name}({','.join(self.parameter_types)})"

    @property
    def selector(self) -> bytes:
        return keccak(text=self.signature)[:SELECTOR_BYTES]


@dataclass(frozen=True)
class KnownTypedData:
    """One EIP-712 primary type custody recognises, in one version of its type string."""

    id: str
    primary_type: str
    source: str
    # The exact encodeType of the primary type; None for witness types, which fix only a prefix.
    type_string: str | None
    type_prefix: str | None
    member_count: int | None
    # For witness types: the struct definitions the type must contain exactly, e.g. TokenPermissions(...).
    dependencies: tuple[str, ...]
    # struct name -> member name -> label.
    labels: Mapping[str, Mapping[str, str]]

    def label(self, struct: str, member: str) -> str:
        return self.labels.get(struct, {}).get(member, member)


def _read(name: str) -> Any:
    return json.loads((_HERE / name).read_text(encoding="utf-8"))


def _parameter(raw: Mapping[str, Any]) -> Parameter:
    components = tuple(_parameter(component) for component in raw.get("components", ()))
    parameter = Parameter(name=raw["name"], type=raw["type"], label=raw["label"], components=components)
    if parameter.type.startswith("tuple") != bool(components):
        raise ValueError(f"parameter {parameter.name!r}: a tuple needs components, and only a tuple has them")
    return parameter


def _load_functions() -> tuple[KnownFunction, ...]:
    functions = tuple(
        KnownFunction(
            family=family["family"],
            name=function["name"],
            parameters=tuple(_parameter(raw) for raw in function["inputs"]),
            display_only=bool(function.get("display_only", False)),
        )
        for family in _read("functions.json")["families"]
        for function in family["functions"]
    )
    seen: dict[bytes, str] = {}
    for function in functions:
        if function.selector in seen:
            raise ValueError(
                f"{function.signature} has the selector of {seen[function.selector]}; one selector, one function"
            )
        seen[function.selector] = function.signature
    return functions


def _load_typed_data() -> tuple[KnownTypedData, ...]:
    entries = []
    for raw in _read("typed_data.json")["types"]:
        entry = KnownTypedData(
            id=raw["id"],
            primary_type=raw["primary_type"],
            source=raw["source"],
            type_string=raw.get("type_string"),
            type_prefix=raw.get("type_prefix"),
            member_count=raw.get("member_count"),
            dependencies=tuple(raw.get("dependencies", ())),
            labels=raw["labels"],
        )
        exact = entry.type_string is not None
        if exact in (entry.type_prefix is not None, entry.member_count is not None):
            raise ValueError(
                f"typed data entry {entry.id!r}: give type_string, or type_prefix and member_count"
            )
        if not (entry.type_string or entry.type_prefix or "").startswith(entry.primary_type + "("):
            raise ValueError(
                f"typed data entry {entry.id!r}: its type string must start with its primary type"
            )
        entries.append(entry)
    if len({entry.id for entry in entries}) != len(entries):
        raise ValueError("typed data entries must have distinct ids")
    return tuple(entries)


def _load_role_names() -> dict[bytes, str]:
    raw = _read("roles.json")
    names = {bytes(32): raw["default_admin_role"]}
    names.update({bytes(keccak(text=name)): name for name in raw["hashed_names"]})
    return names


KNOWN_FUNCTIONS = _load_functions()
FUNCTIONS_BY_SELECTOR: Mapping[bytes, KnownFunction] = {
    function.selector: function for function in KNOWN_FUNCTIONS
}
KNOWN_TYPED_DATA = _load_typed_data()
TYPED_DATA_BY_PRIMARY_TYPE: Mapping[str, tuple[KnownTypedData, ...]] = {
    primary: tuple(entry for entry in KNOWN_TYPED_DATA if entry.primary_type == primary)
    for primary in dict.fromkeys(entry.primary_type for entry in KNOWN_TYPED_DATA)
}
ROLE_NAMES: Mapping[bytes, str] = _load_role_names()
