"""The JSON-RPC methods: read the parameters, call a use case as the gRPC servicers do, answer in JSON-RPC's
terms. No rules live here: the policy decides through ``signing.submit``, as for every gRPC SubmitRequest.

A signing method answers its result only when the request is SIGNED. A request the policy holds for
approvals is the error -32010 with ``data: {request_id, state}``; the endpoint remembers the call, and the
identical call sent again answers from that request: its signature once the quorum signed it, or -32014 once
if it was rejected, expired or cancelled (the call after that is submitted anew), for at most
REMEMBERED_ANSWER_WINDOW after the request ended, and never a transaction the node's pending nonce has passed.
The memory is the process's: after a restart, or at another replica, a transaction is still found by its
nonce in the use case (and a call that left fields to the upstream node by the waiting request that is the
same transaction apart from those fields, since the fees it would fill in may have moved), while a message or
typed data makes a new request. A broadcast whose outcome the node cannot tell is -32016 with the signed
transaction, never "try again". A denial, a frozen key and a nonce conflict have codes of their own
(custody.api.errors).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from custody.api.errors import (
    JSONRPC_BROADCAST_UNKNOWN,
    JSONRPC_LIMIT_EXCEEDED,
    JSONRPC_METHOD_NOT_FOUND,
    JSONRPC_NOT_SIGNED,
    JSONRPC_PENDING_APPROVAL,
    JSONRPC_POLICY_DENIED,
)
from custody.app.custody import Custody, utc_now
from custody.chains.evm.transactions import parse_transaction
from custody.chains.evm.values import canonical_payload, load_json_object, parse_integer
from custody.config import JsonRpcConfig
from custody.domain.errors import (
    ConfigurationError,
    CustodyError,
    InvalidInput,
    PermissionDenied,
    Unavailable,
)
from custody.domain.keys import KeyState
from custody.domain.policy.conditions.kinds import KindCondition
from custody.domain.policy.conditions.max_fee import MaxFeeCondition
from custody.domain.policy.rules import Rule
from custody.domain.principals import Principal, Role
from custody.domain.requests import DecisionAction, PayloadKind, RequestState, SigningRequest
from custody.jsonrpc import params
from custody.jsonrpc.protocol import JsonRpcError
from custody.jsonrpc.upstream import UPSTREAM, Upstream, UpstreamError

log = logging.getLogger(__name__)

# Read methods passed to the upstream node as they are. Nothing here signs or holds an account: the endpoint
# must not become an open relay for a node's admin, debug, personal or txpool methods, nor for filters and
# subscriptions, which keep state on the node for whoever asks. eth_sendRawTransaction is here because it
# only carries a transaction someone already signed (ethers and viem send what eth_signTransaction returned).
FORWARDED_METHODS = frozenset(
    {
        "eth_blockNumber",
        "eth_getBalance",
        "eth_call",
        "eth_estimateGas",
        "eth_getTransactionCount",
        "eth_getTransactionReceipt",
        "eth_getTransactionByHash",
        "eth_getBlockByNumber",
        "eth_getBlockByHash",
        "eth_getCode",
        "eth_getLogs",
        "eth_feeHistory",
        "eth_gasPrice",
        "eth_maxPriorityFeePerGas",
        "eth_sendRawTransaction",
        "eth_getStorageAt",
        "web3_clientVersion",
    }
)
# The requests a transaction call that left fields to the upstream node may find again when it is sent a second
# time: waiting, or signed and not yet broadcast (once broadcast, the pending nonce has moved on).
_REUSABLE_STATES = (RequestState.PENDING_APPROVAL, RequestState.APPROVED, RequestState.SIGNED)
_REUSABLE_LOOKUP_LIMIT = 200
# How long after its signature a transaction may still be the one a call without a nonce retries after a broadcast
# whose outcome was unknown: long enough for a client's retries, short enough that a recurring payment made
# again later is signed anew.
BROADCAST_RETRY_WINDOW = timedelta(minutes=10)
# Requests whose broadcast this endpoint answered as unknown (-32016) are remembered, up to this many, as the
# only ones a later call without a nonce may be a retry of.
MAX_UNKNOWN_BROADCASTS = 1024
# The fields the endpoint asks the upstream node for when a call leaves them out. Only these may differ between
# a call and the earlier request it finds again; a field the caller gave must still agree.
NODE_FILLED_FIELDS = frozenset(
    {"nonce", "gas", "gasPrice", "maxFeePerGas", "maxPriorityFeePerGas", "chainId"}
)
# Calls answered "pending approval", remembered so that the same call again answers from the same request;
# the oldest are forgotten past this many (the call is then submitted again).
MAX_REMEMBERED_PENDING_CALLS = 10_000
# How long after its request ended a remembered call is still answered from it; later, the same call is new.
REMEMBERED_ANSWER_WINDOW = timedelta(hours=1)
# An EIP-1559 fee cap the endpoint fills in: twice the next block's base fee plus the tip, so the transaction
# stays valid through six full blocks of base fee increases (12.5 % each), as ethers and viem choose it.
BASE_FEE_MULTIPLIER = 2
UINT256_MAX = 2**256 - 1
# What the node's answers to one body's forwarded reads may add up to when the endpoint is built without its
# limit ([limits] max_message_bytes, the gRPC default).
DEFAULT_MAX_FORWARDED_ANSWER_BYTES = 4 * 1024 * 1024
# How long an address no key has is remembered as such, so that calls naming it do not read every key each.
UNKNOWN_ADDRESS_SECONDS = 5.0
MAX_UNKNOWN_ADDRESSES = 1024

CustodySource = Callable[[], Custody]


class JsonRpcMethods:
    def __init__(
        self,
        custody: CustodySource,
        config: JsonRpcConfig,
        *,
        upstream: Upstream | None,
        max_wait_seconds: float,
        max_answer_bytes: int = DEFAULT_MAX_FORWARDED_ANSWER_BYTES,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._max_answer_bytes = max_answer_bytes
        self._fee_caps_checked = False
        self._custody = custody
        self._clock = clock
        self._config = config
        self._upstream = upstream
        self._max_wait_seconds = max_wait_seconds
        # Until when the body being answered on this thread may wait (custody_waitRequest), all its calls
        # together: a batch of waits must not hold its thread for max_wait_seconds each.
        self._body = threading.local()
        self._upstream_chain_id: int | None = None
        # A key's address never changes and a label is never reused, so address -> label is kept once seen.
        self._labels_by_address: dict[str, str] = {}
        # Addresses no key had when last read -> until when that answer stands (monotonic seconds).
        self._unknown_addresses: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        # (caller, key label, kind, SHA-256 of the call) -> the id of the request waiting for approvals.
        self._pending_calls: OrderedDict[tuple[str, str, PayloadKind, bytes], str] = OrderedDict()
        # Request id -> when its broadcast was answered as unknown. Only such a request is what a call without a
        # nonce retries: the same payment made again after a broadcast that succeeded is a second payment.
        self._unknown_broadcasts: OrderedDict[str, datetime] = OrderedDict()
        self._handlers: dict[str, Callable[[Principal, str, Any], Any]] = {
            "eth_accounts": self._accounts,
            "eth_requestAccounts": self._accounts,
            "eth_chainId": self._chain_id_method,
            "net_version": self._net_version,
            "eth_sign": self._sign_message,
            "personal_sign": self._sign_message,
            "eth_signTypedData": self._sign_typed_data,
            "eth_signTypedData_v3": self._sign_typed_data,
            "eth_signTypedData_v4": self._sign_typed_data,
            "eth_signTransaction": self._sign_transaction,
            "eth_sendTransaction": self._send_transaction,
            "custody_getRequest": self._get_request,
            "custody_waitRequest": self._wait_request,
        }

    @property
    def custody(self) -> Custody:
        return self._custody()

    def begin_body(self) -> None:
        """Start the wait budget of the body this thread answers next ([limits] watch_seconds in all)."""
        self._body.wait_until = time.monotonic() + self._max_wait_seconds
        self._body.forwarded_bytes = 0

    def knows(self, method: str) -> bool:
        return method in self._handlers or (self._upstream is not None and method in FORWARDED_METHODS)

    def call(self, caller: Principal, method: str, call_params: list[Any] | dict[str, Any]) -> Any:
        handler = self._handlers.get(method)
        if handler is not None:
            return handler(caller, method, call_params)
        if method in FORWARDED_METHODS:
            return self._forward(caller, method, call_params)
        raise JsonRpcError(
            JSONRPC_METHOD_NOT_FOUND, f"the method {method!r} does not exist or is not offered here"
        )

    def _forward(self, caller: Principal, method: str, call_params: Any) -> Any:
        """The node's answer to an allowlisted read, for a caller that may request signatures (the node's
        reads are for the tools of those who do), within the body's answer budget."""
        upstream = self._require_upstream(method)
        caller.require(Role.REQUESTER, f"call {method} through the endpoint")
        answer = upstream.call(method, call_params)
        size = len(json.dumps(answer, separators=(",", ":")))
        used = getattr(self._body, "forwarded_bytes", 0) + size
        self._body.forwarded_bytes = used
        if used > self._max_answer_bytes:
            raise JsonRpcError(
                JSONRPC_LIMIT_EXCEEDED,
                f"the node's answers to this body's calls exceed {self._max_answer_bytes} bytes ([limits]"
                " max_message_bytes); ask for less at once (a narrower block range, fewer calls in the batch)",
            )
        return answer

    def warn_about_uncapped_fees(self) -> None:
        """Log once a warning naming the rules that let a transaction be signed without ``max_fee_wei``, when
        an upstream node fills in fees: a node that answers absurd fees would then be the only judge of them.
        Nothing when the policy cannot be read yet (the daemon waits for its token); the first fill asks again."""
        if self._upstream is None or self._fee_caps_checked:
            return
        try:
            rules = self.custody.policy.active().policy.rules
        except CustodyError:
            return
        self._fee_caps_checked = True
        uncapped = [rule.name for rule in rules if _may_sign_transactions_without_fee_cap(rule)]
        if uncapped:
            log.warning(
                "[jsonrpc] upstream fills in transaction fees, and these policy rules sign transactions without"
                " max_fee_wei, so the node alone decides what they pay in fees: %s",
                ", ".join(uncapped),
            )

    # -- accounts and chain --------------------------------------------------------------------------------------

    def _accounts(self, caller: Principal, method: str, call_params: Any) -> list[str]:
        params.positional(call_params, method, (), required=0)
        if not caller.has(Role.REQUESTER):
            return []
        keys = sorted(self.custody.keys.list_keys(caller), key=lambda key: key.label)
        return [key.address for key in keys if key.label in caller.keys and key.state is KeyState.ACTIVE]

    def _chain_id_method(self, caller: Principal, method: str, call_params: Any) -> str:
        params.positional(call_params, method, (), required=0)
        return hex(self._chain_id(method))

    def _net_version(self, caller: Principal, method: str, call_params: Any) -> str:
        params.positional(call_params, method, (), required=0)
        if self._upstream is not None:
            return str(self._upstream.call(method, []))
        return str(self._chain_id(method))

    def _chain_id(self, method: str) -> int:
        """The chain the endpoint serves: the configured chain id, else the upstream node's (asked once). With
        both, the node's must be the configured one."""
        configured = self._config.chain_id
        if configured is not None and self._upstream is None:
            return configured
        if self._upstream_chain_id is None:
            answer = self._require_upstream(method).call("eth_chainId", [])
            self._upstream_chain_id = _upstream_quantity(answer, "eth_chainId")
        if configured is not None and self._upstream_chain_id != configured:
            # Filling in a nonce, fees or broadcasting through a node of another chain would sign for one
            # chain what another's state decided: nothing is served until the configuration is mended.
            raise ConfigurationError(
                f"[jsonrpc] chain_id is {configured}, but {UPSTREAM} is on chain {self._upstream_chain_id}"
            )
        return self._upstream_chain_id

    def _require_upstream(self, method: str) -> Upstream:
        if self._upstream is None:
            raise JsonRpcError(
                JSONRPC_METHOD_NOT_FOUND,
                f"the method {method!r} needs an upstream node, and none is configured ([jsonrpc] upstream)",
            )
        return self._upstream

    def _key_for(self, caller: Principal, address: str) -> str:
        """The label of the key ``caller`` may request signatures from whose address is ``address``;
        PermissionDenied (4100) when there is none, without saying whether a key of another identity has that
        address. Whether the key may sign now (frozen, say) is the use case's to say."""
        refusal = PermissionDenied(
            f"{caller.name} may not use {address}: it is not the address of a key granted to it"
        )
        caller.require(Role.REQUESTER, f"request signatures from {address}")
        label = self._labels_by_address.get(address)
        if label is None and not self._recently_unknown(address):
            # Read outside the lock: a call naming an address of no key must not hold up every other caller.
            keys = self.custody.keys.list_keys(caller)
            with self._lock:
                for key in keys:
                    self._labels_by_address[key.address] = key.label
                label = self._labels_by_address.get(address)
                if label is None:
                    self._unknown_addresses[address] = time.monotonic() + UNKNOWN_ADDRESS_SECONDS
                    while len(self._unknown_addresses) > MAX_UNKNOWN_ADDRESSES:
                        self._unknown_addresses.popitem(last=False)
        if label is None or label not in caller.keys:
            raise refusal
        return label

    def _recently_unknown(self, address: str) -> bool:
        """Whether ``address`` was found to be no key's address less than UNKNOWN_ADDRESS_SECONDS ago (a key
        created since is found once that time is over)."""
        with self._lock:
            until = self._unknown_addresses.get(address)
            if until is not None and until <= time.monotonic():
                del self._unknown_addresses[address]
                until = None
        return until is not None

    # -- signing ---------------------------------------------------------------------------------------------

    def _sign_message(self, caller: Principal, method: str, call_params: Any) -> str:
        data, signer = params.message_and_address(call_params, method, address_first=method == "eth_sign")
        key_label = self._key_for(caller, signer)
        signed = self._sign(caller, key_label, PayloadKind.MESSAGE, data, lambda: data)
        return "0x" + _signature(signed).hex()

    def _sign_typed_data(self, caller: Principal, method: str, call_params: Any) -> str:
        payload, signer = params.typed_data_and_address(call_params, method)
        key_label = self._key_for(caller, signer)
        signed = self._sign(
            caller, key_label, PayloadKind.TYPED_DATA, _typed_data_identity(payload), lambda: payload
        )
        return "0x" + _signature(signed).hex()

    def _sign_transaction(self, caller: Principal, method: str, call_params: Any) -> str:
        _, signed_tx, _ = self._signed_transaction(caller, method, call_params)
        return "0x" + signed_tx.hex()

    def _send_transaction(self, caller: Principal, method: str, call_params: Any) -> str:
        upstream = self._require_upstream(method)
        request_id, signed_tx, tx_hash_bytes = self._signed_transaction(caller, method, call_params)
        raw_hex = "0x" + signed_tx.hex()
        tx_hash = "0x" + tx_hash_bytes.hex()
        try:
            upstream.call("eth_sendRawTransaction", [raw_hex])
        except UpstreamError as refused:
            # Sending the same call again after a broadcast, or a node that already had the transaction from
            # another path, is no failure: the node knowing the transaction is what counts, not its words.
            if _node_knows(upstream, tx_hash):
                self._forget_unknown_broadcast(request_id)
                return tx_hash
            raise JsonRpcError(
                refused.code,
                f"the transaction was signed but {UPSTREAM} refused it: {refused.message}",
                {"tx_hash": tx_hash, "signed_tx": raw_hex, "request_id": request_id},
            ) from None
        except Unavailable:
            # A timeout, a reset or an empty 5xx may come after the node took the transaction: "try again"
            # would let a call without a nonce sign a second payment. The caller learns the transaction it
            # must look for (or broadcast itself) instead, and the same call again is answered with it.
            with self._lock:
                self._unknown_broadcasts[request_id] = self._clock()
                self._unknown_broadcasts.move_to_end(request_id)
                while len(self._unknown_broadcasts) > MAX_UNKNOWN_BROADCASTS:
                    self._unknown_broadcasts.popitem(last=False)
            raise JsonRpcError(
                JSONRPC_BROADCAST_UNKNOWN,
                f"the transaction was signed, but whether {UPSTREAM} received it is unknown: look for tx_hash"
                " before sending anything again, or broadcast signed_tx with eth_sendRawTransaction",
                {"tx_hash": tx_hash, "signed_tx": raw_hex, "request_id": request_id},
            ) from None
        self._forget_unknown_broadcast(request_id)
        return tx_hash

    def _forget_unknown_broadcast(self, request_id: str) -> None:
        """The node has the transaction: a later identical call is a new payment, not this one's retry."""
        with self._lock:
            self._unknown_broadcasts.pop(request_id, None)

    def _signed_transaction(
        self, caller: Principal, method: str, call_params: Any
    ) -> tuple[str, bytes, bytes]:
        """The request id, signed encoding and hash of the transaction of eth_signTransaction or
        eth_sendTransaction."""
        transaction = params.transaction(call_params, method)
        key_label = self._key_for(caller, transaction.sender)
        request = self._sign(
            caller,
            key_label,
            PayloadKind.TRANSACTION,
            _payload(transaction.fields),
            lambda: self._complete(caller, key_label, transaction, method),
        )
        result = request.result
        # A signed transaction request always carries its encoding and hash.
        assert result is not None and result.signed_tx is not None and result.tx_hash is not None
        return request.request_id, result.signed_tx, result.tx_hash

    def _sign(
        self, caller: Principal, key_label: str, kind: PayloadKind, call: bytes, payload: Callable[[], bytes]
    ) -> SigningRequest:
        """The SIGNED request of the payload ``payload()`` gives, submitted now or found from an identical
        earlier call; the error that says why it is not signed otherwise.

        ``call`` is what identifies the call: the message or typed data, or the transaction fields the caller
        gave. A call answered "pending" is remembered, so that the same call again answers from its request:
        the signature once signed, "rejected" (or expired, cancelled) once, after which the call is new.
        """
        remembered_as = (caller.name, key_label, kind, hashlib.sha256(call).digest())
        with self._lock:
            remembered = self._pending_calls.get(remembered_as)
        request = self.custody.signing.get(caller, remembered) if remembered is not None else None
        if request is not None and (self._ended_long_ago(request) or self._already_sent(request)):
            # A request that ended long ago answers no call: the same call now is a new one, which the policy
            # as it is now decides. A remembered transaction that was broadcast (by this endpoint or the
            # caller) is a new payment, which must not be answered with the old hash.
            request = None
        if request is None:
            request = self.custody.signing.submit(caller, key_label, kind, payload())
        with self._lock:
            if request.state in (RequestState.PENDING_APPROVAL, RequestState.APPROVED):
                self._pending_calls[remembered_as] = request.request_id
                while len(self._pending_calls) > MAX_REMEMBERED_PENDING_CALLS:
                    self._pending_calls.popitem(last=False)
            else:
                self._pending_calls.pop(remembered_as, None)
        self._require_signed(request)
        return request

    def _ended_long_ago(self, request: SigningRequest) -> bool:
        return request.is_final and self._clock() - request.updated_at > REMEMBERED_ANSWER_WINDOW

    def _already_sent(self, request: SigningRequest) -> bool:
        """Whether ``request`` is a signed transaction whose nonce the node's pending nonce has passed. Without
        an upstream node a call must give the nonce itself, and the use case answers the held nonce's request."""
        if request.kind is not PayloadKind.TRANSACTION or request.state is not RequestState.SIGNED:
            return False
        if self._upstream is None or request.result is None or request.result.signed_tx is None:
            return False
        sender = self._address_of(request.key_label)
        if sender is None:
            return False
        pending = self._upstream.call("eth_getTransactionCount", [sender, "pending"])
        return int(json.loads(request.payload)["nonce"], 16) < _upstream_quantity(pending, "nonce")

    def _address_of(self, key_label: str) -> str | None:
        with self._lock:
            for address, label in self._labels_by_address.items():
                if label == key_label:
                    return address
        return None

    def _require_signed(self, request: SigningRequest) -> None:
        """Nothing for a SIGNED request; the error that says why there is no signature otherwise."""
        state = request.state
        data = {"request_id": request.request_id, "state": state.value}
        if state is RequestState.SIGNED and request.result is not None:
            return
        if state in (RequestState.PENDING_APPROVAL, RequestState.APPROVED):
            progress = self.custody.signing.view(request).progress
            waiting_for = f" ({progress.describe()})" if progress is not None else ""
            what = (
                "waits for approvals" if state is RequestState.PENDING_APPROVAL else "is approved and waits"
            )
            raise JsonRpcError(
                JSONRPC_PENDING_APPROVAL,
                f"request {request.request_id} {what}{waiting_for}; send the same call again once it is signed,"
                " or wait with custody_waitRequest",
                data,
            )
        if state is RequestState.DENIED:
            raise JsonRpcError(
                JSONRPC_POLICY_DENIED,
                f"request {request.request_id} was denied by the policy: {request.decision.reason}",
                data,
            )
        reason = f": {request.error}" if request.error else ""
        raise JsonRpcError(
            JSONRPC_NOT_SIGNED, f"request {request.request_id} ended {state.value}{reason}", data
        )

    # -- completing a transaction from the upstream node ----------------------------------------------------

    def _complete(
        self, caller: Principal, key_label: str, transaction: params.RpcTransaction, method: str
    ) -> bytes:
        """The transaction payload, with what the caller left out filled in: the chain id (configured, or the
        upstream node's), and from the upstream node the pending nonce, fees and a gas estimate.

        A call that left fields out and is sent again (after approvals) finds the earlier request whose
        fields agree with the ones it gave, so the fees filled in the meantime cannot make it a conflict.
        """
        given = transaction.fields
        fields = dict(given)
        sender = transaction.sender
        if "chainId" not in fields:
            fields["chainId"] = self._chain_id(method)
        elif self._config.chain_id is not None or method == "eth_sendTransaction":
            # The chain the endpoint serves (configured, or the node's that broadcasts) is the only one a call
            # may sign for: a caller's other chain id would make a transaction valid elsewhere.
            chain_id = parse_integer(fields["chainId"], "chainId", minimum=1, maximum=UINT256_MAX)
            served = self._chain_id(method)
            if chain_id != served:
                where = "[jsonrpc] chain_id" if self._config.chain_id is not None else UPSTREAM
                raise InvalidInput(f"is {chain_id}, but {where} is chain {served}", field="chainId")
        missing = [name for name in ("nonce", "gas") if name not in fields]
        has_fees = any(name in fields for name in ("gasPrice", "maxFeePerGas", "maxPriorityFeePerGas"))
        if not has_fees:
            missing.append("maxFeePerGas")
        elif ("maxFeePerGas" in fields) != ("maxPriorityFeePerGas" in fields):
            missing.append("maxFeePerGas" if "maxFeePerGas" not in fields else "maxPriorityFeePerGas")
        if not missing:
            return _payload(fields)
        if self._upstream is None:
            raise InvalidInput(
                "is required: no upstream node is configured ([jsonrpc] upstream) to fill it in",
                field=missing[0],
            )
        upstream = self._upstream
        if "nonce" not in fields:
            fields["nonce"] = hex(
                _upstream_quantity(upstream.call("eth_getTransactionCount", [sender, "pending"]), "nonce")
            )
        if "maxFeePerGas" in missing or "maxPriorityFeePerGas" in missing:
            self.warn_about_uncapped_fees()
            fields.update(self._fees(upstream, fields))
        if "gas" not in fields:
            estimate_call = {
                "from": sender,
                **{k: v for k, v in given.items() if k in ("to", "value", "data")},
            }
            fields["gas"] = hex(
                _upstream_quantity(upstream.call("eth_estimateGas", [estimate_call]), "eth_estimateGas")
            )
        candidate = _canonical_transaction(fields)
        if candidate is None:
            # The use case refuses it with the field that is wrong; no earlier request can be the same.
            return _payload(fields)
        earlier = self._earlier_transaction(caller, key_label, given, candidate)
        if earlier is None and "nonce" not in given:
            earlier = self._sent_transaction(caller, key_label, given, candidate, upstream)
        return earlier if earlier is not None else _payload(fields)

    def _fees(self, upstream: Upstream, fields: dict[str, Any]) -> dict[str, str]:
        # The payload parser checks the type in full; here it only tells legacy fees (0, 1) from EIP-1559's.
        declared_type = (
            parse_integer(fields["type"], "type", minimum=0, maximum=255) if "type" in fields else None
        )
        if declared_type in (0, 1) or "gasPrice" in fields:
            return {"gasPrice": hex(_upstream_quantity(upstream.call("eth_gasPrice", []), "eth_gasPrice"))}
        history = upstream.call("eth_feeHistory", ["0x1", "latest", []])
        base_fees = history.get("baseFeePerGas") if isinstance(history, dict) else None
        if not base_fees:
            if declared_type is not None or "maxFeePerGas" in fields or "maxPriorityFeePerGas" in fields:
                raise InvalidInput(
                    f"is an EIP-1559 field, and {UPSTREAM} reports no base fee (a chain without EIP-1559)",
                    field="maxFeePerGas" if "maxFeePerGas" in fields else "type",
                )
            return {"gasPrice": hex(_upstream_quantity(upstream.call("eth_gasPrice", []), "eth_gasPrice"))}
        # The last entry is the base fee of the next block, the one the transaction competes for.
        next_base_fee = _upstream_quantity(base_fees[-1], "eth_feeHistory")
        if "maxPriorityFeePerGas" in fields:
            tip = parse_integer(
                fields["maxPriorityFeePerGas"], "maxPriorityFeePerGas", minimum=0, maximum=UINT256_MAX
            )
        else:
            try:
                tip = _upstream_quantity(
                    upstream.call("eth_maxPriorityFeePerGas", []), "eth_maxPriorityFeePerGas"
                )
            except UpstreamError:
                # Nodes without the method: the legacy price less the base fee is the tip it implies.
                gas_price = _upstream_quantity(upstream.call("eth_gasPrice", []), "eth_gasPrice")
                tip = max(gas_price - next_base_fee, 0)
        fees = {"maxPriorityFeePerGas": hex(tip)}
        if "maxFeePerGas" in fields:
            max_fee = parse_integer(fields["maxFeePerGas"], "maxFeePerGas", minimum=0, maximum=UINT256_MAX)
            fees["maxPriorityFeePerGas"] = hex(min(tip, max_fee))
        else:
            fees["maxFeePerGas"] = hex(BASE_FEE_MULTIPLIER * next_base_fee + tip)
        return fees

    def _earlier_transaction(
        self, caller: Principal, key_label: str, given: dict[str, Any], candidate: dict[str, Any]
    ) -> bytes | None:
        """The payload of the caller's waiting (or signed, not yet sent) request on this key, chain and nonce
        that is the same transaction as ``candidate`` (see ``_same_transaction``); None when there is none."""
        for state in _REUSABLE_STATES:
            for request in self._own_transactions(caller, key_label, state, candidate):
                stored = json.loads(request.payload)
                if stored["nonce"] == candidate["nonce"] and _same_transaction(given, candidate, stored):
                    return request.payload
        return None

    def _sent_transaction(
        self,
        caller: Principal,
        key_label: str,
        given: dict[str, Any],
        candidate: dict[str, Any],
        upstream: Upstream,
    ) -> bytes | None:
        """For a call without a nonce sent again after its broadcast's outcome was unknown: the payload of the
        caller's newest signed request on this key and chain, the nonce just below the pending one, whose
        broadcast this endpoint answered as unknown within BROADCAST_RETRY_WINDOW, that is the same transaction
        as ``candidate`` apart from the nonce and whose transaction the node knows. Answering it (its nonce is
        already used, so the use case answers its signature) keeps the retry from signing a second payment;
        None when there is no such request, so the same payment made again after a broadcast that succeeded is
        signed anew."""
        pending_nonce = int(candidate["nonce"], 16)
        for request in self._own_transactions(caller, key_label, RequestState.SIGNED, candidate):
            stored = json.loads(request.payload)
            if int(stored["nonce"], 16) != pending_nonce - 1:
                # Only the transaction sent last can be the one whose broadcast this call retries.
                return None
            if not _same_transaction(given, candidate, stored, also_ignoring=frozenset({"nonce"})):
                return None
            if request.result is None or request.result.tx_hash is None:
                return None
            with self._lock:
                unknown_since = self._unknown_broadcasts.get(request.request_id)
            if unknown_since is None or self._clock() - unknown_since > BROADCAST_RETRY_WINDOW:
                return None
            if not _node_knows(upstream, "0x" + request.result.tx_hash.hex()):
                return None
            return request.payload
        return None

    def _own_transactions(
        self, caller: Principal, key_label: str, state: RequestState, candidate: dict[str, Any]
    ) -> list[SigningRequest]:
        """The caller's transaction requests in ``state`` on this key and ``candidate``'s chain, newest first.
        Another requester's transaction on the same key is never this call's."""
        chain_id = int(candidate["chainId"], 16)
        return [
            request
            for request in self.custody.signing.list(
                caller, state=state, key_label=key_label, limit=_REUSABLE_LOOKUP_LIMIT
            )
            if request.requester == caller.name
            and request.kind is PayloadKind.TRANSACTION
            and request.chain_id == chain_id
        ]

    # -- requests --------------------------------------------------------------------------------------------

    def _get_request(self, caller: Principal, method: str, call_params: Any) -> dict[str, Any]:
        request_id, _ = params.request_id(call_params, method, with_timeout=False)
        return request_json(self.custody.signing.get(caller, request_id))

    def _wait_request(self, caller: Principal, method: str, call_params: Any) -> dict[str, Any]:
        request_id, timeout = params.request_id(call_params, method, with_timeout=True)
        # A wait holds one of the endpoint's threads, so it is bounded like a gRPC watch ([limits] watch_seconds),
        # for the whole body it is part of.
        body_ends = getattr(self._body, "wait_until", time.monotonic() + self._max_wait_seconds)
        deadline = min(time.monotonic() + timeout, body_ends)
        updates = self.custody.signing.watch(caller, request_id, lambda: time.monotonic() < deadline)
        latest = next(updates)  # watch yields the request as it is now first
        for latest in updates:  # noqa: B007 -- the last update is the answer
            pass
        return request_json(latest)


