"""CustodyClient: a typed gRPC client for services that request signatures (submit, get, wait, cancel, keys).

It connects with a client profile as the command line does. It offers no approvals: approving is a person's
act at the command line, with their own key. gRPC errors come back as custody's typed errors
(custody.domain.errors), whose message is the daemon's one sentence.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import grpc

from custody.api._gen import custody_pb2 as pb
from custody.api._gen import custody_pb2_grpc as pb_grpc
from custody.client.profile import load_profile
from custody.client.transport import ERRORS_BY_STATUS, secure_channel
from custody.domain import errors

if TYPE_CHECKING:
    from custody.client.account import CustodyAccount

PayloadKindName = Literal["transaction", "typed_data", "message"]

UNARY_TIMEOUT_SECONDS = 60.0
FINAL_STATES = frozenset({"SIGNED", "DENIED", "REJECTED", "EXPIRED", "CANCELLED", "FAILED"})
_KINDS: dict[str, Any] = {
    "transaction": pb.PAYLOAD_KIND_TRANSACTION,
    "typed_data": pb.PAYLOAD_KIND_TYPED_DATA,
    "message": pb.PAYLOAD_KIND_MESSAGE,
}
# The generated stubs carry no annotations; going through Any keeps their untyped constructors out of mypy's way.
_KEY_SERVICE_STUB: Any = pb_grpc.KeyServiceStub
_SIGNING_SERVICE_STUB: Any = pb_grpc.SigningServiceStub

_T = TypeVar("_T")


@dataclass(frozen=True)
class KeyInfo:
    label: str
    key_id: str
    address: str  # EIP-55
    public_key: bytes
    state: str  # ACTIVE or FROZEN


@dataclass(frozen=True)
class RequestInfo:
    """A signing request as the daemon answered it; ``signature`` and, for transactions, ``signed_tx`` and
    ``tx_hash`` once it is SIGNED."""

    request_id: str
    state: str
    key_label: str
    kind: str
    chain_id: int | None
    digest: bytes
    signature: bytes | None = None
    signed_tx: bytes | None = None
    tx_hash: bytes | None = None
    error: str = ""
    decision_reason: str = ""
    quorum_progress: str = ""
    summary: dict[str, str] = field(default_factory=dict)

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    @classmethod
    def from_pb(cls, message: pb.SigningRequest) -> RequestInfo:
        return cls(
            request_id=message.request_id,
            state=pb.RequestState.Name(message.state).removeprefix("REQUEST_STATE_"),
            key_label=message.key_label,
            kind=pb.PayloadKind.Name(message.kind).removeprefix("PAYLOAD_KIND_").lower(),
            chain_id=message.chain_id or None,
            digest=message.digest,
            signature=message.signature or None,
            signed_tx=message.signed_tx or None,
            tx_hash=message.tx_hash or None,
            error=message.error,
            decision_reason=message.decision.reason,
            quorum_progress=message.quorum_progress,
            summary=dict(message.summary),
        )


class CustodyClient:
    """One mTLS channel to a daemon. Use it as a context manager, or call ``close``."""

    def __init__(
        self, channel: grpc.Channel, address: str, *, timeout: float = UNARY_TIMEOUT_SECONDS
    ) -> None:
        self._channel = channel
        self.address = address
        self._timeout = timeout
        self._keys = _KEY_SERVICE_STUB(channel)
        self._signing = _SIGNING_SERVICE_STUB(channel)

    @classmethod
    def from_profile(cls, path: str | Path, *, server: str | None = None) -> CustodyClient:
        """Connect as the client profile at ``path`` says (``server`` overrides its address), as
        ``custody --profile PATH`` does."""
        profile = load_profile(Path(path))
        address = server or profile.server
        return cls(secure_channel(profile, address), address)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> CustodyClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    # -- keys -----------------------------------------------------------------------------------------------------

    def key(self, label: str) -> KeyInfo:
        return _key_info(self._call(self._keys.GetKey, pb.GetKeyRequest(label=label)).key)

    def list_keys(self) -> list[KeyInfo]:
        return [_key_info(key) for key in self._call(self._keys.ListKeys, pb.ListKeysRequest()).keys]

    def account(self, key_label: str, *, wait_seconds: float = 0.0) -> CustodyAccount:
        """A CustodyAccount for the key labelled ``key_label`` (see custody.client.account)."""
        from custody.client.account import CustodyAccount

        return CustodyAccount(self, key_label, wait_seconds=wait_seconds)

    # -- requests -------------------------------------------------------------------------------------------------

    def submit(
        self, key_label: str, kind: PayloadKindName, payload: bytes, *, replaces: str | None = None
    ) -> RequestInfo:
        """Submit a payload for signing; the answer is the request as the policy left it (SIGNED at once,
        PENDING_APPROVAL, DENIED, ...). A payload the daemon cannot read raises InvalidInput."""
        if kind not in _KINDS:
            raise errors.InvalidInput("must be transaction, typed_data or message", field="kind")
        message = pb.SubmitRequestRequest(
            key_label=key_label, kind=_KINDS[kind], payload=payload, replaces_request_id=replaces or ""
        )
        return RequestInfo.from_pb(self._call(self._signing.SubmitRequest, message).request)

    def get(self, request_id: str) -> RequestInfo:
        return RequestInfo.from_pb(
            self._call(self._signing.GetRequest, pb.GetRequestRequest(request_id=request_id)).request
        )

    def cancel(self, request_id: str, reason: str) -> RequestInfo:
        message = pb.CancelRequestRequest(request_id=request_id, reason=reason)
        return RequestInfo.from_pb(self._call(self._signing.CancelRequest, message).request)

    def wait(self, request_id: str, timeout: float | None = None) -> RequestInfo:
        """The request once it is final, or as it is when ``timeout`` seconds have passed (None: no limit).

        It follows the daemon's WatchRequest stream, subscribing again when the daemon ends a watch (it does
        after ``[limits] watch_seconds``) and reading the request when the daemon refuses another watch.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        latest = self.get(request_id)
        while not latest.is_final:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            try:
                for update in self._watch(request_id, remaining):
                    latest = RequestInfo.from_pb(update)
                    if latest.is_final:
                        break
            except grpc.RpcError as error:
                code = error.code() if isinstance(error, grpc.Call) else None
                if code is grpc.StatusCode.DEADLINE_EXCEEDED:
                    break
                if code is not grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise _custody_error(error, self.address) from None
                time.sleep(1.0)  # The daemon serves as many watches as it allows; poll meanwhile.
                latest = self.get(request_id)
        return latest

    def _watch(self, request_id: str, timeout: float | None) -> Iterator[pb.SigningRequest]:
        stream: Iterator[pb.SigningRequest] = self._signing.WatchRequest(
            pb.WatchRequestRequest(request_id=request_id), timeout=timeout
        )
        return stream

    def _call(self, method: Callable[..., _T], message: Any) -> _T:
        try:
            return method(message, timeout=self._timeout)
        except grpc.RpcError as error:
            raise _custody_error(error, self.address) from None


def _key_info(key: pb.Key) -> KeyInfo:
    return KeyInfo(
        label=key.label,
        key_id=key.key_id,
        address=key.address,
        public_key=key.public_key,
        state=pb.KeyState.Name(key.state).removeprefix("KEY_STATE_"),
    )


def _custody_error(error: grpc.RpcError, address: str) -> errors.CustodyError:
    code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (error.details() if isinstance(error, grpc.Call) else None) or ""
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return errors.Unavailable(f"the custody daemon at {address} did not answer in time")
    error_class = ERRORS_BY_STATUS.get(code, errors.CustodyError)
    return error_class(details or f"the custody daemon at {address} answered {code.name}")
