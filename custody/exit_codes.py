"""The exit codes of custody's processes: the ``custody`` command and the daemon it runs (``custody serve``).

Scripts and the service manager branch on them, so each code has one meaning. They live outside the command
line and the composition root so that both can use them without one importing the other.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_REQUEST_UNSIGNED = 3
EXIT_UNAVAILABLE = 4
EXIT_INTERRUPTED = 130
# `custody serve` has codes of its own, for the service manager: 2 is a refusal to start that only a person
# can fix (configuration, PIN, audit log), so systemd must not restart it; 75 (EX_TEMPFAIL from sysexits.h)
# is a dependency that was unreachable at start (HSM, database), which a restart a little later may find back.
EXIT_START_REFUSED = 2
EXIT_START_TEMPORARY_FAILURE = 75
