"""Reading a policy from a TOML file: the I/O half of ``custody.domain.policy``, which does none itself."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from custody.domain.errors import ConfigurationError
from custody.domain.policy import Policy


def load_policy(path: Path) -> Policy:
    """Read and validate the policy in ``path``; every problem is a ConfigurationError naming the file."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigurationError(f"{path}: cannot read the policy file: {reason}") from error
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigurationError(
            f"{path}: the policy file is not valid UTF-8 (byte {error.start} cannot be decoded)"
        ) from error
    return parse_policy_text(text, str(path))


def parse_policy_text(text: str, source: str) -> Policy:
    """Parse and validate policy TOML; ``source`` names where it came from in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        # tomllib's message already carries the line and column, e.g. "Invalid value (at line 3, column 1)".
        raise ConfigurationError(f"{source}: not valid TOML: {error}") from error
    except ValueError:
        # tomllib hands decimal integers to int(), which refuses more than sys.get_int_max_str_digits() digits.
        raise ConfigurationError(f"{source}: not valid TOML: an integer has too many digits") from None
    except RecursionError:
        # tomllib reads nested arrays and inline tables recursively; a few thousand levels exhaust the stack.
        raise ConfigurationError(
            f"{source}: not valid TOML: arrays or tables are nested too deeply"
        ) from None
    _refuse_integers_out_of_range(data, source)
    return Policy.from_mapping(data, source)


# TOML integers are 64-bit signed, and TOML 1.0 requires an error for any that is not; tomllib reads hex, octal
# and binary integers of any length, and the policy's messages could not even print one of thousands of digits.
_TOML_INTEGER_MIN = -(2**63)
_TOML_INTEGER_MAX = 2**63 - 1
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _refuse_integers_out_of_range(data: dict[str, Any], source: str) -> None:
    pending: list[tuple[str, Any]] = [(_toml_key(key), value) for key, value in data.items()]
    while pending:
        path, value = pending.pop()
        if isinstance(value, dict):
            pending.extend((f"{path}.{_toml_key(key)}", item) for key, item in value.items())
        elif isinstance(value, list):
            pending.extend((f"{path}[{index}]", item) for index, item in enumerate(value))
        elif isinstance(value, int) and not _TOML_INTEGER_MIN <= value <= _TOML_INTEGER_MAX:
            raise ConfigurationError(
                f"{source}: {path}: is an integer outside the 64-bit range TOML allows (-2**63 to 2**63-1);"
                " larger amounts of wei are written as decimal strings"
            )


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key[:40])


DEV_APPROVERS = ("alice", "bob", "carol", "dave")
_PUBLIC_KEY_HEX = re.compile(r"[0-9a-fA-F]{64}")


def dev_policy_toml(approver_public_keys: Mapping[str, str]) -> str:
    """The policy ``custody dev init`` writes, given each dev approver's Ed25519 public key as 64 hex digits.

    ``approver_public_keys`` must name exactly alice, bob, carol and dave; the result is checked by parsing it,
    so a bad key surfaces here as a ConfigurationError rather than when the daemon first starts.
    """
    if set(approver_public_keys) != set(DEV_APPROVERS):
        named = ", ".join(sorted(approver_public_keys)) or "none"
        raise ConfigurationError(
            f"the development policy needs public keys for exactly {', '.join(DEV_APPROVERS)}; got {named}"
        )
    for name in DEV_APPROVERS:
        # Checked before the key is put into the TOML text, so no value can add lines of its own to the policy.
        if not _PUBLIC_KEY_HEX.fullmatch(approver_public_keys[name]):
            raise ConfigurationError(f"{name}'s approver public key must be 64 hex digits")
    text = _DEV_POLICY_TEMPLATE.format(
        **{f"{name}_key": approver_public_keys[name] for name in DEV_APPROVERS}
    )
    parse_policy_text(text, "the development policy")
    return text


_DEV_POLICY_TEMPLATE = """\
# custody signing policy for the local development environment.
#
# This file is only the bootstrap: the daemon stores it as policy version 1 when its database holds no policy.
# From then on the policy in the database rules, and changing it takes `custody policy propose FILE` and the
# approval of the admin quorum below.
#
# Rules are tried from top to bottom and the first rule whose conditions all match decides. A request that no
# rule matches is denied ("deny by default"). Conditions a rule leaves out are not tested: a rule without
# chain_ids matches any chain, for example.
#
# Conditions a rule may use:
#   keys               key labels the rule applies to (required)
#   chain_ids          the request's chain id must be one of these; a request without one (a message)
#                      never matches
#   kinds              "transaction", "typed_data" (EIP-712) and/or "message" (EIP-191)
#   transaction_types  "legacy", "eip2930" and/or "eip1559"; only transactions can match
#   destinations       allowed recipients (EIP-55 addresses); for typed data, the domain's verifyingContract
#   contracts          [{{ address = "0x...", selectors = ["0xa9059cbb"] }}]: the request must call one of these
#                      contracts with one of its function selectors (a plain transfer without calldata does
#                      not match)
#   max_value_wei      the most wei of ether the request may send (a transaction's value field); write it as
#                      a decimal string, because TOML integers stop at 2**63. It covers the ether value only:
#                      not token amounts in calldata (an ERC-20 transfer sends value 0) and not fees
#   max_fee_wei        the most wei a transaction may pay in fees: gas times maxFeePerGas (EIP-1559) or gas
#                      times gasPrice (legacy, EIP-2930), the whole of which a block builder may keep; a
#                      decimal string like max_value_wei. Only transactions can match: a rule with it never
#                      matches typed data or messages
#   velocity           what the key may move (ether value and/or number of requests) in a sliding window, this
#                      request included, e.g. {{ window_seconds = 86400, max_value_wei = "5000000000000000000",
#                      max_count = 20, freeze_on_breach = true }}; with freeze_on_breach the key is frozen
#                      when the limit is hit. Like max_value_wei it counts ether value, not fees
# and what the rule does when they match:
#   action             "sign" (sign at once), "deny", or "approve" (sign once the quorum has approved)
#   quorum             approve rules: terms that must all be met, e.g. [{{ group = "treasury", threshold = 2 }},
#                      {{ group = "security", threshold = 1 }}]; one person fills one seat only, and the person
#                      who submitted a request can never approve it
#   lifetime_seconds   approve rules: how long a request may wait for approvals and signing (default 86400)
#   timelock_seconds   approve rules: how long to wait after the last approval before signing (default 0)

