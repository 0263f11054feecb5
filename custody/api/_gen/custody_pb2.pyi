from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class KeyState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KEY_STATE_UNSPECIFIED: _ClassVar[KeyState]
    KEY_STATE_ACTIVE: _ClassVar[KeyState]
    KEY_STATE_FROZEN: _ClassVar[KeyState]

class PayloadKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAYLOAD_KIND_UNSPECIFIED: _ClassVar[PayloadKind]
    PAYLOAD_KIND_TRANSACTION: _ClassVar[PayloadKind]
    PAYLOAD_KIND_TYPED_DATA: _ClassVar[PayloadKind]
    PAYLOAD_KIND_MESSAGE: _ClassVar[PayloadKind]
    PAYLOAD_KIND_POLICY_CHANGE: _ClassVar[PayloadKind]
    PAYLOAD_KIND_KEY_UNFREEZE: _ClassVar[PayloadKind]
    PAYLOAD_KIND_AUTHORIZATION: _ClassVar[PayloadKind]

class RequestState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REQUEST_STATE_UNSPECIFIED: _ClassVar[RequestState]
    REQUEST_STATE_PENDING_APPROVAL: _ClassVar[RequestState]
    REQUEST_STATE_APPROVED: _ClassVar[RequestState]
    REQUEST_STATE_SIGNED: _ClassVar[RequestState]
    REQUEST_STATE_DENIED: _ClassVar[RequestState]
    REQUEST_STATE_REJECTED: _ClassVar[RequestState]
    REQUEST_STATE_EXPIRED: _ClassVar[RequestState]
    REQUEST_STATE_CANCELLED: _ClassVar[RequestState]
    REQUEST_STATE_FAILED: _ClassVar[RequestState]
KEY_STATE_UNSPECIFIED: KeyState
KEY_STATE_ACTIVE: KeyState
KEY_STATE_FROZEN: KeyState
PAYLOAD_KIND_UNSPECIFIED: PayloadKind
PAYLOAD_KIND_TRANSACTION: PayloadKind
PAYLOAD_KIND_TYPED_DATA: PayloadKind
PAYLOAD_KIND_MESSAGE: PayloadKind
PAYLOAD_KIND_POLICY_CHANGE: PayloadKind
PAYLOAD_KIND_KEY_UNFREEZE: PayloadKind
PAYLOAD_KIND_AUTHORIZATION: PayloadKind
REQUEST_STATE_UNSPECIFIED: RequestState
REQUEST_STATE_PENDING_APPROVAL: RequestState
REQUEST_STATE_APPROVED: RequestState
REQUEST_STATE_SIGNED: RequestState
REQUEST_STATE_DENIED: RequestState
REQUEST_STATE_REJECTED: RequestState
REQUEST_STATE_EXPIRED: RequestState
REQUEST_STATE_CANCELLED: RequestState
REQUEST_STATE_FAILED: RequestState

class Key(_message.Message):
    __slots__ = ("label", "key_id", "address", "public_key", "state", "created_at")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    label: str
    key_id: str
    address: str
    public_key: bytes
    state: KeyState
    created_at: str
    def __init__(self, label: _Optional[str] = ..., key_id: _Optional[str] = ..., address: _Optional[str] = ..., public_key: _Optional[bytes] = ..., state: _Optional[_Union[KeyState, str]] = ..., created_at: _Optional[str] = ...) -> None: ...

class CreateKeyRequest(_message.Message):
    __slots__ = ("label",)
    LABEL_FIELD_NUMBER: _ClassVar[int]
    label: str
    def __init__(self, label: _Optional[str] = ...) -> None: ...

