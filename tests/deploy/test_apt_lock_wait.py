"""scripts/wait-for-apt-locks.sh, which scripts/ensure-system-deps.sh runs before apt-get: while another
process holds one of apt's lock files it waits and says so, and it gives up with a sentence once the limit is
reached. The lock here is a file of the test's own, held open by a child process, as dpkg holds its lock."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "wait-for-apt-locks.sh"

pytestmark = pytest.mark.skipif(
    shutil.which("fuser") is None,
    reason="fuser (Debian's psmisc) is not installed, so no lock holder is seen",
)


@pytest.fixture
def lock(tmp_path: Path) -> Path:
    path = tmp_path / "lock-frontend"
    path.write_bytes(b"")
    return path


@pytest.fixture
def holder(lock: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process holding the lock file open until it is told to let go (a line on its stdin)."""
    process = subprocess.Popen(
        [sys.executable, "-c", f"f = open({str(lock)!r}, 'r+'); print('held', flush=True); input()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stdout.readline() == b"held\n"
    yield process
    if process.poll() is None:
        process.kill()
    process.wait()


def run(lock: Path, *, limit: int, poll: int = 1) -> subprocess.Popen[str]:
    environment = {**os.environ, "APT_LOCK_WAIT_SECONDS": str(limit), "APT_LOCK_POLL_SECONDS": str(poll)}
    return subprocess.Popen(
        ["bash", str(SCRIPT), str(lock)],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_free_lock_is_passed_at_once_without_a_word(lock: Path) -> None:
    waiter = run(lock, limit=0)
    out, err = waiter.communicate(timeout=30)
    assert (waiter.returncode, out, err) == (0, "", "")


def test_a_held_lock_is_waited_for_saying_so_until_it_is_released(
    lock: Path, holder: subprocess.Popen[bytes]
) -> None:
    waiter = run(lock, limit=120)
    assert waiter.stdout is not None
    # The waiter says what it waits for while the holder still holds the lock.
    assert waiter.stdout.readline() == f"Waiting for another apt or dpkg run to release {lock} ...\n"
    assert waiter.poll() is None
    assert holder.stdin is not None
    holder.stdin.write(b"\n")
    holder.stdin.flush()
    holder.wait(timeout=30)
    _, err = waiter.communicate(timeout=60)
    assert (waiter.returncode, err) == (0, "")


def test_a_lock_held_past_the_limit_fails_with_a_sentence(
    lock: Path, holder: subprocess.Popen[bytes]
) -> None:
    waiter = run(lock, limit=1)
    out, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 1
    assert out == f"Waiting for another apt or dpkg run to release {lock} ...\n"
    assert err == f"apt is still locked after 1 seconds ({lock}); try again later\n"
    assert holder.poll() is None