version = 1

# Approvers: the id is the common name of the approver's client certificate, the public key their Ed25519
# approval key (64 hex digits), and groups what quorums they count towards.
[approvers.alice]
public_key = "{alice_key}"
groups = ["treasury", "admins"]

[approvers.bob]
public_key = "{bob_key}"
groups = ["treasury", "admins"]

[approvers.carol]
public_key = "{carol_key}"
groups = ["treasury", "admins"]

[approvers.dave]
public_key = "{dave_key}"
groups = ["security", "admins"]

# Changing this policy and unfreezing a key need 2 of alice, bob, carol and dave. Any one member of a security
# group (here dave) may freeze a key alone: the circuit breaker.
[admin]
quorum = [{{ group = "admins", threshold = 2 }}]
security_groups = ["security"]

# The operations key signs EIP-1559 and legacy transactions moving at most 1 ether and paying at most
# 0.05 ether in fees (1,000,000 gas at 50 gwei), on Ethereum mainnet (1) and Sepolia (11155111).
[[rules]]
name = "ops-transactions"
keys = ["ops"]
kinds = ["transaction"]
transaction_types = ["legacy", "eip1559"]
chain_ids = [1, 11155111]
max_value_wei = "1000000000000000000"  # 1 ether
max_fee_wei = "50000000000000000"  # 0.05 ether
action = "sign"

# The operations key also signs EIP-712 typed data and EIP-191 messages, on any chain.
[[rules]]
name = "ops-typed-data-and-messages"
keys = ["ops"]
kinds = ["typed_data", "message"]
action = "sign"

# Treasury transactions on mainnet and Sepolia that pay at most 0.1 ether in fees need 2 of alice, bob and
# carol. A request not approved and signed within 24 hours expires.
[[rules]]
name = "treasury-transactions"
keys = ["treasury"]
kinds = ["transaction"]
chain_ids = [1, 11155111]
max_fee_wei = "100000000000000000"  # 0.1 ether
action = "approve"
quorum = [{{ group = "treasury", threshold = 2 }}]
lifetime_seconds = 86400
timelock_seconds = 0

# Treasury EIP-712 typed data (a Safe transaction, for example) needs the same 2 of alice, bob and carol.
[[rules]]
name = "treasury-typed-data"
keys = ["treasury"]
kinds = ["typed_data"]
action = "approve"
quorum = [{{ group = "treasury", threshold = 2 }}]
lifetime_seconds = 86400
timelock_seconds = 0

# Anything else for the treasury key (messages, other chains, higher fees) matches no rule and is denied.
"""
