"""The errors only the command line raises, the exit code each custody error gives, and the help text that
lists the exit codes (their values are in custody/exit_codes.py).
"""

from __future__ import annotations

from custody.domain import errors
from custody.domain.errors import ConfigurationError, CustodyError, Unavailable
from custody.exit_codes import EXIT_ERROR, EXIT_UNAVAILABLE, EXIT_USAGE

EXIT_CODES_EPILOG = (
    "\b\nExit codes:\n"
    "  0  success; for sign and requests wait: the request was signed (a policy change or unfreeze: approved)\n"
    "     or is waiting for approval\n"
    "  1  an error (the daemon refused the call, or a file could not be used)\n"
    "  2  usage error, or no client profile was given\n"
    "  3  the request ended unsigned (DENIED, REJECTED, EXPIRED, CANCELLED or FAILED)\n"
    "  4  the daemon or one of its dependencies is unavailable, or the daemon could not be reached\n"
    "  130  interrupted (Ctrl-C) or aborted\n"
    "With --json, an error is one JSON object on stdout, with the same exit code."
)

SERVE_EXIT_CODES_EPILOG = (
    "\b\nExit codes:\n"
    "  0   stopped cleanly (SIGTERM or Ctrl-C)\n"
    "  2   refused to start: the configuration, a file it names, the PIN (wrong or\n"
    "      locked), a key in the HSM or the audit log is wrong; a restart cannot fix\n"
    "      it, so systemd does not restart the daemon after code 2\n"
    "  75  the HSM or the database could not be reached at start (EX_TEMPFAIL);\n"
    "      systemd restarts the daemon, which starts once they are back"
)


class MissingProfile(ConfigurationError):
    """No client profile was named; this is a usage mistake, so it exits with EXIT_USAGE."""


class DaemonUnreachable(Unavailable):
    """The daemon did not answer at the address the profile (or --server) names."""


class ServerDisagrees(CustodyError):
    """The daemon's digest or payload hash is not what the payload it sent gives; nothing is signed."""


class NotConfirmed(CustodyError):
    """The approver did not confirm (or could not be asked to); nothing is signed."""


# The "code" of a --json error: the gRPC status name the daemon answers with for its errors, a short word for
# those only the command line raises. The first class in the list the error is an instance of gives the code.
_ERROR_CODES: tuple[tuple[type[CustodyError], str], ...] = (
    (MissingProfile, "usage"),
    (DaemonUnreachable, "unreachable"),
    (ServerDisagrees, "server_disagrees"),
    (NotConfirmed, "not_confirmed"),
    (errors.ConfigurationError, "configuration"),
    (errors.InvalidInput, "INVALID_ARGUMENT"),
    (errors.NotFound, "NOT_FOUND"),
    (errors.AlreadyExists, "ALREADY_EXISTS"),
    (errors.Unauthenticated, "UNAUTHENTICATED"),
    (errors.PermissionDenied, "PERMISSION_DENIED"),
    (errors.FailedPrecondition, "FAILED_PRECONDITION"),
    (errors.Aborted, "ABORTED"),
    (errors.Unavailable, "UNAVAILABLE"),
    (errors.ResourceExhausted, "RESOURCE_EXHAUSTED"),
    (errors.InternalError, "INTERNAL"),
)


def error_code_for(error: CustodyError) -> str:
    """The short code a --json error carries: a gRPC status name, or a word for the command line's own errors."""
    for error_class, code in _ERROR_CODES:
        if isinstance(error, error_class):
            return code
    return "error"


def exit_code_for(error: CustodyError) -> int:
    """The exit code for a custody error raised in the command line or reported by the daemon."""
    if isinstance(error, MissingProfile):
        return EXIT_USAGE
    if isinstance(error, Unavailable):
        return EXIT_UNAVAILABLE
    return EXIT_ERROR
