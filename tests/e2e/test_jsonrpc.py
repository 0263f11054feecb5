"""The JSON-RPC endpoint of a real daemon: every method, batches, authentication by certificate and by bearer
token, and the error codes, over TLS with the development environment's CA.

Every signature is checked independently: eth-account recovers the signer from the signed bytes (the message,
the typed data, the raw transaction), which must be the key's address, and s must be low.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data
from eth_account.typed_transactions import TypedTransaction
from eth_utils import keccak
from hexbytes import HexBytes

from custody.api._gen import custody_pb2 as pb
from custody.api._gen import custody_pb2_grpc as pb_grpc
from custody.config import bearer_token_hash
from tests.daemons import wait_for

from .conftest import (
    Daemon,
    Databases,
    DevEnv,
    Nonces,
    channel_for,
    make_dev_env,
    run_cli,
    start_daemon,
    stop_daemon,
)
from .jsonrpc_support import SEPOLIA, JsonRpcClient, UpstreamNode, backend_token, jsonrpc_url

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
RECIPIENT = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
MAIL_TYPED_DATA = json.loads((Path(__file__).parents[1] / "vectors" / "eip712_mail.json").read_text())[
    "typed_data"
]


def assert_low_s(signature: bytes) -> None:
    s = int.from_bytes(signature[32:64], "big")
    assert 0 < s <= SECP256K1_N // 2


def rpc_transaction(sender: str, nonce: int, value: int = 10**15, **fields: object) -> dict[str, object]:
    """An EIP-1559 transaction in JSON-RPC form (hex quantities, `input`, `gasLimit`) on Sepolia."""
    return {
        "from": sender,
        "to": RECIPIENT,
        "value": hex(value),
        "gasLimit": hex(21_000),
        "maxFeePerGas": hex(30 * 10**9),
        "maxPriorityFeePerGas": hex(10**9),
        "nonce": hex(nonce),
        "chainId": hex(SEPOLIA),
        "input": "0x",
        **fields,
    }


def stored_requests(env: DevEnv, daemon: Daemon) -> int:
    with channel_for(env, daemon, "admin") as channel:
        return len(
            pb_grpc.SigningServiceStub(channel).ListRequests(pb.ListRequestsRequest(limit=1000)).requests
        )


@pytest.fixture(scope="module")
def url(daemon: Daemon) -> str:
    return jsonrpc_url(daemon)


@pytest.fixture(scope="module")
def backend(dev_env: DevEnv, url: str) -> JsonRpcClient:
    return JsonRpcClient(dev_env, url, token=backend_token(dev_env))


@pytest.fixture(scope="module")
def ops(keys: dict[str, dict[str, str]]) -> str:
    return keys["ops"]["address"]


@pytest.fixture(scope="module")
def treasury(keys: dict[str, dict[str, str]]) -> str:
    return keys["treasury"]["address"]


# -- accounts and identities ------------------------------------------------------------------------------------


def test_eth_accounts_answers_the_keys_the_identity_may_request(
    dev_env: DevEnv, url: str, backend: JsonRpcClient, ops: str, treasury: str
) -> None:
    assert sorted(backend.call("eth_accounts").result) == sorted([ops, treasury])
    carol = JsonRpcClient(dev_env, url, identity="carol")
    assert carol.call("eth_accounts").result == [treasury]
    alice = JsonRpcClient(dev_env, url, identity="alice")  # an approver requests nothing
    assert alice.call("eth_accounts").result == []


def test_a_client_certificate_authenticates_as_for_grpc(dev_env: DevEnv, url: str, ops: str) -> None:
    backend_by_certificate = JsonRpcClient(dev_env, url, identity="backend")
    signature = backend_by_certificate.call("personal_sign", "0x" + b"by certificate".hex(), ops).result
    signed = bytes.fromhex(signature[2:])
    assert Account.recover_message(encode_defunct(b"by certificate"), signature=signed) == ops


def test_calls_without_credentials_or_with_a_wrong_token_are_refused_with_401(
    dev_env: DevEnv, daemon: Daemon, url: str, ops: str
) -> None:
    before = stored_requests(dev_env, daemon)
    for client in (
        JsonRpcClient(dev_env, url),
        JsonRpcClient(dev_env, url, token="not-the-token"),
        JsonRpcClient(dev_env, url, token=backend_token(dev_env) + "x"),
    ):
        answer = client.call("personal_sign", "0x6869", ops)
        assert answer.status == 401
        assert answer.error["code"] == -32015
        assert answer.headers.get("WWW-Authenticate", "").startswith("Bearer")
    basic = JsonRpcClient(dev_env, url).post(
        b'{"jsonrpc":"2.0","id":1,"method":"eth_accounts"}', {"Authorization": "Basic Zm9vOmJhcg=="}
    )
    assert basic.status == 401 and "Bearer TOKEN" in basic.error["message"]
    assert stored_requests(dev_env, daemon) == before


def test_an_identity_may_not_sign_with_an_address_it_is_not_granted(
    dev_env: DevEnv, daemon: Daemon, url: str, ops: str, nonces: Nonces
) -> None:
    before = stored_requests(dev_env, daemon)
    carol = JsonRpcClient(dev_env, url, identity="carol")  # granted treasury only
    for answer in (
        carol.call("personal_sign", "0x6869", ops),
        carol.call("eth_signTransaction", rpc_transaction(ops, next(nonces))),
        JsonRpcClient(dev_env, url, identity="admin").call("eth_sign", ops, "0x6869"),
        # An address of no key at all is refused in the same words: no one learns which addresses exist.
        carol.call("personal_sign", "0x6869", "0x" + "11" * 20),
    ):
        assert answer.error["code"] == 4100, answer.body
        assert "may not" in answer.error["message"]
    assert stored_requests(dev_env, daemon) == before


# -- signing methods --------------------------------------------------------------------------------------------


def test_personal_sign_and_eth_sign_sign_eip191_messages(backend: JsonRpcClient, ops: str) -> None:
    message = b"Sign in to example.org"
    for answer in (
        backend.call("personal_sign", "0x" + message.hex(), ops),
        backend.call("eth_sign", ops, "0x" + message.hex()),
    ):
        signature = bytes.fromhex(answer.result.removeprefix("0x"))
        assert len(signature) == 65 and signature[64] in (27, 28)
        assert Account.recover_message(encode_defunct(message), signature=signature) == ops
        assert_low_s(signature)


@pytest.mark.parametrize("method", ["eth_signTypedData", "eth_signTypedData_v3", "eth_signTypedData_v4"])
@pytest.mark.parametrize("as_string", [False, True])
def test_typed_data_is_signed_as_an_object_or_a_json_string(
    backend: JsonRpcClient, ops: str, method: str, as_string: bool
) -> None:
    typed_data = json.dumps(MAIL_TYPED_DATA) if as_string else MAIL_TYPED_DATA
    signature = bytes.fromhex(backend.call(method, ops, typed_data).result.removeprefix("0x"))
    signable = encode_typed_data(full_message=MAIL_TYPED_DATA)
    assert Account.recover_message(signable, signature=signature) == ops
    assert_low_s(signature)


def test_eth_sign_transaction_answers_the_raw_signed_transaction(
    backend: JsonRpcClient, ops: str, nonces: Nonces
) -> None:
    nonce = next(nonces)
    raw_hex = backend.call("eth_signTransaction", rpc_transaction(ops, nonce)).result
    raw = bytes.fromhex(raw_hex.removeprefix("0x"))
    assert Account.recover_transaction(raw) == ops
    fields = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
    assert fields["nonce"] == nonce and fields["gas"] == 21_000 and fields["chainId"] == SEPOLIA
    assert bytes(fields["to"]) == bytes.fromhex(RECIPIENT[2:]) and fields["value"] == 10**15
    assert_low_s(int(fields["r"]).to_bytes(32, "big") + int(fields["s"]).to_bytes(32, "big"))


def test_legacy_transactions_and_data_or_gas_spellings_are_accepted(
    backend: JsonRpcClient, ops: str, nonces: Nonces
) -> None:
    legacy = {
        "from": ops,
        "to": RECIPIENT,
        "value": "0x1",
        "gas": "0x5208",
        "gasPrice": hex(20 * 10**9),
        "nonce": hex(next(nonces)),
        "chainId": "0x1",
        "data": "0x",
        "input": "0x",  # both spellings, the same bytes, as some tools send them
    }
    raw = bytes.fromhex(backend.call("eth_signTransaction", legacy).result.removeprefix("0x"))
    assert raw[0] >= 0xC0  # a legacy RLP list
    assert Account.recover_transaction(raw) == ops


# -- batches and notifications ------------------------------------------------------------------------------------


def test_a_batch_answers_each_call_by_its_id_and_notifications_not_at_all(
    backend: JsonRpcClient, ops: str
) -> None:
    answer = backend.batch(
        [
            {"jsonrpc": "2.0", "id": "a", "method": "eth_accounts"},
            {"jsonrpc": "2.0", "id": 7, "method": "personal_sign", "params": ["0x6869", ops]},
            {"jsonrpc": "2.0", "method": "eth_accounts"},  # a notification
            {"jsonrpc": "2.0", "id": None, "method": "no_such_method"},
            {"jsonrpc": "1.0", "id": 9, "method": "eth_accounts"},
            17,
        ]
    )
    assert answer.status == 200
    by_id = [(entry.get("id"), entry.get("error", {}).get("code")) for entry in answer.body]
    assert by_id == [("a", None), (7, None), (None, -32601), (9, -32600), (None, -32600)]
    signature = bytes.fromhex(answer.body[1]["result"].removeprefix("0x"))
    assert Account.recover_message(encode_defunct(b"hi"), signature=signature) == ops

    only_notifications = backend.batch([{"jsonrpc": "2.0", "method": "eth_accounts"}])
    assert only_notifications.status == 204 and only_notifications.body is None


def test_a_batch_over_the_limit_is_refused_whole(
    dev_env: DevEnv, daemon: Daemon, backend: JsonRpcClient, ops: str
) -> None:
    before = stored_requests(dev_env, daemon)
    calls = [
        {"jsonrpc": "2.0", "id": index, "method": "personal_sign", "params": ["0x6869", ops]}
        for index in range(21)
    ]
    answer = backend.batch(calls)
    assert answer.error["code"] == -32600
    assert "21 calls" in answer.error["message"] and "max_batch" in answer.error["message"]
    assert backend.batch([]).error["code"] == -32600
    assert stored_requests(dev_env, daemon) == before


# -- requests and approvals ---------------------------------------------------------------------------------------


def test_a_denied_transaction_is_32011_with_the_reason(
    backend: JsonRpcClient, ops: str, nonces: Nonces
) -> None:
    answer = backend.call("eth_signTransaction", rpc_transaction(ops, next(nonces), value=2 * 10**18))
    assert answer.error["code"] == -32011
    assert "denied by the policy" in answer.error["message"]
    assert answer.error["data"]["state"] == "DENIED"


def test_a_treasury_transaction_waits_for_approvals_and_the_same_call_then_answers_it(
    dev_env: DevEnv, daemon: Daemon, url: str, backend: JsonRpcClient, treasury: str, nonces: Nonces
) -> None:
    transaction = rpc_transaction(treasury, next(nonces), value=10**17)
    pending = backend.call("eth_signTransaction", transaction)
    assert pending.error["code"] == -32010
    request_id = pending.error["data"]["request_id"]
    assert pending.error["data"]["state"] == "PENDING_APPROVAL"
    assert backend.call("custody_getRequest", request_id).result["state"] == "PENDING_APPROVAL"
    # Asked again before the quorum: the same request, still waiting.
    assert backend.call("eth_signTransaction", transaction).error["data"]["request_id"] == request_id

    for approver in ("alice", "bob"):
        run_cli(dev_env, daemon, approver, "approve", request_id, "--yes")
    waited = backend.call("custody_waitRequest", request_id, 30).result
    assert waited["state"] == "SIGNED" and waited["request_id"] == request_id

    raw_hex = backend.call("eth_signTransaction", transaction).result
    assert raw_hex == waited["signed_tx"]
    raw = bytes.fromhex(raw_hex.removeprefix("0x"))
    assert Account.recover_transaction(raw) == treasury
    assert "0x" + keccak(raw).hex() == waited["tx_hash"]
    assert_low_s(bytes.fromhex(waited["signature"].removeprefix("0x")))


def test_a_rejected_request_answers_32014(
    dev_env: DevEnv, daemon: Daemon, backend: JsonRpcClient, treasury: str, nonces: Nonces
) -> None:
    transaction = rpc_transaction(treasury, next(nonces), value=10**17)
    request_id = backend.call("eth_signTransaction", transaction).error["data"]["request_id"]
    run_cli(dev_env, daemon, "alice", "reject", request_id, "--reason", "not this week", "--yes")
    answer = backend.call("eth_signTransaction", transaction)
    assert answer.error["code"] == -32014
    assert answer.error["data"] == {"request_id": request_id, "state": "REJECTED"}


def test_a_second_payload_for_a_used_nonce_is_32013(backend: JsonRpcClient, ops: str, nonces: Nonces) -> None:
    nonce = next(nonces)
    first = backend.call("eth_signTransaction", rpc_transaction(ops, nonce, value=1))
    assert first.result.startswith("0x")
    conflict = backend.call("eth_signTransaction", rpc_transaction(ops, nonce, value=2))
    assert conflict.error["code"] == -32013
    assert f"nonce {nonce}" in conflict.error["message"]


def test_custody_get_request_of_an_unknown_id_is_not_found(backend: JsonRpcClient) -> None:
    answer = backend.call("custody_getRequest", "req_00000000000000000000000000")
    assert answer.error["code"] in (-32001, -32602)
    assert backend.call("custody_getRequest", 42).error["code"] == -32602


# -- bad input --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        (b"{not json", -32700, "not valid JSON"),
        (b"\xff\xfe", -32700, "UTF-8"),
        (b"[" * 5000 + b"]" * 5000, -32700, "deep"),
        (b'{"jsonrpc":"2.0","id":1,"method":"eth_accounts","id":2}', -32700, "more than once"),
        (b'{"jsonrpc":"2.0","id":1}', -32600, "method"),
        (b'{"jsonrpc":"2.0","id":{"a":1},"method":"eth_accounts"}', -32600, "id"),
        (b'{"jsonrpc":"2.0","id":1,"method":"eth_accounts","params":"x"}', -32600, "params"),
        (b'{"jsonrpc":"2.0","id":1,"method":"eth_accounts","extra":1}', -32600, "extra"),
        (
            b'{"jsonrpc":"2.0","id":1,"method":"admin_addPeer","params":["enode://x"]}',
            -32601,
            "admin_addPeer",
        ),
        (b'{"jsonrpc":"2.0","id":1,"method":"eth_sendTransaction","params":[{}]}', -32601, "upstream"),
    ],
)
def test_malformed_bodies_get_a_precise_error(
    backend: JsonRpcClient, body: bytes, code: int, words: str
) -> None:
    answer = backend.post(body)
    assert answer.error["code"] == code, answer.body
    assert words in answer.error["message"]


def bad_params(ops: str) -> list[tuple[str, list[object], str]]:
    tx = rpc_transaction(ops, 0)
    return [
        ("personal_sign", [ops, "0x6869"], "look like [address, data]"),
        ("eth_sign", ["0x6869", ops], "look like [data, address]"),
        ("personal_sign", ["0x6869"], "personal_sign takes [data, address]"),
        ("personal_sign", ["hello", ops], "params[0]"),
        ("personal_sign", ["0x6869", ops.lower()[:-1]], "params[1]"),
        ("personal_sign", ["0x6869", ops, "password"], "password"),
        ("eth_signTypedData_v4", [MAIL_TYPED_DATA, ops], "look like [typedData, address]"),
        ("eth_signTypedData_v4", [ops, [{"type": "string", "name": "x", "value": "y"}]], "legacy"),
        ("eth_signTypedData_v4", [ops, "{not json"], "payload"),
        ("eth_signTypedData_v4", [ops, {**MAIL_TYPED_DATA, "primaryType": "Nope"}], "primaryType"),
        ("eth_signTransaction", [{**tx, "gas": True}], "gas"),
        ("eth_signTransaction", [{**tx, "value": "-0x1"}], "value"),
        ("eth_signTransaction", [{**tx, "gasLimit": "0x5208", "gas": "0x5209"}], "gas"),
        ("eth_signTransaction", [{**tx, "input": "0x00", "data": "0x01"}], "input"),
        ("eth_signTransaction", [{**tx, "from": None}], "from"),
        ("eth_signTransaction", [{**tx, "blobs": ["0x00"]}], "blobs"),
        ("eth_signTransaction", [{**tx, "to": "0x5aaeb6053F3E94C9b9A09f33669435E7Ef1BeAed"}], "checksum"),
        ("eth_signTransaction", [{k: v for k, v in tx.items() if k != "nonce"}], "nonce"),
        ("eth_signTransaction", [tx, tx], "eth_signTransaction takes [transaction]"),
        ("eth_signTransaction", [[tx]], "params[0]"),
        ("eth_accounts", [1], "eth_accounts takes []"),
        ("custody_waitRequest", ["req_x", -1], "params[1]"),
    ]


def test_bad_parameters_are_refused_naming_what_was_wrong_and_nothing_is_stored(
    dev_env: DevEnv, daemon: Daemon, backend: JsonRpcClient, ops: str
) -> None:
    before = stored_requests(dev_env, daemon)
    failures = []
    for method, params, words in bad_params(ops):
        answer = backend.call(method, *params)
        error = answer.body.get("error") if isinstance(answer.body, dict) else None
        if error is None or error["code"] != -32602 or words not in error["message"]:
            failures.append((method, params, words, answer.body))
    assert not failures, "\n".join(map(str, failures))
    assert stored_requests(dev_env, daemon) == before


def test_a_body_over_the_message_limit_is_refused_before_it_is_read(
    dev_env: DevEnv, daemon: Daemon, backend: JsonRpcClient, ops: str
) -> None:
    before = stored_requests(dev_env, daemon)
    huge = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "personal_sign", "params": ["0x" + "61" * 300_000, ops]}
    ).encode()
    answer = backend.post(huge)
    assert answer.status == 413
    assert answer.error["code"] == -32600 and "max_message_bytes" in answer.error["message"]
    assert backend.call("eth_accounts").status == 200  # still serving
    assert stored_requests(dev_env, daemon) == before


def test_only_post_is_served(dev_env: DevEnv, url: str, backend: JsonRpcClient) -> None:
    import ssl
    import urllib.error
    import urllib.request

    context = ssl.create_default_context(cafile=str(dev_env.directory / "pki" / "ca.pem"))
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, context=context, timeout=30)
    assert refused.value.code == 405


# -- an environment with an upstream node, tokens for more identities, a freeze ----------------------------------


@pytest.fixture(scope="module")
def upstream() -> Iterator[UpstreamNode]:
    node = UpstreamNode().start()
    yield node
    node.stop()


@pytest.fixture(scope="module")
def node_env(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, upstream: UpstreamNode
) -> Iterator[tuple[DevEnv, Daemon, dict[str, str]]]:
    """A development environment of its own whose endpoint has the stand-in node as upstream, and bearer
    tokens for carol and dave too; its keys may be frozen without disturbing other tests."""

    env = make_dev_env(tmp_path_factory.mktemp("jsonrpc") / "env", "sqlite", databases)
    tokens = {
        "backend": backend_token(env),
        "carol": "carol-token-" + "x" * 20,
        "dave": "dave-token-" + "y" * 20,
    }
    text = (env.directory / "server.toml").read_text()
    text = text.replace(
        "[jsonrpc.tokens]\n",
        f"upstream = {json.dumps(upstream.url)}\n[jsonrpc.tokens]\n"
        f'carol = "{bearer_token_hash(tokens["carol"])}"\ndave = "{bearer_token_hash(tokens["dave"])}"\n',
    )
    (env.directory / "server.toml").write_text(text)
    daemon = start_daemon(env, tmp_path_factory.mktemp("logs") / "jsonrpc-daemon.log")
    for label in ("ops", "treasury"):
        run_cli(env, daemon, "admin", "keys", "create", "--label", label)
    yield env, daemon, tokens
    stop_daemon(daemon)


def _node_client(node_env: tuple[DevEnv, Daemon, dict[str, str]], identity: str) -> JsonRpcClient:
    env, daemon, tokens = node_env
    return JsonRpcClient(env, jsonrpc_url(daemon), token=tokens[identity])


def test_a_token_of_an_identity_without_the_address_is_4100(node_env) -> None:
    env, daemon, _ = node_env
    ops = json.loads(run_cli(env, daemon, "backend", "--json", "keys", "show", "ops").stdout)["address"]
    carol = _node_client(node_env, "carol")
    assert ops not in carol.call("eth_accounts").result
    assert carol.call("personal_sign", "0x6869", ops).error["code"] == 4100
    assert carol.call("eth_sendTransaction", {"from": ops, "to": RECIPIENT}).error["code"] == 4100


def test_eth_send_transaction_fills_from_the_upstream_node_and_broadcasts(
    node_env, upstream: UpstreamNode
) -> None:
    env, daemon, _ = node_env
    backend = _node_client(node_env, "backend")
    ops = json.loads(run_cli(env, daemon, "backend", "--json", "keys", "show", "ops").stdout)["address"]
    upstream.pending_nonce = 5
    tx_hash = backend.call(
        "eth_sendTransaction", {"from": ops, "to": RECIPIENT, "value": hex(10**15), "input": "0x"}
    ).result
    raw = upstream.broadcast[-1]
    assert tx_hash == "0x" + keccak(raw).hex()
    assert Account.recover_transaction(raw) == ops
    sent = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
    assert sent["chainId"] == SEPOLIA and sent["nonce"] == 5 and sent["gas"] == upstream.gas_estimate
    assert sent["maxPriorityFeePerGas"] == upstream.tip
    assert sent["maxFeePerGas"] == 2 * upstream.next_base_fee + upstream.tip
    assert_low_s(int(sent["r"]).to_bytes(32, "big") + int(sent["s"]).to_bytes(32, "big"))
    assert backend.call("eth_chainId").result == hex(SEPOLIA)
    assert backend.call("eth_blockNumber").result == "0x10"  # forwarded
    assert backend.call("debug_traceTransaction", tx_hash).error["code"] == -32601  # not forwarded


def test_eth_send_transaction_waits_for_approvals_and_the_same_call_then_broadcasts(
    node_env, upstream: UpstreamNode
) -> None:
    env, daemon, _ = node_env
    backend = _node_client(node_env, "backend")
    treasury = json.loads(run_cli(env, daemon, "backend", "--json", "keys", "show", "treasury").stdout)[
        "address"
    ]
    upstream.pending_nonce = 0
    call = {"from": treasury, "to": RECIPIENT, "value": hex(10**17)}
    pending = backend.call("eth_sendTransaction", call)
    assert pending.error["code"] == -32010
    request_id = pending.error["data"]["request_id"]
    for approver in ("alice", "bob"):
        run_cli(env, daemon, approver, "approve", request_id, "--yes")
    # The fees moved meanwhile: the call is still matched to its request, not refused as a nonce conflict.
    upstream.next_base_fee += 10**9
    sent_before = len(upstream.broadcast)
    tx_hash = backend.call("eth_sendTransaction", call).result
    assert len(upstream.broadcast) == sent_before + 1
    raw = upstream.broadcast[-1]
    assert Account.recover_transaction(raw) == treasury and tx_hash == "0x" + keccak(raw).hex()
    assert backend.call("custody_getRequest", request_id).result["tx_hash"] == tx_hash


def test_a_frozen_key_is_32012(tmp_path: Path, databases: Databases) -> None:
    # An environment of its own: the frozen key stays frozen (unfreezing needs the admin quorum).
    env = make_dev_env(tmp_path / "env", "sqlite", databases)
    daemon = start_daemon(env, tmp_path / "daemon.log")
    try:
        ops = json.loads(run_cli(env, daemon, "admin", "--json", "keys", "create", "--label", "ops").stdout)[
            "address"
        ]
        backend = JsonRpcClient(env, jsonrpc_url(daemon), token=backend_token(env))
        run_cli(env, daemon, "dave", "keys", "freeze", "ops", "--reason", "incident drill")
        answer = backend.call("personal_sign", "0x6869", ops)
        assert answer.error["code"] == -32012 and "frozen" in answer.error["message"]
        assert ops not in backend.call("eth_accounts").result
    finally:
        stop_daemon(daemon)


def test_refused_calls_reach_the_audit_log_without_the_token(node_env) -> None:
    env, daemon, tokens = node_env
    url = jsonrpc_url(daemon)
    wrong = "wrong-token-" + "z" * 30
    for _ in range(3):
        assert JsonRpcClient(env, url, token=wrong).call("eth_accounts").status == 401
    backend = _node_client(node_env, "backend")
    treasury = json.loads(run_cli(env, daemon, "backend", "--json", "keys", "show", "treasury").stdout)[
        "address"
    ]
    carol = _node_client(node_env, "dave")  # an approver: no requester role
    assert carol.call("personal_sign", "0x6869", treasury).error["code"] == 4100
    del backend

    def events(kind: str) -> list[pb.AuditEvent]:
        with channel_for(env, daemon, "admin") as channel:
            stub = pb_grpc.AuditServiceStub(channel)
            return list(stub.ListEvents(pb.ListEventsRequest(kind=kind, limit=1000)).events)

    refused = [json.loads(event.details_json) for event in events("auth.refused")]
    assert any(event["method"] == "jsonrpc" and event["error"] == "Unauthenticated" for event in refused), (
        refused
    )
    denied = [
        (event.actor, json.loads(event.details_json))
        for event in events("permission.denied")
        if event.actor == "dave"
    ]
    assert any(details["method"] == "personal_sign" for _, details in denied), denied
    exported = run_cli(env, daemon, "admin", "audit", "export").stdout
    assert wrong not in exported and tokens["dave"] not in exported
    assert wrong not in daemon.log() and tokens["dave"] not in daemon.log()


def test_calls_are_counted_by_method_and_outcome(tmp_path: Path, databases: Databases) -> None:
    import re
    import urllib.request

    env = make_dev_env(tmp_path / "env", "sqlite", databases)
    with (env.directory / "server.toml").open("a") as server_toml:
        server_toml.write('\n[metrics]\nlisten = "127.0.0.1:0"\n')
    daemon = start_daemon(env, tmp_path / "daemon.log")
    try:
        client = JsonRpcClient(env, jsonrpc_url(daemon), token=backend_token(env))
        client.call("eth_accounts")
        client.call("no_such_method")
        JsonRpcClient(env, jsonrpc_url(daemon)).call("eth_accounts")
        port = re.search(r"metrics listening on 127\.0\.0\.1:(\d+)", daemon.log())
        assert port is not None
        text = urllib.request.urlopen(f"http://127.0.0.1:{port.group(1)}/metrics", timeout=30).read().decode()
        assert 'custody_jsonrpc_calls_total{method="eth_accounts",outcome="ok"} 1.0' in text
        assert 'custody_jsonrpc_calls_total{method="other",outcome="-32601"} 1.0' in text
        assert 'custody_jsonrpc_calls_total{method="(unauthenticated)",outcome="-32015"} 1.0' in text
    finally:
        stop_daemon(daemon)


def test_a_certificate_of_another_ca_gets_no_answer_and_an_unknown_identity_gets_401(
    dev_env: DevEnv, url: str, tmp_path: Path
) -> None:
    import ssl
    import urllib.error
    import urllib.request

    from custody.tls.certificates import IssuedCertificate, create_ca, issue_client_certificate

    def client_with(key_pem: bytes, cert_pem: bytes) -> ssl.SSLContext:
        (tmp_path / "cert.pem").write_bytes(cert_pem)
        (tmp_path / "key.pem").write_bytes(key_pem)
        context = ssl.create_default_context(cafile=str(dev_env.directory / "pki" / "ca.pem"))
        context.load_cert_chain(str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"))
        return context

    body = b'{"jsonrpc":"2.0","id":1,"method":"eth_accounts"}'
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    stranger_ca = create_ca()
    # "backend", but issued by a CA the daemon does not trust: the TLS handshake fails, nothing is answered.
    impostor = issue_client_certificate(stranger_ca, "backend")
    with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
        urllib.request.urlopen(request, context=client_with(impostor.key_pem, impostor.cert_pem), timeout=30)

    ca = IssuedCertificate(
        cert_pem=dev_env.pki("ca.pem"), key_pem=(dev_env.directory / "pki" / "ca.key").read_bytes()
    )
    unknown = issue_client_certificate(ca, "mallory")  # of the right CA, but no principal of the daemon's
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, context=client_with(unknown.key_pem, unknown.cert_pem), timeout=30)
    assert refused.value.code == 401
    assert "mallory" in json.loads(refused.value.read())["error"]["message"]


def test_plain_http_serves_on_loopback_when_the_configuration_says_so(
    tmp_path: Path, databases: Databases
) -> None:
    import urllib.request

    env = make_dev_env(tmp_path / "env", "sqlite", databases)
    text = (env.directory / "server.toml").read_text()
    (env.directory / "server.toml").write_text(
        text.replace("[jsonrpc.tokens]", "plain_http = true\n[jsonrpc.tokens]")
    )
    daemon = start_daemon(env, tmp_path / "daemon.log")
    try:
        assert "(plain HTTP, loopback only)" in daemon.log()
        url = jsonrpc_url(daemon).replace("https://", "http://")
        request = urllib.request.Request(
            url,
            data=b'{"jsonrpc":"2.0","id":1,"method":"eth_accounts"}',
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {backend_token(env)}"},
        )
        assert json.loads(urllib.request.urlopen(request, timeout=30).read())["result"] == []
    finally:
        stop_daemon(daemon)


def test_the_daemon_refuses_to_start_when_the_endpoint_cannot_listen(
    tmp_path: Path, databases: Databases
) -> None:
    import socket
    import subprocess

    from tests.daemons import CUSTODY

    env = make_dev_env(tmp_path / "env", "sqlite", databases)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        result = subprocess.run(
            [
                CUSTODY,
                "serve",
                "--config",
                str(env.config),
                "--listen",
                "127.0.0.1:0",
                "--jsonrpc-listen",
                address,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2
    assert f"cannot listen on {address} for JSON-RPC: the address is in use or not available" in result.stderr
    # The refusal is not preceded by a claim that the daemon listens.
    assert "custody listening on" not in result.stderr


def test_web3_py_signs_and_sends_through_the_endpoint_as_through_a_node(
    node_env, upstream: UpstreamNode
) -> None:
    from web3 import Web3

    env, daemon, tokens = node_env
    w3 = Web3(
        Web3.HTTPProvider(
            jsonrpc_url(daemon),
            request_kwargs={
                "headers": {"Authorization": f"Bearer {tokens['backend']}"},
                "verify": str(env.directory / "pki" / "ca.pem"),
            },
        )
    )
    ops = json.loads(run_cli(env, daemon, "backend", "--json", "keys", "show", "ops").stdout)["address"]
    assert ops in w3.eth.accounts and w3.eth.chain_id == SEPOLIA

    signature = w3.eth.sign(ops, text="web3.py through custody")
    assert Account.recover_message(encode_defunct(text="web3.py through custody"), signature=signature) == ops
    typed = w3.eth.sign_typed_data(ops, MAIL_TYPED_DATA)
    assert Account.recover_message(encode_typed_data(full_message=MAIL_TYPED_DATA), signature=typed) == ops

    upstream.pending_nonce = 40
    tx_hash = w3.eth.send_transaction({"from": ops, "to": RECIPIENT, "value": 10**15})
    raw = upstream.broadcast[-1]
    assert bytes(tx_hash) == keccak(raw) and Account.recover_transaction(raw) == ops


def test_while_the_daemon_waits_for_its_token_the_endpoint_answers_unavailable(
    tmp_path: Path, databases: Databases
) -> None:
    import shutil

    from .test_operations import configure, token_directory

    env = make_dev_env(tmp_path / "env", "sqlite", databases)
    configure(env, hsm="wait_for_token = true\nwait_seconds = 0.2")
    token = token_directory(env)
    away = tmp_path / "token-away"
    shutil.move(token, away)
    daemon = start_daemon(env, tmp_path / "daemon.log", waiting_for_token=True)
    try:
        client = JsonRpcClient(env, jsonrpc_url(daemon), token=backend_token(env))
        waiting = client.call("eth_accounts")
        assert waiting.error["code"] == -32002
        assert "the HSM token is not available yet" in waiting.error["message"]
        shutil.move(away, token)
        wait_for(
            lambda: "result" in client.call("eth_accounts").body,
            "the endpoint to serve once the token is there",
        )
    finally:
        if away.exists():
            shutil.move(away, token)
        stop_daemon(daemon)


def _dribbler(env: DevEnv, url: str) -> ssl.SSLSocket:
    """A TLS connection that started a POST and sends the rest of its headers one line at a time, slowly."""
    host, port = urlsplit(url).hostname, urlsplit(url).port
    assert host is not None and port is not None
    context = ssl.create_default_context(cafile=str(env.directory / "pki" / "ca.pem"))
    connection = context.wrap_socket(socket.create_connection((host, port), timeout=30), server_hostname=host)
    connection.sendall(b"POST / HTTP/1.1\r\nHost: custody\r\n")
    return connection


def test_clients_dribbling_headers_neither_hold_the_endpoint_nor_keep_the_daemon_from_stopping(
    tmp_path: Path, databases: Databases
) -> None:
    env = make_dev_env(tmp_path / "env", "sqlite", databases)
    with (env.directory / "server.toml").open("a") as config:
        config.write("\n[limits]\nmax_concurrent_rpcs = 2\nshutdown_grace_seconds = 3\n")
    daemon = start_daemon(env, tmp_path / "daemon.log")
    stopped = False
    try:
        url = jsonrpc_url(daemon)
        backend = JsonRpcClient(env, url, token=backend_token(env))
        dribblers = []
        for _ in range(2):
            dribblers.append(_dribbler(env, url))
        keep_dribbling = threading.Event()

        def dribble() -> None:
            line = 0
            while not keep_dribbling.wait(0.5):
                for connection in dribblers:
                    with contextlib.suppress(OSError):
                        connection.sendall(f"X-Line-{line}: more to come\r\n".encode())
                line += 1

        threading.Thread(target=dribble, daemon=True).start()
        # While the dribblers hold both slots a call is refused at once with 503 (not left waiting); once the
        # endpoint has cut them off for taking too long, calls are served again.
        answers = []
        for _ in range(60):
            answer = backend.call("eth_accounts")
            answers.append(answer)
            if answer.status == 200:
                break
            time.sleep(0.5)
        assert answers[-1].status == 200 and isinstance(answers[-1].result, list), answers[-1]
        for refused in answers[:-1]:
            assert refused.status == 503 and refused.error["code"] == -32005, refused

        # New dribblers take the slots again, and more wait behind them: SIGTERM still stops the daemon.
        dribblers[:] = [_dribbler(env, url) for _ in range(2)]
        address = (str(urlsplit(url).hostname), int(urlsplit(url).port or 0))
        waiting = [socket.create_connection(address) for _ in range(4)]
        stopped = True
        assert stop_daemon(daemon) == 0
        keep_dribbling.set()
        for connection in [*dribblers, *waiting]:
            connection.close()
    finally:
        if not stopped:
            stop_daemon(daemon)
