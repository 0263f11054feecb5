"""Reading a policy from a TOML file: the I/O half of ``custody.domain.policy``, which does none itself."""

from __future__ import annotations

import tomllib
from pathlib import Path

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
    return Policy.from_mapping(data, source)


def dev_policy_toml() -> str:
    """The policy ``custody dev init`` writes: the one the development environment is described with."""
    return _DEV_POLICY_TOML


_DEV_POLICY_TOML = """\
# custody signing policy for the local development environment.
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
#   max_value_wei      the most wei the request may move; write it as a decimal string, because TOML
#                      integers stop at 2**63
# and what the rule does when they match:
#   action             "sign" (sign at once) or "deny"
#
# The key "treasury" has no rule yet, so every request for it is denied by default. Treasury signing needs
# 2 of alice, bob and carol to approve; that rule arrives with approver quorums.

version = 1

# The operations key signs EIP-1559 and legacy transactions moving at most 1 ether, on Ethereum mainnet (1)
# and Sepolia (11155111).
[[rules]]
name = "ops-transactions"
keys = ["ops"]
kinds = ["transaction"]
transaction_types = ["legacy", "eip1559"]
chain_ids = [1, 11155111]
max_value_wei = "1000000000000000000"  # 1 ether
action = "sign"

# The operations key also signs EIP-712 typed data and EIP-191 messages, on any chain.
[[rules]]
name = "ops-typed-data-and-messages"
keys = ["ops"]
kinds = ["typed_data", "message"]
action = "sign"
"""
