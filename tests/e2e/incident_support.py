"""What the attack and incident end-to-end tests share: a daemon of their own on a fresh development environment,
clients for the identities they act as, and checks of what it decided. The payloads themselves, built as a
wallet or a drainer builds them, are in tests/evm_payloads.py.

These tests judge what a payload does, not how it is stored, so they run on SQLite only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_keys import keys as eth_keys

from custody.api._gen import custody_pb2 as pb
from custody.api._gen import custody_pb2_grpc as pb_grpc

from .approvals_support import Approvers
from .conftest import (
    Daemon,
    Databases,
    DevEnv,
    channel_for,
    make_dev_env,
    run_cli,
    start_daemon,
    stop_daemon,
)


# --- The daemon --------------------------------------------------------------------------------------------
@dataclass
class Custody:
    """A running daemon on a development environment of its own, with the keys ``ops`` and ``treasury``."""

    env: DevEnv
    daemon: Daemon
    addresses: dict[str, str]  # key label -> address
    _channels: dict[str, grpc.Channel] = field(default_factory=dict)

    def channel(self, identity: str) -> grpc.Channel:
        if identity not in self._channels:
            self._channels[identity] = channel_for(self.env, self.daemon, identity)
        return self._channels[identity]

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()

    def submit(self, key: str, kind: int, payload: bytes | dict[str, Any]) -> pb.SigningRequest:
        """Submit as the backend, the identity an attacker who stole the backend certificate holds."""
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        stub = pb_grpc.SigningServiceStub(self.channel("backend"))
        return stub.SubmitRequest(pb.SubmitRequestRequest(key_label=key, kind=kind, payload=raw)).request

    def get(self, request_id: str) -> pb.SigningRequest:
        stub = pb_grpc.SigningServiceStub(self.channel("backend"))
        return stub.GetRequest(pb.GetRequestRequest(request_id=request_id)).request

    def explain(self, request_id: str) -> pb.ExplainRequestResponse:
        stub = pb_grpc.PolicyServiceStub(self.channel("backend"))
        return stub.ExplainRequest(pb.ExplainRequestRequest(request_id=request_id))

    def cli(self, identity: str, *args: str, check: bool = True) -> Any:
        return run_cli(self.env, self.daemon, identity, *args, check=check)

    @property
    def approvers(self) -> Approvers:
        return Approvers(self.env, self.daemon)

    def activate_policy(self, document: str) -> pb.SigningRequest:
        """Propose ``document`` as the admin and have the admin quorum (alice and dave) approve it with signed
        approval statements; returns the proposal, approved."""
        proposal = (
            pb_grpc.PolicyServiceStub(self.channel("admin"))
            .ProposePolicy(pb.ProposePolicyRequest(document=document))
            .request
        )
        assert proposal.state == pb.REQUEST_STATE_PENDING_APPROVAL, proposal
        self.approvers.approve(proposal, "alice")
        approved = self.approvers.approve(proposal, "dave")
        assert approved.state == pb.REQUEST_STATE_APPROVED, approved
        return approved

    def active_policy(self) -> tuple[int, str]:
        response = pb_grpc.PolicyServiceStub(self.channel("admin")).GetPolicy(pb.GetPolicyRequest())
        return response.version, response.document


@contextmanager
def running_custody(
    tmp_path_factory: pytest.TempPathFactory,
    databases: Databases,
    name: str,
    prepare: Callable[[DevEnv], None] | None = None,
) -> Iterator[Custody]:
    """`custody dev init` and `custody serve` for one test module, with its keys created by the admin;
    ``prepare`` may change the environment's files before the daemon starts."""
    env = make_dev_env(tmp_path_factory.mktemp(name) / "env", "sqlite", databases)
    if prepare is not None:
        prepare(env)
    daemon = start_daemon(env, tmp_path_factory.mktemp(f"{name}-logs") / "daemon.log")
    custody = Custody(env, daemon, {})
    try:
        keys = pb_grpc.KeyServiceStub(custody.channel("admin"))
        for label in ("ops", "treasury"):
            created = keys.CreateKey(pb.CreateKeyRequest(label=label)).key
            # The address is recomputed from the public key here, so recovered signers are compared with an
            # address custody did not merely state.
            derived = eth_keys.PublicKey(bytes(created.public_key)[1:]).to_checksum_address()
            assert derived == created.address
            custody.addresses[label] = created.address
        yield custody
    finally:
        custody.close()
        assert stop_daemon(daemon) == 0, daemon.log()


# --- What the tests check ----------------------------------------------------------------------------------
def decision_of(request: pb.SigningRequest) -> tuple[str, str | None, list[tuple[str, int]]]:
    decision = request.decision
    return decision.action, decision.rule or None, [(t.group, t.threshold) for t in decision.quorum]


def assert_denied_naming(custody: Custody, request: pb.SigningRequest, *words: str) -> None:
    """The request was denied, nothing was signed, and both the decision's reason and the `policy explain`
    trace name what the payload does."""
    assert request.state == pb.REQUEST_STATE_DENIED, request
    assert not request.signature and not request.signed_tx
    for word in words:
        assert word in request.decision.reason, (word, request.decision.reason)
    explanation = custody.explain(request.request_id)
    assert explanation.decision.action == "deny"
    assert not any(rule.matched for rule in explanation.rules)
    details = " ".join(c.detail for rule in explanation.rules for c in rule.conditions if not c.matched)
    for word in words:
        assert word in details, (word, details)


def failed_conditions(custody: Custody, request_id: str, rule_name: str) -> dict[str, str]:
    """The conditions of ``rule_name`` that did not match ``request_id``, by name, with their details."""
    explanation = custody.explain(request_id)
    (rule,) = [rule for rule in explanation.rules if rule.rule == rule_name]
    return {condition.condition: condition.detail for condition in rule.conditions if not condition.matched}


def assert_typed_data_signed_by(request: pb.SigningRequest, typed_data: dict[str, Any], address: str) -> None:
    assert request.state == pb.REQUEST_STATE_SIGNED, request
    signable = encode_typed_data(full_message=typed_data)
    assert Account.recover_message(signable, signature=bytes(request.signature)) == address


def assert_transaction_signed_by(request: pb.SigningRequest, address: str) -> None:
    assert request.state == pb.REQUEST_STATE_SIGNED, request
    assert Account.recover_transaction(bytes(request.signed_tx)) == address


def unix_now() -> int:
    return int(time.time())
