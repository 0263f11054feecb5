"""The JSON-RPC methods over the real use cases in process: how a call the policy holds for approvals is
answered again, what custody_waitRequest answers, which addresses eth_accounts lists.

The methods are custody/jsonrpc/methods.py as the endpoint builds them, over an ``App`` (a real SQLite file
and SoftHSM2 token, the development policy, a clock the test moves). Signatures are recovered with eth-account.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.typed_transactions import TypedTransaction
from eth_utils import keccak
from hexbytes import HexBytes

from custody.api.errors import jsonrpc_error_for
from custody.config import JsonRpcConfig
from custody.domain.errors import CustodyError
from custody.domain.principals import Principal, Role
from custody.domain.requests import RequestState
from custody.jsonrpc.methods import JsonRpcMethods
from custody.jsonrpc.protocol import JsonRpcError
from custody.jsonrpc.upstream import Upstream
from tests.e2e.jsonrpc_support import AnswerLost, UpstreamNode
from tests.evm_payloads import safe_tx

from .conftest import ADMIN, BACKEND, CAROL, DAVE, SEPOLIA, App, AppFactory

RECIPIENT = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


def methods_for(app: App) -> JsonRpcMethods:
    return JsonRpcMethods(
        lambda: app.custody, JsonRpcConfig(chain_id=SEPOLIA), upstream=None, max_wait_seconds=5.0
    )


def call(methods: JsonRpcMethods, caller: Principal, method: str, *params: Any) -> Any:
    """The result, or the JsonRpcError the endpoint would answer (custody errors through its table)."""
    try:
        return methods.call(caller, method, list(params))
    except JsonRpcError as error:
        return error
    except CustodyError as error:
        code, message = jsonrpc_error_for(error)
        return JsonRpcError(code, message)


def treasury_safe_tx(nonce: int) -> dict[str, Any]:
    """A CALL of 0.1 ether from the development policy's example Safe, which treasury signs as an owner once
    2 of alice, bob and carol approve."""
    return safe_tx(RECIPIENT, b"", 0, value=10**17, nonce=nonce, chain_id=SEPOLIA)


@pytest.fixture
def app(make_app: AppFactory) -> App:
    return make_app()


def test_typed_data_held_for_approvals_answers_the_same_request_until_it_is_signed(app: App) -> None:
    methods = methods_for(app)
    treasury = app.keys["treasury"].address
    typed = treasury_safe_tx(nonce=7)

    pending = call(methods, BACKEND, "eth_signTypedData_v4", treasury, typed)
    assert isinstance(pending, JsonRpcError) and pending.code == -32010
    request_id = pending.data["request_id"]
    assert pending.data == {"request_id": request_id, "state": "PENDING_APPROVAL"}
    again = call(methods, BACKEND, "eth_signTypedData_v4", treasury, json.dumps(typed))
    # The same typed data, as a JSON string this time, but another call: only the identical call is the same.
    assert isinstance(again, JsonRpcError) and again.code == -32010
    assert call(methods, BACKEND, "eth_signTypedData_v4", treasury, typed).data["request_id"] == request_id
    pending_ids = {
        request.request_id for request in app.custody.signing.list(ADMIN, state=RequestState.PENDING_APPROVAL)
    }
    assert request_id in pending_ids

    request = app.get(request_id)
    app.approve(request, "alice")
    app.approve(app.get(request_id), "bob")
    assert app.get(request_id).state is RequestState.SIGNED

    signature = call(methods, BACKEND, "eth_signTypedData_v4", treasury, typed)
    signed = bytes.fromhex(signature.removeprefix("0x"))
    assert Account.recover_message(encode_typed_data(full_message=typed), signature=signed) == treasury
    assert signed == app.get(request_id).result.signature


def test_a_rejected_call_answers_32014_once_and_then_is_a_new_request(app: App) -> None:
    methods = methods_for(app)
    treasury = app.keys["treasury"].address
    typed = treasury_safe_tx(nonce=8)
    request_id = call(methods, BACKEND, "eth_signTypedData_v4", treasury, typed).data["request_id"]
    app.reject(app.get(request_id), "alice", "not this Safe transaction")

    rejected = call(methods, BACKEND, "eth_signTypedData_v4", treasury, typed)
    assert rejected.code == -32014
    assert rejected.data == {"request_id": request_id, "state": "REJECTED"}
    asked_again = call(methods, BACKEND, "eth_signTypedData_v4", treasury, typed)
    assert asked_again.code == -32010 and asked_again.data["request_id"] != request_id


def test_a_transaction_held_for_approvals_is_found_by_its_nonce_without_the_endpoints_memory(
    app: App,
) -> None:
    transaction = {
        "from": app.keys["treasury"].address,
        "to": RECIPIENT,
        "value": hex(10**17),
        "gas": hex(21_000),
        "maxFeePerGas": hex(30 * 10**9),
        "maxPriorityFeePerGas": hex(10**9),
        "nonce": hex(app.nonce()),
    }
    request_id = call(methods_for(app), BACKEND, "eth_signTransaction", transaction).data["request_id"]
    app.approve(app.get(request_id), "alice")
    app.approve(app.get(request_id), "carol")
    # A new endpoint, as after a restart: the use case answers the held nonce's request.
    raw = call(methods_for(app), BACKEND, "eth_signTransaction", transaction)
    assert Account.recover_transaction(bytes.fromhex(raw[2:])) == transaction["from"]
    assert bytes.fromhex(raw[2:]) == app.get(request_id).result.signed_tx


def test_custody_wait_request_answers_the_request_as_it_is_when_the_time_is_up(app: App) -> None:
    methods = methods_for(app)
    treasury = app.keys["treasury"].address
    request_id = call(methods, BACKEND, "eth_signTypedData_v4", treasury, treasury_safe_tx(nonce=9)).data[
        "request_id"
    ]
    waited = call(methods, BACKEND, "custody_waitRequest", request_id, 0)
    assert waited["request_id"] == request_id and waited["state"] == "PENDING_APPROVAL"
    assert "signature" not in waited
    # Someone who may not see the request learns nothing of it.
    ops_only = Principal("ops-service", frozenset({Role.REQUESTER}), frozenset({"ops"}))
    assert call(methods, ops_only, "custody_getRequest", request_id).code == -32001
    app.approve(app.get(request_id), "alice")
    app.approve(app.get(request_id), "bob")
    signed = call(methods, BACKEND, "custody_waitRequest", request_id, 1000)
    assert signed["state"] == "SIGNED" and signed["signature"].startswith("0x")


def test_the_waits_of_one_body_share_one_budget(app: App) -> None:
    treasury = app.keys["treasury"].address
    methods = JsonRpcMethods(
        lambda: app.custody, JsonRpcConfig(chain_id=SEPOLIA), upstream=None, max_wait_seconds=0.0
    )
    request_id = call(methods, BACKEND, "eth_signTypedData_v4", treasury, treasury_safe_tx(nonce=10)).data[
        "request_id"
    ]
    methods.begin_body()
    # However long a call asks to wait, the body's budget (here none) decides: the request as it is now.
    for _ in range(3):
        assert call(methods, BACKEND, "custody_waitRequest", request_id, 10**6)["state"] == "PENDING_APPROVAL"


def test_eth_accounts_lists_the_active_keys_granted_to_the_caller(app: App) -> None:
    methods = methods_for(app)
    ops, treasury = app.keys["ops"].address, app.keys["treasury"].address
    assert sorted(call(methods, BACKEND, "eth_accounts")) == sorted([ops, treasury])
    assert call(methods, CAROL, "eth_accounts") == [treasury]
    assert call(methods, ADMIN, "eth_accounts") == []
    app.custody.keys.freeze(DAVE, "ops", "incident drill")
    assert call(methods, BACKEND, "eth_accounts") == [treasury]
    frozen = call(methods, BACKEND, "personal_sign", "0x6869", ops)
    assert frozen.code == -32012


def test_the_chain_id_comes_from_the_configuration_without_an_upstream_node(app: App) -> None:
    methods = methods_for(app)
    assert call(methods, BACKEND, "eth_chainId") == hex(SEPOLIA)
    assert call(methods, BACKEND, "net_version") == str(SEPOLIA)
    no_chain = JsonRpcMethods(lambda: app.custody, JsonRpcConfig(), upstream=None, max_wait_seconds=5.0)
    assert call(no_chain, BACKEND, "eth_chainId").code == -32601
    assert call(no_chain, BACKEND, "eth_getBalance", RECIPIENT, "latest").code == -32601
    missing = call(
        methods,
        BACKEND,
        "eth_signTransaction",
        {"from": app.keys["ops"].address, "to": RECIPIENT, "nonce": "0x1", "gas": "0x5208"},
    )
    assert missing.code == -32602 and "maxFeePerGas" in missing.message and "upstream" in missing.message


# -- calls that leave fields to an upstream node ----------------------------------------------------------------


class BroadcastOutcomeUnknownNode(UpstreamNode):
    """A node that takes a transaction (its pending nonce moves on) but answers eth_sendRawTransaction with an
    empty HTTP 502 while ``broadcast_fails`` is set, as a gateway does when the node behind it is slow."""

    broadcast_fails = True

    def answer(self, method: str, params: list[Any]) -> Any:
        answer = super().answer(method, params)
        if method == "eth_sendRawTransaction":
            self.pending_nonce += 1
            if self.broadcast_fails:
                raise AnswerLost
        return answer


@pytest.fixture
def node() -> Iterator[BroadcastOutcomeUnknownNode]:
    started = BroadcastOutcomeUnknownNode(gas_estimate=60_000)
    started.broadcast_fails = False
    started.start()
    yield started
    started.stop()


def methods_with_node(app: App, node: UpstreamNode, *, max_answer_bytes: int = 1024 * 1024) -> JsonRpcMethods:
    return JsonRpcMethods(
        lambda: app.custody,
        JsonRpcConfig(chain_id=SEPOLIA),
        upstream=Upstream(node.url, timeout=5.0),
        max_wait_seconds=5.0,
        max_answer_bytes=max_answer_bytes,
        clock=app.clock,
    )


TOKEN = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"
# transfer(RECIPIENT, 10**18): an ERC-20 transfer, which the treasury rule holds for approvals.
ERC20_TRANSFER = "0xa9059cbb" + RECIPIENT[2:].lower().rjust(64, "0") + hex(10**18)[2:].rjust(64, "0")
# Each case: the first call's fields (besides from), and the field the second call leaves out. Left out, a
# field takes its JSON-RPC default (no to: a contract creation; value 0; empty data and access list; the type
# the fee fields imply), never "whatever the earlier request had".
LEFT_OUT_FIELDS = {
    "value": {"to": RECIPIENT, "value": hex(10**17)},
    "to": {"to": RECIPIENT, "value": hex(0)},
    "data": {"to": TOKEN, "data": ERC20_TRANSFER},
    "accessList": {"to": RECIPIENT, "accessList": [{"address": RECIPIENT, "storageKeys": []}]},
    "type": {"to": RECIPIENT, "type": "0x0"},
}


@pytest.mark.parametrize("left_out", sorted(LEFT_OUT_FIELDS))
@pytest.mark.parametrize("method", ["eth_signTransaction", "eth_sendTransaction"])
def test_a_call_leaving_a_field_out_is_not_answered_from_a_request_that_has_one(
    app: App, node: BroadcastOutcomeUnknownNode, left_out: str, method: str
) -> None:
    methods = methods_with_node(app, node)
    treasury = app.keys["treasury"].address
    node.pending_nonce = app.nonce()
    first = {"from": treasury, **LEFT_OUT_FIELDS[left_out]}
    held = call(methods, BACKEND, method, first)
    assert isinstance(held, JsonRpcError) and held.code == -32010, held
    request_id = held.data["request_id"]
    stored = app.get(request_id).payload

    second = {name: value for name, value in first.items() if name != left_out}
    answered = call(methods, BACKEND, method, second)
    assert not isinstance(answered, str), "the call left a field out and was answered a signature"
    assert answered.data is None or answered.data.get("request_id") != request_id, answered

    app.approve(app.get(request_id), "alice")
    app.approve(app.get(request_id), "carol")
    assert app.get(request_id).state is RequestState.SIGNED
    after_approval = call(methods, BACKEND, method, second)
    assert not isinstance(after_approval, str), "the approved request was answered to another call"
    assert node.broadcast == [] and app.get(request_id).payload == stored
    # The call as it was first sent still finds its request, even with the fees moved meanwhile.
    node.next_base_fee += 10**9
    signed = call(methods, BACKEND, method, first)
    raw = app.get(request_id).result.signed_tx
    assert Account.recover_transaction(raw) == treasury
    assert signed in ("0x" + raw.hex(), "0x" + app.get(request_id).result.tx_hash.hex())


def test_a_call_giving_only_what_the_node_fills_in_finds_its_request_with_the_fees_moved(
    app: App, node: BroadcastOutcomeUnknownNode
) -> None:
    methods = methods_with_node(app, node)
    treasury = app.keys["treasury"].address
    node.pending_nonce = app.nonce()
    first = {"from": treasury, "to": RECIPIENT, "value": hex(10**17), "gas": hex(60_000)}
    request_id = call(methods, BACKEND, "eth_signTransaction", first).data["request_id"]
    node.next_base_fee += 10**9
    # Spelled otherwise (another call for the endpoint's memory), the same transaction: the same request.
    again = {"from": treasury, "to": RECIPIENT.lower(), "value": 10**17, "gasLimit": 60_000, "data": "0x"}
    assert call(methods, BACKEND, "eth_signTransaction", again).data["request_id"] == request_id
    # A gas limit the caller gave is its own, not the node's to fill: another transaction for the same nonce.
    other_gas = {**first, "gas": hex(70_000)}
    assert call(methods, BACKEND, "eth_signTransaction", other_gas).code == -32013


def test_a_broadcast_whose_outcome_is_unknown_answers_the_signed_transaction_and_a_retry_signs_no_second(
    app: App, node: BroadcastOutcomeUnknownNode
) -> None:
    methods = methods_with_node(app, node)
    ops = app.keys["ops"].address
    node.pending_nonce = app.nonce()
    payment = {"from": ops, "to": RECIPIENT, "value": hex(10**15)}
    node.broadcast_fails = True
    unknown = call(methods, BACKEND, "eth_sendTransaction", payment)
    assert isinstance(unknown, JsonRpcError) and unknown.code == -32016, unknown
    assert set(unknown.data) == {"tx_hash", "signed_tx", "request_id"}
    raw = bytes.fromhex(unknown.data["signed_tx"].removeprefix("0x"))
    assert Account.recover_transaction(raw) == ops
    assert unknown.data["tx_hash"] == "0x" + keccak(raw).hex()
    assert app.get(unknown.data["request_id"]).result.signed_tx == raw
    assert node.broadcast == [raw]

    # The caller sends the same call again, as it would after "try again": the node knows the transaction, so
    # the answer is its hash, and nothing new is signed for the next nonce.
    node.broadcast_fails = False
    requests_before = len(app.custody.signing.list(ADMIN, limit=100))
    assert call(methods, BACKEND, "eth_sendTransaction", payment) == unknown.data["tx_hash"]
    assert len(app.custody.signing.list(ADMIN, limit=100)) == requests_before
    assert {bytes(sent) for sent in node.broadcast} == {raw}

    # Another payment (another value) is signed as a new transaction on the next nonce.
    other = call(methods, BACKEND, "eth_sendTransaction", {**payment, "value": hex(2 * 10**15)})
    assert isinstance(other, str) and other != unknown.data["tx_hash"]
    second = node.broadcast[-1]
    assert Account.recover_transaction(second) == ops
    assert TypedTransaction.from_bytes(HexBytes(second)).as_dict()["nonce"] == node.pending_nonce - 1


def test_the_same_payment_after_the_retry_window_is_a_new_payment(
    app: App, node: BroadcastOutcomeUnknownNode
) -> None:
    methods = methods_with_node(app, node)
    ops = app.keys["ops"].address
    node.pending_nonce = app.nonce()
    payment = {"from": ops, "to": RECIPIENT, "value": hex(10**15)}
    node.broadcast_fails = True
    first = call(methods, BACKEND, "eth_sendTransaction", payment)
    assert isinstance(first, JsonRpcError) and first.code == -32016, first
    assert first.data["tx_hash"] == "0x" + keccak(node.broadcast[0]).hex()
    node.broadcast_fails = False
    # Ten minutes on, the same call is a recurring payment, not a retry of the first broadcast.
    app.clock.advance(11 * 60)
    later = call(methods, BACKEND, "eth_sendTransaction", payment)
    assert isinstance(later, str) and later != first.data["tx_hash"] and len(node.broadcast) == 2
    assert Account.recover_transaction(node.broadcast[1]) == ops
    assert (
        TypedTransaction.from_bytes(HexBytes(node.broadcast[1])).as_dict()["nonce"] == node.pending_nonce - 1
    )


def test_the_same_payment_sent_twice_after_broadcasts_that_succeeded_is_paid_twice(
    app: App, node: BroadcastOutcomeUnknownNode
) -> None:
    """Two identical transfers in a row (two tools, or a script paying twice on purpose) are two payments: only
    a broadcast answered as unknown makes the same call again a retry."""
    methods = methods_with_node(app, node)
    ops = app.keys["ops"].address
    node.pending_nonce = app.nonce()
    payment = {"from": ops, "to": RECIPIENT, "value": hex(10**15)}
    first = call(methods, BACKEND, "eth_sendTransaction", payment)
    second = call(methods, BACKEND, "eth_sendTransaction", payment)
    assert isinstance(first, str) and isinstance(second, str) and first != second
    assert [("0x" + keccak(raw).hex()) for raw in node.broadcast] == [first, second]
    nonces = [TypedTransaction.from_bytes(HexBytes(raw)).as_dict()["nonce"] for raw in node.broadcast]
    assert nonces == [node.pending_nonce - 2, node.pending_nonce - 1]
    assert all(Account.recover_transaction(raw) == ops for raw in node.broadcast)


def test_a_signed_transaction_the_caller_broadcast_is_not_the_answer_to_the_same_call_later(
    app: App, node: BroadcastOutcomeUnknownNode
) -> None:
    methods = methods_with_node(app, node)
    treasury = app.keys["treasury"].address
    node.pending_nonce = app.nonce()
    payment = {"from": treasury, "to": RECIPIENT, "value": hex(10**17)}
    request_id = call(methods, BACKEND, "eth_signTransaction", payment).data["request_id"]
    app.approve(app.get(request_id), "alice")
    app.approve(app.get(request_id), "carol")
    # The caller waits for the signature and broadcasts it itself, never sending the call again.
    signed_tx = call(methods, BACKEND, "custody_waitRequest", request_id, 0)["signed_tx"]
    assert Account.recover_transaction(signed_tx) == treasury
    call(methods, BACKEND, "eth_sendRawTransaction", signed_tx)
    assert node.broadcast == [bytes.fromhex(signed_tx[2:])]

    # The next month's identical payment is a new request on the next nonce, not last month's transaction.
    app.clock.advance(30 * 24 * 3600)
    next_month = call(methods, BACKEND, "eth_signTransaction", payment)
    assert isinstance(next_month, JsonRpcError) and next_month.code == -32010, next_month
    new_request = app.get(next_month.data["request_id"])
    assert new_request.request_id != request_id
    assert int(json.loads(new_request.payload)["nonce"], 16) == node.pending_nonce


def test_typed_data_with_a_duplicate_key_is_refused_not_answered_from_the_remembered_call(app: App) -> None:
    methods = methods_for(app)
    treasury = app.keys["treasury"].address
    typed = treasury_safe_tx(nonce=11)
    request_id = call(methods, BACKEND, "eth_signTypedData_v4", treasury, typed).data["request_id"]
    document = json.dumps(typed)
    # The same document with "primaryType" given twice: a lax reader keeps the last, the strict one refuses it.
    duplicated = document.replace('"primaryType":', '"primaryType": "EIP712Domain", "primaryType":', 1)
    assert duplicated != document
    refused = call(methods, BACKEND, "eth_signTypedData_v4", treasury, duplicated)
    assert isinstance(refused, JsonRpcError) and refused.code == -32602, refused
    assert app.get(request_id).state is RequestState.PENDING_APPROVAL


def test_forwarded_reads_need_the_requester_role_and_a_body_gets_at_most_its_answer_budget(
    app: App, node: BroadcastOutcomeUnknownNode
) -> None:
    block = node.answer("eth_getBlockByNumber", ["latest", False])
    one_answer = len(json.dumps(block, separators=(",", ":")))
    methods = methods_with_node(app, node, max_answer_bytes=one_answer + one_answer // 2)
    methods.begin_body()
    assert call(methods, BACKEND, "eth_getBlockByNumber", "latest", False) == block
    over = call(methods, BACKEND, "eth_getBlockByNumber", "latest", False)
    assert isinstance(over, JsonRpcError) and over.code == -32005 and "max_message_bytes" in over.message
    # The next body has a budget of its own.
    methods.begin_body()
    assert call(methods, BACKEND, "eth_getBlockByNumber", "latest", False) == block
    # An identity that may not request signatures does not use the node through the endpoint either.
    refused = call(methods, ADMIN, "eth_getBalance", RECIPIENT, "latest")
    assert isinstance(refused, JsonRpcError) and refused.code == 4100


def test_a_node_on_another_chain_than_the_configured_one_serves_nothing(app: App) -> None:
    mainnet = UpstreamNode(chain_id=1).start()
    try:
        methods = methods_with_node(app, mainnet)
        refused = call(methods, BACKEND, "eth_chainId")
        assert isinstance(refused, JsonRpcError) and refused.code == -32003
        assert "chain_id is 11155111" in refused.message and "chain 1" in refused.message
        payment = {"from": app.keys["ops"].address, "to": RECIPIENT, "value": hex(10**15)}
        assert call(methods, BACKEND, "eth_sendTransaction", payment).code == -32003
        assert mainnet.broadcast == []
    finally:
        mainnet.stop()


def test_a_chain_id_other_than_the_configured_one_is_refused_naming_it(app: App) -> None:
    transaction = {
        "from": app.keys["ops"].address,
        "to": RECIPIENT,
        "value": hex(10**15),
        "gas": hex(21_000),
        "maxFeePerGas": hex(30 * 10**9),
        "maxPriorityFeePerGas": hex(10**9),
        "nonce": hex(app.nonce()),
        "chainId": hex(1),
    }
    refused = call(methods_for(app), BACKEND, "eth_signTransaction", transaction)
    assert isinstance(refused, JsonRpcError) and refused.code == -32602
    assert "chainId" in refused.message and "[jsonrpc] chain_id" in refused.message
    assert app.custody.signing.list(ADMIN, limit=100) == []


def test_calls_naming_an_address_of_no_key_do_not_read_the_keys_each(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    methods = methods_for(app)
    reads = []
    list_keys = app.custody.keys.list_keys

    def counted(*args: Any, **kwargs: Any) -> Any:
        reads.append(args)
        return list_keys(*args, **kwargs)

    monkeypatch.setattr(app.custody.keys, "list_keys", counted)
    stranger = "0x" + "11" * 20
    for _ in range(20):
        assert call(methods, BACKEND, "personal_sign", "0x6869", stranger).code == 4100
    assert len(reads) == 1
    # A known key's address is still served.
    signature = call(methods, BACKEND, "personal_sign", "0x6869", app.keys["ops"].address)
    assert isinstance(signature, str)


def test_rules_signing_transactions_without_a_fee_cap_are_named_in_a_warning_when_a_node_fills_fees(
    make_app: AppFactory, node: BroadcastOutcomeUnknownNode, caplog: pytest.LogCaptureFixture
) -> None:
    capped = make_app()
    with caplog.at_level(logging.WARNING, logger="custody.jsonrpc.methods"):
        methods_with_node(capped, node).warn_about_uncapped_fees()
    assert "max_fee_wei" not in caplog.text

    # The development policy's ops rule without its fee cap.
    uncapped = make_app(
        policy=lambda document: document.replace('max_fee_wei = "50000000000000000"  # 0.05 ether\n', "", 1)
    )
    methods = methods_with_node(uncapped, node)
    with caplog.at_level(logging.WARNING, logger="custody.jsonrpc.methods"):
        methods.warn_about_uncapped_fees()
        methods.warn_about_uncapped_fees()
    warnings = [record for record in caplog.records if "max_fee_wei" in record.getMessage()]
    assert len(warnings) == 1 and "ops-transactions" in warnings[0].getMessage()
    assert "treasury-transactions" not in warnings[0].getMessage()


def test_a_call_remembered_for_a_request_that_ended_long_ago_is_a_new_call(app: App) -> None:
    methods = JsonRpcMethods(
        lambda: app.custody,
        JsonRpcConfig(chain_id=SEPOLIA),
        upstream=None,
        max_wait_seconds=5.0,
        clock=app.clock,
    )
    treasury = app.keys["treasury"].address
    typed = treasury_safe_tx(nonce=12)
    request_id = call(methods, BACKEND, "eth_signTypedData_v4", treasury, typed).data["request_id"]
    app.approve(app.get(request_id), "alice")
    app.approve(app.get(request_id), "bob")
    signed = app.get(request_id)
    assert signed.state is RequestState.SIGNED
    assert Account.recover_message(
        encode_typed_data(full_message=typed), signature=signed.result.signature
    ) == (treasury)
    # Never asked again for a day, the same call is a new request, which the policy as it is now decides.
    app.clock.advance(24 * 3600)
    again = call(methods, BACKEND, "eth_signTypedData_v4", treasury, typed)
    assert isinstance(again, JsonRpcError) and again.code == -32010
    assert again.data["request_id"] != request_id
