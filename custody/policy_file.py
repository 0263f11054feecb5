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
# chain_ids matches any chain, for example. Some dangers are refused by every rule unless it says otherwise:
# see "What every rule refuses" below.
#
# Conditions on the envelope of a request:
#   keys               key labels the rule applies to (required)
#   chain_ids          the request's chain id must be one of these; a request without one (a message)
#                      never matches
#   kinds              "transaction", "typed_data" (EIP-712), "message" (EIP-191) and/or "authorization"
#                      (EIP-7702); a rule without kinds never matches an authorization
#   transaction_types  "legacy", "eip2930", "eip1559", "eip4844" (blob) and/or "eip7702" (set-code); only
#                      transactions can match, and a rule without transaction_types never matches eip4844 or
#                      eip7702
#   destinations       allowed recipients of a transaction (EIP-55 addresses). Messages never match, and typed
#                      data only in a rule that lists typed_data, where its verifyingContract counts
#   contracts          [{{ address = "0x...", selectors = ["0xa9059cbb"] }}]: the request must call one of these
#                      contracts with one of its function selectors (a plain transfer without calldata does
#                      not match)
#   max_value_wei      the most wei of ether the request may send (a transaction's value field); write it as
#                      a decimal string, because TOML integers stop at 2**63. It covers the ether value only:
#                      not token amounts in calldata (an ERC-20 transfer sends value 0; see token_caps) and not
#                      fees. Only transactions can match: typed data and messages send no value
#   max_fee_wei        the most wei a transaction may pay in fees: gas times maxFeePerGas (EIP-1559) or gas
#                      times gasPrice (legacy, EIP-2930), the whole of which a block builder may keep; a
#                      decimal string like max_value_wei. Only transactions can match: a rule with it never
#                      matches typed data or messages
#   velocity           what the key may move (ether value and/or number of requests) in a sliding window, this
#                      request included, e.g. {{ window_seconds = 86400, max_value_wei = "5000000000000000000",
#                      max_count = 20, freeze_on_breach = true }}; with freeze_on_breach the key is frozen
#                      when the limit is hit. Like max_value_wei it counts ether value, not fees
#
# Conditions on what the request does: its intents. custody decodes every payload into a tree of intents (a
# Safe transaction holds its call, a MultiSend batch its calls, a Governor proposal its actions), and a rule
# that names intents matches only if EVERY intent of the tree passes, so one forbidden inner call decides.
#   intents            the intent kinds the rule allows, e.g. ["native_transfer", "erc20_transfer"]. Others:
#                      erc20_transfer_from, erc20_approve, erc20_increase_allowance, nft_transfer,
#                      set_approval_for_all, permit, permit2_allowance, permit2_transfer, safe_transaction,
#                      multisend, safe_configuration, governor_propose, governor_queue, governor_execute,
#                      governor_cancel, vote, timelock_schedule, timelock_execute, timelock_cancel,
#                      timelock_update_delay, ownership_transfer, ownership_renounce, role_grant, role_revoke,
#                      role_renounce, upgrade, typed_data, text_message, binary_message, authorization (an
#                      EIP-7702 authorization, signed here or carried by a set-code transaction), unknown (a function
#                      or typed data custody does not know) and undecodable (calldata that claims to be a known
#                      function but does not decode as it). A request custody could not decode matches no rule
#                      that names intents
#   requires_intents   e.g. ["ownership_transfer", "upgrade"]: the request must hold at least one intent of these
#                      kinds (each also in intents), for rules meant only for requests that do such a thing
#   tokens             token contracts the request may move or allow, e.g.
#                      ["0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"] (USDC)
#   recipients         who may receive ether, tokens or NFTs, e.g. ["0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"]
#   spenders           who may be allowed to spend the key's tokens (approve, increaseAllowance, Permit,
#                      Permit2), e.g. ["0x000000000022D473030F116dDEE9F6B43aC78BA3"]; required when intents
#                      names an approval or permit kind
#   operators          who may be made operator of the key's NFTs (setApprovalForAll); required when intents
#                      names set_approval_for_all
#   token_caps         [{{ token = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", max = "1000000000" }}]: the most
#                      base units of each token the request may move or allow, all its intents added up (here
#                      1,000 USDC, which has 6 decimals); a token without a cap is not allowed
#   allow_unlimited_approval  true lets the rule match an approval or permit without limit (2**256-1); the
#                      default false refuses them in every rule
#   max_permit_horizon_seconds  e.g. 3600: a permit's deadline or expiration must be at most this far ahead;
#                      a permit valid for ever does not match
#   safes              Safe accounts the rule's Safe transactions and Safe configuration changes may be for,
#                      e.g. ["0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"]; required when intents names
#                      safe_transaction or safe_configuration
#   safe_operations    ["CALL"] (the default in every rule) or ["CALL", "DELEGATECALL"]; DELEGATECALL runs
#                      another contract's code as the Safe itself
#   delegatecall_targets  the only contracts DELEGATECALL may run, required with it, e.g. Safe's
#                      MultiSendCallOnly ["0x40A2aCCbd92BCA938b02010E17A5b8929b49130D"]
#   allow_refund       true lets a Safe transaction pay gas back to a refund receiver; refused by default
#   governance_targets contracts that Governor and Timelock actions may call, e.g.
#                      ["0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"]; each action is also judged as an intent
#   typed_data         [{{ primary_type = "Mail", name = "Ether Mail", version = "1", chain_id = 1,
#                      verifying_contract = "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC" }}]: the typed data
#                      allowed, by primary type and (each field optional) domain. A rule without typed_data
#                      never matches typed data, and one with it matches only typed data
#   text_only          true (the default) allows printable text messages only; false, with "binary_message"
#                      in intents, allows binary messages too
#   max_message_bytes  e.g. 1024: the longest message allowed, in bytes
#   message_prefixes   e.g. ["Sign in to example.org"]: a text message must start with one of these
#   allow_hash_like    true allows a 32-byte binary message, which is what a transaction hash or a Safe
#                      transaction hash looks like; refused by default
#   token_velocity     [{{ token = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", window_seconds = 86400,
#                      max = "10000000000" }}]: what the key may move or allow of a token in a sliding window,
#                      counting requests still waiting for approval, as velocity does for ether
#   delegates          e.g. ["0x63c0c19a282a1B52b07dD5a65b58948A07DAE32B"]: the contracts an EIP-7702 authorization
#                      may make the key's account (or a set-code transaction's authorities) run; required when
#                      intents names authorization. WHOEVER CONTROLS THE DELEGATE'S CODE CONTROLS THE ACCOUNT
#   any_chain          true lets an authorization of chain id 0 (valid on EVERY chain) through; refused by default,
#                      and refused together with chain_ids, which a tuple valid on every chain would not keep
#
# What every rule refuses unless it says otherwise: undecodable calldata, Safe configuration changes, binary
# messages and EIP-7702 authorizations (unless intents names them; authorizations also need kinds to name
# them), blob and set-code transactions (unless transaction_types names them), unlimited approvals
# (allow_unlimited_approval), DELEGATECALL (safe_operations and delegatecall_targets), Safe gas refunds
# (allow_refund), and typed data whose primary type it does not list (typed_data). A deny rule is not narrowed
# by these, and its conditions on intents match when ANY part of the request is what they list (one kind in
# intents; one recipient, spender, operator, token, Safe, governance target or delegate in its list; a
# DELEGATECALL when safe_operations names it, to any contract unless delegatecall_targets lists some; chain
# id 0, valid on every chain, against any chain_ids), where a rule that signs needs EVERY part allowed: so
# what a deny rule denies never slips through to the rules after it, not even as one call of a batch or one
# tuple of a set-code transaction. A deny rule may list delegates without intents. It may use only the fields
# that name what it denies (keys, chain_ids, kinds, transaction_types, destinations, contracts, intents,
# requires_intents, tokens, recipients, spenders, operators, safes, safe_operations, delegatecall_targets,
# governance_targets, delegates, typed_data, message_prefixes); a limit (max_value_wei, max_fee_wei, velocity,
# token_caps, token_velocity, max_permit_horizon_seconds, max_message_bytes) would deny only what stays within
# it, and a permission (allow_unlimited_approval, allow_refund, allow_replacement, text_only, allow_hash_like)
# would deny less, so the policy refuses to load either: to deny above an amount, set the limit on the rules
# that sign or ask for approval, and what exceeds it is denied by default. Never copy
# allow_unlimited_approval = true, DELEGATECALL to a contract you have not audited, "unknown" / "undecodable"
# in intents, any_chain = true or a delegate you have not audited into a rule that signs at once: each is how a
# real treasury was drained.
#
# And what the rule does when they match:
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

