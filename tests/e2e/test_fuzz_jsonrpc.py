"""Fuzzing the JSON-RPC endpoint of a real daemon: every answer is a result or a JSON-RPC error with a
client-side code and a message, nothing malformed is stored or signed, and the endpoint keeps serving.

Hypothesis sends bodies of every shape: bytes that are not JSON, JSON that is no call, calls and batches
with known and unknown methods, and the signing methods with parameters that are mostly plausible (the right
address, a transaction, the Mail typed data) and partly mutated (fields dropped, replaced with random JSON,
parameters swapped). -32603 (internal) would mean an input reached code that did not expect it. Every
signature answered is verified with eth-account against the key's address. Afterwards the daemon stored at
most one request per call that answered a signature, a pending approval or a denial; requests left waiting
for approval are cancelled so that the session's shared daemon stays tidy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from custody.api._gen import custody_pb2 as pb
from custody.api._gen import custody_pb2_grpc as pb_grpc
from tests.fuzzing import JSON_VALUES, TEXT, cases, mutated

from .conftest import Daemon, DevEnv, Nonces, channel_for
from .jsonrpc_support import SEPOLIA, JsonRpcClient, backend_token, jsonrpc_url

CASES = cases(400)
NONCES_RESERVED = 500
RECIPIENT = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
MAIL = json.loads((Path(__file__).parents[1] / "vectors" / "eip712_mail.json").read_text())["typed_data"]
# Codes a caller's mistake or the policy can earn; -32603 and anything else is a failure of the endpoint.
ALLOWED_CODES = {-32700, -32600, -32601, -32602, 4100, -32001, -32003, -32010, -32011, -32012, -32013, -32014}
STORING_CODES = {-32010, -32011}
SIGNING_METHODS = {
    "eth_sign",
    "personal_sign",
    "eth_signTypedData",
    "eth_signTypedData_v3",
    "eth_signTypedData_v4",
    "eth_signTransaction",
}
METHODS = [
    *sorted(SIGNING_METHODS),
    "eth_accounts",
    "eth_chainId",
    "net_version",
    "eth_sendTransaction",
    "custody_getRequest",
    "custody_waitRequest",
    "eth_getBalance",
    "admin_peers",
    "debug_traceTransaction",
]


@st.composite
def _params(draw: st.DrawFn, method: str, addresses: list[str], nonces: range) -> Any:
    address = (
        draw(st.sampled_from([*addresses, RECIPIENT, "0x" + "00" * 20]))
        if draw(st.integers(0, 5))
        else draw(JSON_VALUES)
    )
    if method in ("eth_sign", "personal_sign"):
        data = (
            "0x" + draw(st.binary(min_size=0, max_size=40)).hex()
            if draw(st.integers(0, 4))
            else draw(JSON_VALUES)
        )
        params = [address, data] if method == "eth_sign" else [data, address]
    elif method.startswith("eth_signTypedData"):
        typed = draw(mutated(st.just(MAIL))) if draw(st.booleans()) else MAIL
        params = [address, json.dumps(typed) if draw(st.booleans()) else typed]
    elif method in ("eth_signTransaction", "eth_sendTransaction"):
        transaction = {
            "from": address,
            "to": RECIPIENT,
            "value": hex(draw(st.sampled_from([0, 1, 10**18, 2 * 10**18]))),
            "gas": "0x5208",
            "maxFeePerGas": hex(30 * 10**9),
            "maxPriorityFeePerGas": hex(10**9),
            "nonce": hex(draw(st.sampled_from(nonces))),
            "chainId": hex(draw(st.sampled_from([SEPOLIA, 1, 5]))),
        }
        params = [draw(mutated(st.just(transaction)))]
    else:
        params = draw(st.lists(JSON_VALUES, max_size=3))
    if draw(st.integers(0, 6)) == 0:
        params = list(reversed(params))
    return params if draw(st.integers(0, 10)) else draw(JSON_VALUES)


@st.composite
def _body(draw: st.DrawFn, addresses: list[str], nonces: range) -> tuple[bytes, list[dict[str, Any]]]:
    """A body to POST, and the call objects in it (empty when the body is not a list or object of calls)."""
    shape = draw(st.integers(0, 9))
    if shape == 0:
        return draw(st.binary(max_size=64)), []
    if shape == 1:
        return json.dumps(draw(JSON_VALUES)).encode(), []

    def call() -> dict[str, Any]:
        method = draw(st.sampled_from(METHODS)) if draw(st.integers(0, 8)) else draw(TEXT)
        document: dict[str, Any] = {"jsonrpc": "2.0", "id": draw(st.integers(0, 10**6)), "method": method}
        document["params"] = draw(_params(method, addresses, nonces))
        return draw(mutated(st.just(document))) if draw(st.integers(0, 8)) == 0 else document

    if shape == 2:
        calls = [call() for _ in range(draw(st.integers(0, 4)))]
        return json.dumps(calls).encode(), calls
    single = call()
    return json.dumps(single).encode(), [single]


def _stored_ids(env: DevEnv, daemon: Daemon) -> set[str]:
    with channel_for(env, daemon, "admin") as channel:
        listed = pb_grpc.SigningServiceStub(channel).ListRequests(pb.ListRequestsRequest(limit=1000))
    return {request.request_id for request in listed.requests}


def _check_signature(method: str, params: Any, result: Any, addresses: dict[str, str]) -> None:
    """The answered signature verifies, with eth-account, to the key whose address the call named."""
    assert isinstance(result, str) and result.startswith("0x")
    signed = bytes.fromhex(result[2:])
    if method == "eth_signTransaction":
        assert Account.recover_transaction(signed) == params[0]["from"]
        return
    if method in ("eth_sign", "personal_sign"):
        address, data = (params[0], params[1]) if method == "eth_sign" else (params[1], params[0])
        signable = encode_defunct(hexstr=data)
    else:
        address, typed = params
        signable = encode_typed_data(full_message=json.loads(typed) if isinstance(typed, str) else typed)
    assert Account.recover_message(signable, signature=signed) == address
    assert address in addresses.values()


def test_random_bodies_get_results_or_json_rpc_errors_and_nothing_malformed_is_stored(
    dev_env: DevEnv, daemon: Daemon, keys: dict[str, dict[str, str]], nonces: Nonces
) -> None:
    client = JsonRpcClient(dev_env, jsonrpc_url(daemon), token=backend_token(dev_env))
    addresses = {label: key["address"] for label, key in keys.items()}
    reserved = nonces.reserve(NONCES_RESERVED)
    before = _stored_ids(dev_env, daemon)
    storing_answers = 0
    seen_codes: dict[int, int] = {}

    @settings(max_examples=CASES, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(_body(list(addresses.values()), reserved))
    def post(sent: tuple[bytes, list[dict[str, Any]]]) -> None:
        nonlocal storing_answers
        body, calls = sent
        answer = client.post(body)
        assert answer.status in (200, 204), (body, answer.status, answer.body)
        if answer.status == 204:
            return
        entries = answer.body if isinstance(answer.body, list) else [answer.body]
        by_id = {json.dumps(call.get("id")): call for call in calls if isinstance(call, dict)}
        for entry in entries:
            assert entry.get("jsonrpc") == "2.0" and ("result" in entry) != ("error" in entry), entry
            if "error" in entry:
                code = entry["error"]["code"]
                seen_codes[code] = seen_codes.get(code, 0) + 1
                assert code in ALLOWED_CODES, (body, entry)
                assert entry["error"]["message"].strip(), entry
                storing_answers += code in STORING_CODES
                continue
            call = by_id.get(json.dumps(entry.get("id")))
            if call is not None and call.get("method") in SIGNING_METHODS:
                storing_answers += 1
                _check_signature(call["method"], call["params"], entry["result"], addresses)

    post()
    # The endpoint still serves, and stored no more requests than calls that answered one.
    assert sorted(client.call("eth_accounts").result) == sorted(addresses.values())
    created = _stored_ids(dev_env, daemon) - before
    assert len(created) <= storing_answers, (len(created), storing_answers, seen_codes)
    with channel_for(dev_env, daemon, "backend") as channel:
        signing = pb_grpc.SigningServiceStub(channel)
        for request_id in created:
            request = signing.GetRequest(pb.GetRequestRequest(request_id=request_id)).request
            if request.state == pb.REQUEST_STATE_PENDING_APPROVAL:
                signing.CancelRequest(pb.CancelRequestRequest(request_id=request_id, reason="fuzzing"))