def request_json(request: SigningRequest) -> dict[str, Any]:
    """A request as custody_getRequest answers it: the names of the CLI's --json output."""
    answer: dict[str, Any] = {
        "request_id": request.request_id,
        "state": request.state.value,
        "key": request.key_label,
        "kind": request.kind.value,
        "chain_id": request.chain_id,
        "digest": "0x" + request.digest.hex(),
    }
    if request.result is not None:
        answer["signature"] = "0x" + request.result.signature.hex()
        if request.result.signed_tx is not None:
            answer["signed_tx"] = "0x" + request.result.signed_tx.hex()
        if request.result.tx_hash is not None:
            answer["tx_hash"] = "0x" + request.result.tx_hash.hex()
    if request.error:
        answer["error"] = request.error
    return answer


def _signature(request: SigningRequest) -> bytes:
    # _sign answers only SIGNED requests, which always carry their signature.
    assert request.result is not None
    return request.result.signature


def _typed_data_identity(payload: bytes) -> bytes:
    """What makes two typed data calls the same call: the same JSON document, whether it came as an object or
    as a string, in whatever key order (the payload itself when it is no JSON, which submit then refuses)."""
    try:
        # The strict reader submit uses (duplicate keys refused): a document it would read otherwise must not
        # share an identity with one it reads as this.
        return canonical_payload(load_json_object(payload, "typed data"))
    except (InvalidInput, TypeError, ValueError):
        return payload


