"""Fuzzing the signing API of a real daemon over mTLS: every answer is a decision or a typed refusal.

Hypothesis sends SubmitRequest with random kinds (unknown enum numbers included), key labels, payloads (some
shaped like real transactions, typed data and messages, some junk) and replaces ids, and GetRequest,
ListRequests and CancelRequest with random ids, states and limits. Every answer must be either a normal
response that makes sense for what was asked, or an RpcError with a client-side code and a sentence saying
what was wrong; INTERNAL or UNKNOWN would mean an input reached code that did not expect it. Afterwards the
daemon still serves, and exactly the successful submissions were stored.

The daemon is the e2e session's shared one, so the transactions sent here use nonces from a block reserved
from the session's nonces (a nonce once signed stays taken), and requests left waiting for approval are
cancelled at the end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from eth_account import Account
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from custody.api._gen import custody_pb2 as pb
from custody.api._gen import custody_pb2_grpc as pb_grpc
from custody.chains.evm import PayloadKind, parse_payload
from tests.fuzzing import JSON_VALUES, TEXT, cases, mutated

from .conftest import Daemon, DevEnv, Nonces, channel_for

CASES = cases(400)
RPC_TIMEOUT_SECONDS = 30
# The nonces the fuzzer chooses among: few enough that some transactions share one, which must be refused.
NONCES_RESERVED = 1000
RECIPIENT = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
MAIL_TYPED_DATA = json.loads((Path(__file__).parents[1] / "vectors" / "eip712_mail.json").read_text())[
    "typed_data"
]

ALLOWED_REFUSALS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION,
}
_PB_KINDS = {
    pb.PAYLOAD_KIND_TRANSACTION: PayloadKind.TRANSACTION,
    pb.PAYLOAD_KIND_TYPED_DATA: PayloadKind.TYPED_DATA,
    pb.PAYLOAD_KIND_MESSAGE: PayloadKind.MESSAGE,
    pb.PAYLOAD_KIND_AUTHORIZATION: PayloadKind.AUTHORIZATION,
}
_FINAL_STATES = {
    pb.REQUEST_STATE_SIGNED,
    pb.REQUEST_STATE_DENIED,
    pb.REQUEST_STATE_REJECTED,
    pb.REQUEST_STATE_EXPIRED,
    pb.REQUEST_STATE_CANCELLED,
    pb.REQUEST_STATE_FAILED,
}


_INT32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)


@st.composite
def _transaction(draw: st.DrawFn, nonces: range) -> dict[str, Any]:
    tx: dict[str, Any] = {
        "chainId": draw(st.sampled_from([1, 11155111, 5])),
        "nonce": draw(st.sampled_from(nonces)),
        "to": draw(st.sampled_from([RECIPIENT, RECIPIENT.lower(), "0x" + "00" * 20])),
        "value": draw(st.sampled_from([0, 1, 10**18, 2 * 10**18])),
        "gas": 60000,
    }
    if draw(st.booleans()):
        tx |= {"type": 2, "maxFeePerGas": 30_000_000_000, "maxPriorityFeePerGas": 1_000_000_000}
    else:
        tx["gasPrice"] = 20_000_000_000
    if draw(st.booleans()):
        tx["data"] = "0x" + draw(st.binary(max_size=36)).hex()
    return tx


def _json_bytes(document: Any) -> bytes:
    return json.dumps(document).encode()


def _families(nonces: range) -> list[tuple[int, st.SearchStrategy[bytes]]]:
    """Payload families with the kind each is meant for; the kind is usually the right one, sometimes not."""
    return [
        (pb.PAYLOAD_KIND_TRANSACTION, mutated(_transaction(nonces)).map(_json_bytes)),
        (pb.PAYLOAD_KIND_TYPED_DATA, mutated(st.just(MAIL_TYPED_DATA)).map(_json_bytes)),
        (pb.PAYLOAD_KIND_MESSAGE, st.one_of(st.binary(max_size=200), TEXT.map(str.encode))),
        (
            pb.PAYLOAD_KIND_TRANSACTION,
            st.one_of(JSON_VALUES.map(_json_bytes), st.sampled_from([b"", b"a" * (128 * 1024 + 1)])),
        ),
    ]


_ANY_KIND = st.one_of(st.sampled_from(list(pb.PayloadKind.values())), _INT32)
_LABELS = st.one_of(
    st.sampled_from(["ops", "ops", "treasury"]), st.sampled_from(["", "OPS", "nope", "x" * 300]), TEXT
)
_STATES = st.one_of(st.sampled_from(list(pb.RequestState.values())), _INT32)


@st.composite
def _submission(
    draw: st.DrawFn, request_ids: st.SearchStrategy[str], nonces: range
) -> tuple[str, int, bytes, str]:
    """(key label, kind, payload, replaces): mostly a plausible request, each part sometimes random."""
    meant_kind, payloads = draw(st.sampled_from(_families(nonces)))
    label = draw(st.sampled_from(["ops", "treasury"])) if draw(st.integers(0, 4)) else draw(_LABELS)
    kind = meant_kind if draw(st.integers(0, 4)) else draw(_ANY_KIND)
    replaces = "" if draw(st.integers(0, 5)) else draw(request_ids)
    return label, kind, draw(payloads), replaces


@dataclass
class _Ids:
    """Request ids this test created, so that later calls can name real requests as well as random ones."""

    created: list[str] = field(default_factory=list)

    def strategy(self) -> st.SearchStrategy[str]:
        known = st.integers(min_value=0, max_value=10**6).map(
            lambda index: self.created[index % len(self.created)] if self.created else ""
        )
        shaped = st.binary(min_size=16, max_size=16).map(lambda raw: "req_" + raw.hex())
        return st.one_of(known, known, shaped, TEXT, st.just(""), shaped.map(lambda rid: rid + "\n"))


def _assert_refusal(error: grpc.RpcError, call: str) -> None:
    code = error.code()
    assert code in ALLOWED_REFUSALS, f"{call} answered {code}: {error.details()}"
    details = error.details()
    assert isinstance(details, str) and details.strip(), f"{call} answered {code} without details"


def _assert_signature(request: pb.SigningRequest, address: str) -> None:
    """An independent check with eth-account that a signed request was signed by its key."""
    if request.kind == pb.PAYLOAD_KIND_TRANSACTION:
        assert Account.recover_transaction(request.signed_tx) == address
    else:
        assert Account._recover_hash(request.digest, signature=request.signature) == address


def _all_request_ids(stub: pb_grpc.SigningServiceStub) -> set[str]:
    listed = stub.ListRequests(pb.ListRequestsRequest(limit=1000), timeout=RPC_TIMEOUT_SECONDS)
    return {request.request_id for request in listed.requests}


def test_random_calls_get_decisions_or_typed_refusals(
    dev_env: DevEnv, daemon: Daemon, keys: dict[str, dict[str, str]], nonces: Nonces
) -> None:
    reserved = nonces.reserve(NONCES_RESERVED)
    ids = _Ids()
    accepted: set[str] = set()
    outcomes = {"submitted": 0, "refused": 0, "other calls": 0}
    with channel_for(dev_env, daemon, "backend") as backend, channel_for(dev_env, daemon, "admin") as admin:
        stub = pb_grpc.SigningServiceStub(backend)
        # The admin sees every request, so its listing counts what the daemon stored.
        auditor = pb_grpc.SigningServiceStub(admin)
        before = _all_request_ids(auditor)
        ids_strategy = ids.strategy()

        def submit(label: str, kind: int, payload: bytes, replaces: str) -> None:
            try:
                response = stub.SubmitRequest(
                    pb.SubmitRequestRequest(
                        key_label=label, kind=kind, payload=payload, replaces_request_id=replaces
                    ),
                    timeout=RPC_TIMEOUT_SECONDS,
                )
            except grpc.RpcError as error:
                _assert_refusal(error, "SubmitRequest")
                outcomes["refused"] += 1
                return
            outcomes["submitted"] += 1
            request = response.request
            # A request was decided only for a payload custody's own parser accepts, and for that key.
            parsed = parse_payload(_PB_KINDS[kind], payload)
            assert request.digest == parsed.digest
            assert request.key_label == label
            assert request.state != pb.REQUEST_STATE_UNSPECIFIED
            if request.state == pb.REQUEST_STATE_SIGNED:
                _assert_signature(request, keys[label]["address"])
            if request.request_id not in before:
                accepted.add(request.request_id)
            ids.created.append(request.request_id)

        def other_call(which: str, request_id: str, state: int, label: str, limit: int, reason: str) -> None:
            outcomes["other calls"] += 1
            try:
                if which == "get":
                    got = stub.GetRequest(
                        pb.GetRequestRequest(request_id=request_id), timeout=RPC_TIMEOUT_SECONDS
                    )
                    assert got.request.request_id == request_id
                elif which == "list":
                    listed = stub.ListRequests(
                        pb.ListRequestsRequest(state=state, key_label=label, limit=limit),
                        timeout=RPC_TIMEOUT_SECONDS,
                    )
                    assert len(listed.requests) <= (limit or 100)
                    for item in listed.requests:
                        assert not label or item.key_label == label
                        assert state == pb.REQUEST_STATE_UNSPECIFIED or item.state == state
                else:
                    cancelled = stub.CancelRequest(
                        pb.CancelRequestRequest(request_id=request_id, reason=reason),
                        timeout=RPC_TIMEOUT_SECONDS,
                    )
                    assert cancelled.request.request_id == request_id
                    assert cancelled.request.state == pb.REQUEST_STATE_CANCELLED
            except grpc.RpcError as error:
                _assert_refusal(error, which)

        @settings(
            max_examples=CASES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(
            call=st.one_of(
                st.tuples(st.just("submit"), _submission(ids_strategy, reserved)),
                st.tuples(
                    st.sampled_from(["get", "list", "cancel"]),
                    ids_strategy,
                    _STATES,
                    _LABELS,
                    st.one_of(st.sampled_from([0, 1, 1000, 1001]), st.integers(0, 2**32 - 1)),
                    st.one_of(TEXT, st.just("r" * 1001)),
                ),
            )
        )
        # Hypothesis tries its simplest inputs first, and a short run may draw no submission custody accepts;
        # these two run in every profile, so each run reaches both sides at least once.
        @example(call=("submit", ("ops", pb.PAYLOAD_KIND_MESSAGE, b"fuzzing starts here", "")))
        @example(call=("submit", ("nope", pb.PAYLOAD_KIND_MESSAGE, b"no such key", "")))
        def fuzz(call: tuple[Any, ...]) -> None:
            if call[0] == "submit":
                submit(*call[1])
            else:
                other_call(*call)

        fuzz()

        # The strategies must reach both sides: requests decided and requests refused. Hypothesis draws its
        # simplest inputs first, so the share of decided requests grows with the number of cases.
        assert outcomes["submitted"] >= max(1, CASES // 40), outcomes
        assert outcomes["refused"] >= CASES // 8, outcomes

        after = _all_request_ids(auditor)
        assert after - before == accepted, "the daemon stored requests for refused calls, or lost some"

        health = health_pb2_grpc.HealthStub(backend).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=RPC_TIMEOUT_SECONDS
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING

        # Leave nothing waiting on the shared daemon: cancel what is still open, which also frees its nonce.
        for request_id in sorted(accepted):
            current = stub.GetRequest(
                pb.GetRequestRequest(request_id=request_id), timeout=RPC_TIMEOUT_SECONDS
            )
            if current.request.state not in _FINAL_STATES:
                stub.CancelRequest(
                    pb.CancelRequestRequest(request_id=request_id, reason="fuzz test cleanup"),
                    timeout=RPC_TIMEOUT_SECONDS,
                )
