"""The command line in a child process, as the unit and end-to-end tests run it: at a pseudo-terminal, with
answers typed at its prompts, or in a fresh interpreter to see which modules a command loads."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time


def run_at_a_terminal(command: list[str], answers: list[bytes], env: dict[str, str]) -> tuple[int, str]:
    """Run ``command`` with a pseudo-terminal as its standard streams, typing each of ``answers`` (as given:
    add the newline) once the screen ends in a prompt (": "); its exit code and the screen, lines ending in
    "\\n". The child runs in a session of its own, without a controlling terminal, so getpass and click read
    the pseudo-terminal they were given; subprocess (rather than pty.fork) keeps fork handlers of libraries
    loaded in this process, such as gRPC's, out of the child."""
    terminal, child_end = pty.openpty()
    child = subprocess.Popen(
        command, stdin=child_end, stdout=child_end, stderr=child_end, env=env, start_new_session=True
    )
    os.close(child_end)
    screen = b""
    pending = list(answers)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not select.select([terminal], [], [], 1)[0]:
            continue
        try:
            chunk = os.read(terminal, 4096)
        except OSError:
            break  # Every copy of the other end is closed: the child has exited.
        if not chunk:
            break
        screen += chunk
        # A prompt is waiting when the screen ends in ": " with nothing after it. Typing ahead of the prompt
        # would be lost: getpass flushes pending input when it turns echo off.
        if pending and screen.endswith(b": "):
            os.write(terminal, pending.pop(0))
    os.close(terminal)
    if child.poll() is None:
        child.kill()
    return child.wait(timeout=60), screen.decode(errors="replace").replace("\r\n", "\n")


def run_and_list_modules(arguments: list[str]) -> tuple[int, str, set[str]]:
    """Run ``custody ARGUMENTS`` in a fresh interpreter as the console script does; its exit code, what it
    printed on stdout, and the modules it had imported by the end."""
    script = (
        "import json, sys\n"
        "from custody.cli.main import run\n"
        f"code = run({arguments!r})\n"
        "print('\\nMODULES ' + json.dumps(sorted(sys.modules)))\n"
        "sys.exit(code)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CUSTODY_PROFILE": ""},
        check=False,
    )
    printed, modules = result.stdout.rsplit("\nMODULES ", 1)
    return result.returncode, printed, set(json.loads(modules))
