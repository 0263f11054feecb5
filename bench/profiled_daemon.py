"""Run `custody serve` with every Python thread under cProfile, counting CPU time (not wall time).

    CUSTODY_PROFILE_OUT=FILE .venv/bin/python bench/profiled_daemon.py serve --config ... --listen ...

cProfile profiles only the thread that enables it, and the daemon's work happens in gRPC's worker threads,
so every thread started after this module runs gets a profiler of its own; on exit (SIGTERM) all of them are
merged into one pstats file. The main thread, which starts the daemon and then waits for a signal, is not
profiled, so the start-up is left out. The timer is the thread's CPU clock, so a thread waiting for a lock, the HSM or
the disk counts nothing. Used by bench/signing_rate.py --profile; not part of `make test`.
"""

from __future__ import annotations

import atexit
import cProfile
import os
import pstats
import sys
import threading
import time

_profiles: list[cProfile.Profile] = []
_profiles_lock = threading.Lock()
_original_run = threading.Thread.run


def _profiled_run(self: threading.Thread) -> None:
    profile = cProfile.Profile(time.thread_time)
    with _profiles_lock:
        _profiles.append(profile)
    profile.enable()
    try:
        _original_run(self)
    finally:
        profile.disable()


def _write_profiles() -> None:
    with _profiles_lock:
        profiles = list(_profiles)
    if not profiles:
        return
    merged = pstats.Stats(profiles[0])
    for profile in profiles[1:]:
        merged.add(profile)
    merged.dump_stats(os.environ["CUSTODY_PROFILE_OUT"])


def main() -> None:
    threading.Thread.run = _profiled_run  # type: ignore[method-assign]
    atexit.register(_write_profiles)
    from custody.cli.main import main as custody_main

    sys.argv[0] = "custody"
    custody_main()


if __name__ == "__main__":
    main()
