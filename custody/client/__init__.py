"""custody.client: use custody from Python services.

``CustodyClient`` is a typed gRPC client that connects with a client profile (``CustodyClient.from_profile``)
and submits, reads, waits for and cancels signing requests. ``CustodyAccount`` (``client.account("ops")``)
signs as eth-account's LocalAccount does and returns its result types; ``custody_signing_middleware`` lets
web3.py send transactions through it. ``ApprovalRequired`` carries the ``request_id`` and ``state`` of a request
the policy holds for approvals.

The names are loaded when first used: the command line reads profiles through custody.client.profile and
must not load gRPC or eth-account for commands that need neither.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from custody.client.account import ApprovalRequired, CustodyAccount, RequestNotSigned, SignatureMismatch
    from custody.client.client import CustodyClient, KeyInfo, RequestInfo
    from custody.client.web3_middleware import custody_signing_middleware

_MODULES = {
    "ApprovalRequired": "custody.client.account",
    "CustodyAccount": "custody.client.account",
    "RequestNotSigned": "custody.client.account",
    "SignatureMismatch": "custody.client.account",
    "CustodyClient": "custody.client.client",
    "KeyInfo": "custody.client.client",
    "RequestInfo": "custody.client.client",
    "custody_signing_middleware": "custody.client.web3_middleware",
}

__all__ = [
    "ApprovalRequired",
    "CustodyAccount",
    "CustodyClient",
    "KeyInfo",
    "RequestInfo",
    "RequestNotSigned",
    "SignatureMismatch",
    "custody_signing_middleware",
]


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'custody.client' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