def _node_knows(upstream: Upstream, tx_hash: str) -> bool:
    """Whether the node has the transaction; False when it cannot say, so that its refusal is what the caller
    hears."""
    try:
        return upstream.call("eth_getTransactionByHash", [tx_hash]) is not None
    except (UpstreamError, Unavailable):
        return False


def _payload(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, separators=(",", ":")).encode("utf-8")


def _upstream_quantity(value: Any, what: str) -> int:
    """A quantity the upstream node answered; a malformed one is the node's fault, not the caller's."""
    try:
        return parse_integer(value, what, minimum=0, maximum=UINT256_MAX)
    except InvalidInput:
        raise Unavailable(f"{UPSTREAM} answered {what} with something that is not a quantity") from None


def _may_sign_transactions_without_fee_cap(rule: Rule) -> bool:
    if rule.action is DecisionAction.DENY:
        return False
    kinds = next((c.kinds for c in rule.conditions if isinstance(c, KindCondition)), None)
    if kinds is not None and PayloadKind.TRANSACTION not in kinds:
        return False
    return not any(isinstance(condition, MaxFeeCondition) for condition in rule.conditions)


def _canonical_transaction(fields: dict[str, Any]) -> dict[str, Any] | None:
    """The transaction as the use case stores it (every default spelled out: no ``to`` for a contract
    creation, value 0, empty data and access list, the type the fields imply); None when it does not parse."""
    try:
        parsed: dict[str, Any] = json.loads(parse_transaction(fields).canonical)
    except InvalidInput:
        return None
    return parsed


def _same_transaction(
    given: dict[str, Any],
    candidate: dict[str, Any],
    stored: dict[str, Any],
    *,
    also_ignoring: frozenset[str] = frozenset(),
) -> bool:
    """Whether a stored (canonical) transaction is the one a call describes. Only the fields the node fills in
    and the caller left out may differ (the fees and gas estimate move between calls); every other field, given
    or left to its default, must be equal: leaving ``value`` out means 0, not "any value"."""
    may_differ = (NODE_FILLED_FIELDS - given.keys()) | also_ignoring
    return all(
        candidate.get(name) == stored.get(name) for name in (candidate.keys() | stored.keys()) - may_differ
    )
