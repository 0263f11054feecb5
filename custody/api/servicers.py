"""gRPC servicers: authenticate, translate, call a use case, translate back. No rules live here.

Every call runs in a logging context that tags each line it logs with the request id the call names (or a
fresh correlation id), and ends with one line saying who called what, how it ended, and what the use cases
noted on the way (custody/observability/logs.py).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from custody.api import convert
from custody.api._gen import custody_pb2 as pb
from custody.api._gen import custody_pb2_grpc as pb_grpc
from custody.api.auth import CertificateAuthenticator
from custody.api.errors import status_for
from custody.api.refusals import RefusalRecorder
from custody.app.custody import Custody
from custody.config import DEFAULT_MAX_MESSAGE_BYTES
from custody.domain.errors import (
    InvalidInput,
    PermissionDenied,
    ResourceExhausted,
)
from custody.domain.ids import validate_request_id
from custody.domain.principals import Principal
from custody.domain.requests import SigningRequest
from custody.observability.logs import CallNotes, call_notes, request_context

log = logging.getLogger(__name__)

Response = TypeVar("Response")
# Gives the application for a call; raises Unavailable while the daemon is not ready to serve yet.
CustodySource = Callable[[], Custody]


def _named_request_id(request: Any) -> str | None:
    """The request id a call names, when it is a well-formed one (anything else must not reach a log line)."""
    named = getattr(request, "request_id", "")
    if not named:
        return None
    try:
        return validate_request_id(named)
    except InvalidInput:
        return None


def _log_call(method: str, caller: Principal | None, outcome: str, started: float, notes: CallNotes) -> None:
    log.info(
        "%s by %s: %s in %.1f ms%s",
        method,
        caller.name if caller is not None else "unauthenticated caller",
        outcome,
        (time.perf_counter() - started) * 1000,
        notes,
    )


def unary(
    method: Callable[[Any, Any, grpc.ServicerContext, Principal], Response],
) -> Callable[[Any, Any, grpc.ServicerContext], Response]:
    """Authenticate the caller, run the method, and turn any error into its status code (one table)."""

    @functools.wraps(method)
    def handler(self: _Servicer, request: Any, context: grpc.ServicerContext) -> Response:
        with request_context(_named_request_id(request)), call_notes() as notes:
            started = time.perf_counter()
            caller: Principal | None = None
            outcome = "OK"
            try:
                caller = self.authenticator.authenticate(context)
                return method(self, request, context, caller)
            except Exception as exc:
                self.audit_refusal(exc, caller, context, method.__name__)
                code, message = status_for(exc)
                outcome = code.name
                context.abort(code, message)
            finally:
                _log_call(method.__name__, caller, outcome, started, notes)

    return handler


def server_stream(
    method: Callable[[Any, Any, grpc.ServicerContext, Principal], Iterator[Response]],
) -> Callable[[Any, Any, grpc.ServicerContext], Iterator[Response]]:
    @functools.wraps(method)
    def handler(self: _Servicer, request: Any, context: grpc.ServicerContext) -> Iterator[Response]:
        with request_context(_named_request_id(request)), call_notes() as notes:
            started = time.perf_counter()
            caller: Principal | None = None
            outcome = "OK"
            try:
                caller = self.authenticator.authenticate(context)
                yield from method(self, request, context, caller)
            except Exception as exc:
                self.audit_refusal(exc, caller, context, method.__name__)
                code, message = status_for(exc)
                outcome = code.name
                context.abort(code, message)
            finally:
                _log_call(method.__name__, caller, outcome, started, notes)

    return handler


_METHODS_THAT_RECORD_THEIR_REFUSALS = frozenset({"Approve", "Reject"})


class _Servicer:
    def __init__(
        self, custody: CustodySource, authenticator: CertificateAuthenticator, refusals: RefusalRecorder
    ) -> None:
        self._custody = custody
        self.authenticator = authenticator
        self._refusals = refusals
        self._addresses: dict[str, str] = {}

    @property
    def custody(self) -> Custody:
        return self._custody()

    def audit_refusal(
        self, error: Exception, caller: Principal | None, context: grpc.ServicerContext, method: str
    ) -> None:
        """Authentication failures and permission denials go to the audit log, aggregated per peer (see
        custody.api.refusals). Other refusals are the use cases' to record; a verdict's use case records every
        refusal of it, a permission denied included (``approval.refused``, with the verdict), so those methods
        are left to it."""
        if isinstance(error, PermissionDenied) and method in _METHODS_THAT_RECORD_THEIR_REFUSALS:
            return
        self._refusals.refused_call(
            error, caller, method, self.authenticator.presented_subject(context), context.peer()
        )

    def request_to_pb(self, request: SigningRequest) -> pb.SigningRequest:
        """The request as a message, with its verdicts and the quorum progress of the verified ones."""
        # A key's address never changes, so it is looked up once per label. A policy change has no key.
        address = self._addresses.get(request.key_label, "")
        if request.key_label and not address:
            address = self.custody.keys.get_key_record(request.key_label).address
            self._addresses[request.key_label] = address
        view = self.custody.signing.view(request)
        return convert.request_to_pb(request, address, view.approvals, view.progress)


class KeyServicer(_Servicer, pb_grpc.KeyServiceServicer):
    @unary
    def CreateKey(
        self, request: pb.CreateKeyRequest, context: grpc.ServicerContext, caller: Principal
    ) -> Any:
        key = self.custody.keys.create_key(caller, request.label)
        return pb.CreateKeyResponse(key=convert.key_to_pb(key))

    @unary
    def GetKey(self, request: pb.GetKeyRequest, context: grpc.ServicerContext, caller: Principal) -> Any:
        return pb.GetKeyResponse(key=convert.key_to_pb(self.custody.keys.get_key(caller, request.label)))

    @unary
    def ListKeys(self, request: pb.ListKeysRequest, context: grpc.ServicerContext, caller: Principal) -> Any:
        keys = self.custody.keys.list_keys(caller)
        return pb.ListKeysResponse(keys=[convert.key_to_pb(key) for key in keys])

    @unary
    def FreezeKey(
        self, request: pb.FreezeKeyRequest, context: grpc.ServicerContext, caller: Principal
    ) -> Any:
        key = self.custody.keys.freeze(caller, request.label, request.reason)
        return pb.FreezeKeyResponse(key=convert.key_to_pb(key))

    @unary
    def UnfreezeKey(
        self, request: pb.UnfreezeKeyRequest, context: grpc.ServicerContext, caller: Principal
    ) -> Any:
        key, governance = self.custody.keys.request_unfreeze(caller, request.label, request.reason)
        return pb.UnfreezeKeyResponse(key=convert.key_to_pb(key), request=self.request_to_pb(governance))


class SigningServicer(_Servicer, pb_grpc.SigningServiceServicer):
    @unary
    def SubmitRequest(
        self, request: pb.SubmitRequestRequest, context: grpc.ServicerContext, caller: Principal
    ) -> Any:
        submitted = self.custody.signing.submit(
            caller,
            request.key_label,
            convert.kind_from_pb(request.kind),
            request.payload,
            replaces=request.replaces_request_id or None,
        )
        return pb.SubmitRequestResponse(request=self.request_to_pb(submitted))

    @unary
    def GetRequest(
        self, request: pb.GetRequestRequest, context: grpc.ServicerContext, caller: Principal
    ) -> Any:
        found = self.custody.signing.get(caller, request.request_id)
        return pb.GetRequestResponse(request=self.request_to_pb(found))

    @unary
    def ListRequests(
        self, request: pb.ListRequestsRequest, context: grpc.ServicerContext, caller: Principal
    ) -> Any:
        found = self.custody.signing.list(
            caller,
            state=convert.state_from_pb(request.state),
            key_label=request.key_label or None,
            limit=request.limit or 100,
        )
        # Each request with its verdicts and quorum progress, as GetRequest answers it: a list that shows
        # "-" for approvals a request has would mislead the people reading it.
        return pb.ListRequestsResponse(requests=[self.request_to_pb(item) for item in found])

    @server_stream
    def WatchRequest(
        self, request: pb.WatchRequestRequest, context: grpc.ServicerContext, caller: Principal
    ) -> Iterator[pb.SigningRequest]:
        for update in self.custody.signing.watch(caller, request.request_id, context.is_active):
            yield self.request_to_pb(update)

    @unary
    def CancelRequest(
        self, request: pb.CancelRequestRequest, context: grpc.ServicerContext, caller: Principal
    ) -> Any:
        cancelled = self.custody.signing.cancel(caller, request.request_id, request.reason)
        return pb.CancelRequestResponse(request=self.request_to_pb(cancelled))


class ApprovalServicer(_Servicer, pb_grpc.ApprovalServiceServicer):
    @unary
    def Approve(self, request: pb.ApproveRequest, context: grpc.ServicerContext, caller: Principal) -> Any:
        approved = self.custody.approvals.approve(
            caller, request.request_id, request.statement, request.signature
        )
        return pb.ApproveResponse(request=self.request_to_pb(approved))

    @unary
    def Reject(self, request: pb.RejectRequest, context: grpc.ServicerContext, caller: Principal) -> Any:
        rejected = self.custody.approvals.reject(
            caller, request.request_id, request.statement, request.signature, request.reason
        )
        return pb.RejectResponse(request=self.request_to_pb(rejected))


class PolicyServicer(_Servicer, pb_grpc.PolicyServiceServicer):
    @unary
    def GetPolicy(
        self, request: pb.GetPolicyRequest, context: grpc.ServicerContext, caller: Principal
    ) -> Any:
        active = self.custody.policy.get(caller)
        return pb.GetPolicyResponse(
            version=active.policy.version,
            document=active.document,
            document_hash=hashlib.sha256(active.document.encode("utf-8")).digest(),
        )

    @unary
    def ProposePolicy(
        self, request: pb.ProposePolicyRequest, context: grpc.ServicerContext, caller: Principal
    ) -> Any:
        proposal = self.custody.policy.propose(caller, request.document)
        return pb.ProposePolicyResponse(request=self.request_to_pb(proposal))

    @unary
    def ExplainRequest(
        self, request: pb.ExplainRequestRequest, context: grpc.ServicerContext, caller: Principal
    ) -> Any:
        explanation = self.custody.policy.explain(self.custody.signing.get(caller, request.request_id))
        return pb.ExplainRequestResponse(
            decision=convert.decision_to_pb(explanation.decision),
            rules=[
                pb.RuleTrace(
                    rule=rule.rule,
                    matched=rule.matched,
                    conditions=[
                        pb.ConditionTrace(condition=c.condition, matched=c.matched, detail=c.detail)
                        for c in rule.conditions
                    ],
                )
                for rule in explanation.rules
            ],
        )


class AuditServicer(_Servicer, pb_grpc.AuditServiceServicer):
    """The audit log over gRPC. A ListEvents page stops growing before its encoded size passes half the
    daemon's message limit, and never passes 1 MiB, well under the 4 MiB that gRPC clients (the CLI among
    them) accept by default: events differ in size, so an event count alone cannot keep a page under a limit,
    and a page over one fails as a whole. The client pages on from the last sequence it received."""

    PAGE_BUDGET_CAP_BYTES = 1024 * 1024

    def __init__(
        self,
        custody: CustodySource,
        authenticator: CertificateAuthenticator,
        refusals: RefusalRecorder,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        super().__init__(custody, authenticator, refusals)
        self._max_message_bytes = max_message_bytes
        self._page_budget_bytes = min(max_message_bytes // 2, self.PAGE_BUDGET_CAP_BYTES)

    @unary
    def ListEvents(
        self, request: pb.ListEventsRequest, context: grpc.ServicerContext, caller: Principal
    ) -> Any:
        events = self.custody.audit.list_events(
            caller,
            request_id=request.request_id or None,
            actor=request.actor or None,
            kind=request.kind or None,
            since=convert.parse_timestamp(request.since, "since"),
            until=convert.parse_timestamp(request.until, "until"),
            after_sequence=request.after_sequence,
            limit=request.limit or 1000,
        )
        page: list[pb.AuditEvent] = []
        page_bytes = 0
        for event in events:
            encoded = convert.audit_event_to_pb(event)
            entry_bytes = self._repeated_entry_bytes(encoded.ByteSize())
            if page and page_bytes + entry_bytes > self._page_budget_bytes:
                break
            # The first event always goes out, however large: an empty page would tell the client that the
            # log ends here. Only an event that cannot be sent at all is refused, by name.
            if entry_bytes > self._max_message_bytes:
                raise ResourceExhausted(
                    f"audit event {event.sequence} is {entry_bytes} bytes encoded, more than the daemon's"
                    f" message limit of {self._max_message_bytes} bytes (limits.max_message_bytes)"
                )
            page.append(encoded)
            page_bytes += entry_bytes
        return pb.ListEventsResponse(events=page)

    @staticmethod
    def _repeated_entry_bytes(message_bytes: int) -> int:
        """What one element of a repeated message field adds to the encoding: a one-byte tag (field 1), the
        length as a varint of seven bits a byte, and the message itself."""
        return 1 + max(1, (message_bytes.bit_length() + 6) // 7) + message_bytes

    @unary
    def VerifyChain(
        self, request: pb.VerifyChainRequest, context: grpc.ServicerContext, caller: Principal
    ) -> Any:
        result = self.custody.audit.verify_chain(caller)
        head = result.last_event
        return pb.VerifyChainResponse(
            ok=result.ok,
            events_checked=result.events_checked,
            first_bad_sequence=result.first_bad_sequence or 0,
            problem=result.problem,
            checkpoints_checked=result.checkpoints_checked,
            audit_public_key=self.custody.audit.public_key,
            unsigned_tail=result.unsigned_tail,
            last_sequence=head.sequence if head is not None else 0,
            head_hash=head.hash if head is not None else b"",
        )


def add_servicers(
    server: grpc.Server,
    custody: CustodySource,
    authenticator: CertificateAuthenticator,
    refusals: RefusalRecorder,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> list[str]:
    """Register every custody service; returns the full service names (for health and reflection)."""
    pb_grpc.add_KeyServiceServicer_to_server(KeyServicer(custody, authenticator, refusals), server)
    pb_grpc.add_SigningServiceServicer_to_server(SigningServicer(custody, authenticator, refusals), server)
    pb_grpc.add_ApprovalServiceServicer_to_server(ApprovalServicer(custody, authenticator, refusals), server)
    pb_grpc.add_PolicyServiceServicer_to_server(PolicyServicer(custody, authenticator, refusals), server)
    pb_grpc.add_AuditServiceServicer_to_server(
        AuditServicer(custody, authenticator, refusals, max_message_bytes), server
    )
    return [service.full_name for service in pb.DESCRIPTOR.services_by_name.values()]
