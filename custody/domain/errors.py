"""The one typed error hierarchy of custody.

Every failure that reaches a caller is one of these classes. The gRPC layer maps them to status codes by type
in a single table (``custody/api/errors.py``) and the CLI prints ``message`` as one sentence. Messages are
written for the person who sent the request: they say what was wrong and never carry secrets or internals.
"""

from __future__ import annotations


class CustodyError(Exception):
    """Base class: ``message`` is a complete, user-facing sentence."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidInput(CustodyError):
    """The request or a file is malformed; nothing was stored or signed."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


class NotFound(CustodyError):
    """An unknown key or request."""


class AlreadyExists(CustodyError):
    """A duplicate key label, approval or similar."""


class Unauthenticated(CustodyError):
    """No client certificate, or one the daemon does not know."""


class PermissionDenied(CustodyError):
    """The caller's role does not allow this operation."""


class FailedPrecondition(CustodyError):
    """The system is not in a state that allows the operation."""


class PolicyDenied(FailedPrecondition):
    """The policy refuses the request."""


class KeyFrozen(FailedPrecondition):
    """The key is frozen and signs nothing."""


class NonceConflict(FailedPrecondition):
    """Another payload already holds the nonce this one uses."""


class WrongState(FailedPrecondition):
    """The request is not in a state that allows this operation."""


class Aborted(CustodyError):
    """A concurrent change won the race; the caller may re-read and retry."""


class Unavailable(CustodyError):
    """A dependency (HSM, database, audit log) cannot be used right now."""


class HsmUnavailable(Unavailable):
    """The HSM cannot be reached or refused the operation for a transient reason."""


class StoreUnavailable(Unavailable):
    """The database cannot be read or written."""


class ResourceExhausted(CustodyError):
    """The daemon is overloaded or a limit was hit."""


class ConfigurationError(CustodyError):
    """A configuration or policy file is invalid; the daemon refuses to start."""


class PinRefused(ConfigurationError):
    """The HSM refused the PIN (wrong, locked or expired); trying it again only brings a lockout closer."""


class InternalError(CustodyError):
    """Anything unexpected; callers see only a correlation id."""