# The operations key signs at once three things and nothing else. First, EIP-1559 and legacy transactions that
# are plain ether transfers of at most 1 ether, paying at most 0.05 ether in fees (1,000,000 gas at 50 gwei),
# on Ethereum mainnet (1) and Sepolia (11155111). A transaction that calls a contract (a token approval, a
# transfer, anything else) is no native transfer and is denied.
[[rules]]
name = "ops-transactions"
keys = ["ops"]
kinds = ["transaction"]
transaction_types = ["legacy", "eip1559"]
chain_ids = [1, 11155111]
intents = ["native_transfer"]
max_value_wei = "1000000000000000000"  # 1 ether
max_fee_wei = "50000000000000000"  # 0.05 ether
action = "sign"

# Second, the EIP-712 "Mail" example (examples/typed-data.json), of its own domain only. Other typed data,
# Permit, Permit2 and Safe transactions among it, matches no rule and is denied.
[[rules]]
name = "ops-mail"
keys = ["ops"]
kinds = ["typed_data"]
intents = ["typed_data"]
action = "sign"
# An entry of typed_data written as a table of its own: it must come after the rule's other fields.
[[rules.typed_data]]
primary_type = "Mail"
name = "Ether Mail"
version = "1"
chain_id = 1
verifying_contract = "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"