class CreateKeyResponse(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: Key
    def __init__(self, key: _Optional[_Union[Key, _Mapping]] = ...) -> None: ...

class GetKeyRequest(_message.Message):
    __slots__ = ("label",)
    LABEL_FIELD_NUMBER: _ClassVar[int]
    label: str
    def __init__(self, label: _Optional[str] = ...) -> None: ...

class GetKeyResponse(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: Key
    def __init__(self, key: _Optional[_Union[Key, _Mapping]] = ...) -> None: ...

class ListKeysRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListKeysResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[Key]
    def __init__(self, keys: _Optional[_Iterable[_Union[Key, _Mapping]]] = ...) -> None: ...

class FreezeKeyRequest(_message.Message):
    __slots__ = ("label", "reason")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    label: str
    reason: str
    def __init__(self, label: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class FreezeKeyResponse(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: Key
    def __init__(self, key: _Optional[_Union[Key, _Mapping]] = ...) -> None: ...

class UnfreezeKeyRequest(_message.Message):
    __slots__ = ("label", "reason")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    label: str
    reason: str
    def __init__(self, label: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class UnfreezeKeyResponse(_message.Message):
    __slots__ = ("key", "request")
    KEY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    key: Key
    request: SigningRequest
    def __init__(self, key: _Optional[_Union[Key, _Mapping]] = ..., request: _Optional[_Union[SigningRequest, _Mapping]] = ...) -> None: ...

class QuorumTerm(_message.Message):
    __slots__ = ("group", "threshold")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    group: str
    threshold: int
    def __init__(self, group: _Optional[str] = ..., threshold: _Optional[int] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("action", "rule", "reason", "policy_version", "quorum", "timelock_seconds")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    QUORUM_FIELD_NUMBER: _ClassVar[int]
    TIMELOCK_SECONDS_FIELD_NUMBER: _ClassVar[int]
    action: str
    rule: str
    reason: str
    policy_version: int
    quorum: _containers.RepeatedCompositeFieldContainer[QuorumTerm]
    timelock_seconds: int
    def __init__(self, action: _Optional[str] = ..., rule: _Optional[str] = ..., reason: _Optional[str] = ..., policy_version: _Optional[int] = ..., quorum: _Optional[_Iterable[_Union[QuorumTerm, _Mapping]]] = ..., timelock_seconds: _Optional[int] = ...) -> None: ...

class ApprovalRecord(_message.Message):
    __slots__ = ("approver", "verdict", "reason", "created_at", "statement", "signature")
    APPROVER_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STATEMENT_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    approver: str
    verdict: str
    reason: str
    created_at: str
    statement: bytes
    signature: bytes
    def __init__(self, approver: _Optional[str] = ..., verdict: _Optional[str] = ..., reason: _Optional[str] = ..., created_at: _Optional[str] = ..., statement: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class SigningRequest(_message.Message):
    __slots__ = ("request_id", "key_label", "key_id", "address", "requester", "kind", "chain_id", "payload", "payload_hash", "digest", "decision", "state", "signature", "signed_tx", "tx_hash", "error", "created_at", "updated_at", "summary", "expires_at", "not_before", "approvals", "quorum_progress", "replaces")
    class SummaryEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_LABEL_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_HASH_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SIGNED_TX_FIELD_NUMBER: _ClassVar[int]
    TX_HASH_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_FIELD_NUMBER: _ClassVar[int]
    APPROVALS_FIELD_NUMBER: _ClassVar[int]
    QUORUM_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    REPLACES_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    key_label: str
    key_id: str
    address: str
    requester: str
    kind: PayloadKind
    chain_id: int
    payload: bytes
    payload_hash: bytes
    digest: bytes
    decision: Decision
    state: RequestState
    signature: bytes
    signed_tx: bytes
    tx_hash: bytes
    error: str
    created_at: str
    updated_at: str
    summary: _containers.ScalarMap[str, str]
    expires_at: str
    not_before: str
    approvals: _containers.RepeatedCompositeFieldContainer[ApprovalRecord]
    quorum_progress: str
    replaces: str
    def __init__(self, request_id: _Optional[str] = ..., key_label: _Optional[str] = ..., key_id: _Optional[str] = ..., address: _Optional[str] = ..., requester: _Optional[str] = ..., kind: _Optional[_Union[PayloadKind, str]] = ..., chain_id: _Optional[int] = ..., payload: _Optional[bytes] = ..., payload_hash: _Optional[bytes] = ..., digest: _Optional[bytes] = ..., decision: _Optional[_Union[Decision, _Mapping]] = ..., state: _Optional[_Union[RequestState, str]] = ..., signature: _Optional[bytes] = ..., signed_tx: _Optional[bytes] = ..., tx_hash: _Optional[bytes] = ..., error: _Optional[str] = ..., created_at: _Optional[str] = ..., updated_at: _Optional[str] = ..., summary: _Optional[_Mapping[str, str]] = ..., expires_at: _Optional[str] = ..., not_before: _Optional[str] = ..., approvals: _Optional[_Iterable[_Union[ApprovalRecord, _Mapping]]] = ..., quorum_progress: _Optional[str] = ..., replaces: _Optional[str] = ...) -> None: ...

class SubmitRequestRequest(_message.Message):
    __slots__ = ("key_label", "kind", "payload", "replaces_request_id")
    KEY_LABEL_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    REPLACES_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    key_label: str
    kind: PayloadKind
    payload: bytes
    replaces_request_id: str
    def __init__(self, key_label: _Optional[str] = ..., kind: _Optional[_Union[PayloadKind, str]] = ..., payload: _Optional[bytes] = ..., replaces_request_id: _Optional[str] = ...) -> None: ...

class SubmitRequestResponse(_message.Message):
    __slots__ = ("request",)
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    request: SigningRequest
    def __init__(self, request: _Optional[_Union[SigningRequest, _Mapping]] = ...) -> None: ...

class GetRequestRequest(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class GetRequestResponse(_message.Message):
    __slots__ = ("request",)
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    request: SigningRequest
    def __init__(self, request: _Optional[_Union[SigningRequest, _Mapping]] = ...) -> None: ...

class ListRequestsRequest(_message.Message):
    __slots__ = ("state", "key_label", "limit")
    STATE_FIELD_NUMBER: _ClassVar[int]
    KEY_LABEL_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    state: RequestState
    key_label: str
    limit: int
    def __init__(self, state: _Optional[_Union[RequestState, str]] = ..., key_label: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListRequestsResponse(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[SigningRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[SigningRequest, _Mapping]]] = ...) -> None: ...

class WatchRequestRequest(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class CancelRequestRequest(_message.Message):
    __slots__ = ("request_id", "reason")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    reason: str
    def __init__(self, request_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelRequestResponse(_message.Message):
    __slots__ = ("request",)
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    request: SigningRequest
    def __init__(self, request: _Optional[_Union[SigningRequest, _Mapping]] = ...) -> None: ...

class ApproveRequest(_message.Message):
    __slots__ = ("request_id", "statement", "signature")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STATEMENT_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    statement: bytes
    signature: bytes
    def __init__(self, request_id: _Optional[str] = ..., statement: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class ApproveResponse(_message.Message):
    __slots__ = ("request",)
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    request: SigningRequest
    def __init__(self, request: _Optional[_Union[SigningRequest, _Mapping]] = ...) -> None: ...

class RejectRequest(_message.Message):
    __slots__ = ("request_id", "statement", "signature", "reason")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STATEMENT_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    statement: bytes
    signature: bytes
    reason: str
    def __init__(self, request_id: _Optional[str] = ..., statement: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., reason: _Optional[str] = ...) -> None: ...

class RejectResponse(_message.Message):
    __slots__ = ("request",)
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    request: SigningRequest
    def __init__(self, request: _Optional[_Union[SigningRequest, _Mapping]] = ...) -> None: ...

class GetPolicyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetPolicyResponse(_message.Message):
    __slots__ = ("version", "document", "document_hash")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_HASH_FIELD_NUMBER: _ClassVar[int]
    version: int
    document: str
    document_hash: bytes
    def __init__(self, version: _Optional[int] = ..., document: _Optional[str] = ..., document_hash: _Optional[bytes] = ...) -> None: ...

class ProposePolicyRequest(_message.Message):
    __slots__ = ("document",)
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    document: str
    def __init__(self, document: _Optional[str] = ...) -> None: ...

class ProposePolicyResponse(_message.Message):
    __slots__ = ("request",)
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    request: SigningRequest
    def __init__(self, request: _Optional[_Union[SigningRequest, _Mapping]] = ...) -> None: ...

class ExplainRequestRequest(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class ConditionTrace(_message.Message):
    __slots__ = ("condition", "matched", "detail")
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    condition: str
    matched: bool
    detail: str
    def __init__(self, condition: _Optional[str] = ..., matched: _Optional[bool] = ..., detail: _Optional[str] = ...) -> None: ...

class RuleTrace(_message.Message):
    __slots__ = ("rule", "matched", "conditions")
    RULE_FIELD_NUMBER: _ClassVar[int]
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    rule: str
    matched: bool
    conditions: _containers.RepeatedCompositeFieldContainer[ConditionTrace]
    def __init__(self, rule: _Optional[str] = ..., matched: _Optional[bool] = ..., conditions: _Optional[_Iterable[_Union[ConditionTrace, _Mapping]]] = ...) -> None: ...

class ExplainRequestResponse(_message.Message):
    __slots__ = ("decision", "rules")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    decision: Decision
    rules: _containers.RepeatedCompositeFieldContainer[RuleTrace]
    def __init__(self, decision: _Optional[_Union[Decision, _Mapping]] = ..., rules: _Optional[_Iterable[_Union[RuleTrace, _Mapping]]] = ...) -> None: ...

class AuditEvent(_message.Message):
    __slots__ = ("sequence", "time", "actor", "kind", "request_id", "details_json", "previous_hash", "hash")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DETAILS_JSON_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_HASH_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    time: str
    actor: str
    kind: str
    request_id: str
    details_json: str
    previous_hash: bytes
    hash: bytes
    def __init__(self, sequence: _Optional[int] = ..., time: _Optional[str] = ..., actor: _Optional[str] = ..., kind: _Optional[str] = ..., request_id: _Optional[str] = ..., details_json: _Optional[str] = ..., previous_hash: _Optional[bytes] = ..., hash: _Optional[bytes] = ...) -> None: ...

class ListEventsRequest(_message.Message):
    __slots__ = ("request_id", "actor", "kind", "since", "until", "after_sequence", "limit")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    actor: str
    kind: str
    since: str
    until: str
    after_sequence: int
    limit: int
    def __init__(self, request_id: _Optional[str] = ..., actor: _Optional[str] = ..., kind: _Optional[str] = ..., since: _Optional[str] = ..., until: _Optional[str] = ..., after_sequence: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class ListEventsResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[AuditEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[AuditEvent, _Mapping]]] = ...) -> None: ...

class VerifyChainRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VerifyChainResponse(_message.Message):
    __slots__ = ("ok", "events_checked", "first_bad_sequence", "problem", "checkpoints_checked", "audit_public_key", "unsigned_tail", "last_sequence", "head_hash")
    OK_FIELD_NUMBER: _ClassVar[int]
    EVENTS_CHECKED_FIELD_NUMBER: _ClassVar[int]
    FIRST_BAD_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINTS_CHECKED_FIELD_NUMBER: _ClassVar[int]
    AUDIT_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    UNSIGNED_TAIL_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    HEAD_HASH_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    events_checked: int
    first_bad_sequence: int
    problem: str
    checkpoints_checked: int
    audit_public_key: bytes
    unsigned_tail: int
    last_sequence: int
    head_hash: bytes
    def __init__(self, ok: _Optional[bool] = ..., events_checked: _Optional[int] = ..., first_bad_sequence: _Optional[int] = ..., problem: _Optional[str] = ..., checkpoints_checked: _Optional[int] = ..., audit_public_key: _Optional[bytes] = ..., unsigned_tail: _Optional[int] = ..., last_sequence: _Optional[int] = ..., head_hash: _Optional[bytes] = ...) -> None: ...