# Third, printable text messages of at most 1 KiB. Binary messages (a 32-byte one may be a transaction hash)
# are denied.
[[rules]]
name = "ops-messages"
keys = ["ops"]
kinds = ["message"]
intents = ["text_message"]
text_only = true
max_message_bytes = 1024
action = "sign"

# Treasury transactions on mainnet and Sepolia that pay at most 0.1 ether in fees need 2 of alice, bob and
# carol: ether and ERC-20 transfers, and Safe transactions (execTransaction) of the example Safe below that
# make such a transfer by CALL. A request not approved and signed within 24 hours expires.
# 0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359 is an example address from EIP-55; put your Safe here.
[[rules]]
name = "treasury-transactions"
keys = ["treasury"]
kinds = ["transaction"]
chain_ids = [1, 11155111]
max_fee_wei = "100000000000000000"  # 0.1 ether
intents = ["native_transfer", "erc20_transfer", "safe_transaction"]
safes = ["0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"]
safe_operations = ["CALL"]
action = "approve"
quorum = [{{ group = "treasury", threshold = 2 }}]
lifetime_seconds = 86400
timelock_seconds = 0

# The treasury key's signatures as a Safe owner (SafeTx typed data) of the same Safe, making the same transfers
# by CALL, need the same 2 of alice, bob and carol.
[[rules]]
name = "treasury-safe-transactions"
keys = ["treasury"]
kinds = ["typed_data"]
chain_ids = [1, 11155111]
typed_data = [{{ primary_type = "SafeTx", verifying_contract = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359" }}]
intents = ["safe_transaction", "native_transfer", "erc20_transfer"]
safes = ["0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"]
action = "approve"
quorum = [{{ group = "treasury", threshold = 2 }}]
lifetime_seconds = 86400
timelock_seconds = 0

# Changes to who controls something need the admin quorum (2 of alice, bob, carol and dave): Safe configuration
# changes (owners, threshold, guard, modules), ownership transfers, roles and upgrades, alone or inside a Safe
# transaction of the example Safe. Such changes often come in a MultiSend batch, which a Safe runs by
# DELEGATECALL; these rules allow DELEGATECALL to Safe's MultiSendCallOnly (versions 1.3.0 and 1.4.1) only,
# and every call of the batch is judged on its own. requires_intents keeps them to requests that do change who
# controls something: a plain transfer the rules above refused does not come here instead.
[[rules]]
name = "treasury-admin-transactions"
keys = ["treasury"]
kinds = ["transaction"]
chain_ids = [1, 11155111]
max_fee_wei = "100000000000000000"  # 0.1 ether
intents = [
  "native_transfer", "erc20_transfer", "safe_transaction", "multisend", "safe_configuration",
  "ownership_transfer", "ownership_renounce", "role_grant", "role_revoke", "role_renounce", "upgrade",
]
requires_intents = [
  "safe_configuration", "ownership_transfer", "ownership_renounce", "role_grant", "role_revoke",
  "role_renounce", "upgrade",
]
safes = ["0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"]
safe_operations = ["CALL", "DELEGATECALL"]
delegatecall_targets = ["0x40A2aCCbd92BCA938b02010E17A5b8929b49130D", "0x9641d764fc13c8B624c04430C7356C1C7C8102e2"]
action = "approve"
quorum = [{{ group = "admins", threshold = 2 }}]
lifetime_seconds = 86400

[[rules]]
name = "treasury-admin-safe-transactions"
keys = ["treasury"]
kinds = ["typed_data"]
chain_ids = [1, 11155111]
typed_data = [{{ primary_type = "SafeTx", verifying_contract = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359" }}]
intents = [
  "native_transfer", "erc20_transfer", "safe_transaction", "multisend", "safe_configuration",
  "ownership_transfer", "ownership_renounce", "role_grant", "role_revoke", "role_renounce", "upgrade",
]
requires_intents = [
  "safe_configuration", "ownership_transfer", "ownership_renounce", "role_grant", "role_revoke",
  "role_renounce", "upgrade",
]
safes = ["0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"]
safe_operations = ["CALL", "DELEGATECALL"]
delegatecall_targets = ["0x40A2aCCbd92BCA938b02010E17A5b8929b49130D", "0x9641d764fc13c8B624c04430C7356C1C7C8102e2"]
action = "approve"
quorum = [{{ group = "admins", threshold = 2 }}]
lifetime_seconds = 86400

# Governance proposals of the example Governor below need the admin quorum too: a proposal's actions run with
# the protocol's own authority, so each action is judged as an intent of its own (an upgrade hidden among
# grants must be named here, and the approver sees its UPGRADE flag), and every action must call one of the
# governance_targets. The Governor and the protocol proxy are invented example addresses (put your own here);
# the token is USDC on Ethereum mainnet. queue and execute carry only a proposal id, not the actions, so they
# are not allowed here: the actions were judged when the proposal was signed.
[[rules]]
name = "treasury-governance-proposals"
keys = ["treasury"]
kinds = ["transaction"]
chain_ids = [1, 11155111]
destinations = ["0x78Db0C61a89aA2646c860Df401De476Fbf378983"]
max_fee_wei = "100000000000000000"  # 0.1 ether
intents = ["governor_propose", "governor_cancel", "erc20_transfer", "upgrade", "role_grant", "role_revoke"]
requires_intents = ["governor_propose", "governor_cancel"]
governance_targets = ["0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", "0xbc2Dbb7376C8e3a01A5C48F4b32E7b3b3897AE79"]
action = "approve"
quorum = [{{ group = "admins", threshold = 2 }}]
lifetime_seconds = 86400

# Anything else for the treasury key (messages, other typed data, approvals, unknown calls, other chains,
# higher fees) matches no rule and is denied.
"""
