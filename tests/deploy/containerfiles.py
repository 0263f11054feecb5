"""Reading Containerfiles the way a container engine does: one instruction per logical line."""

from __future__ import annotations

import json
from pathlib import Path


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs in order, comments dropped and continuation lines joined."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw_line in path.read_text(encoding="utf-8").splitlines():
        line = raw_line.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical = (pending + line).strip()
        pending = ""
        keyword, _, arguments = logical.partition(" ")
        result.append((keyword.upper(), arguments.strip()))
    assert not pending, f"{path} ends inside a continued line"
    return result


def healthcheck_command(path: Path) -> list[str]:
    """The exec-form command of the file's HEALTHCHECK instruction."""
    checks = [arguments for keyword, arguments in instructions(path) if keyword == "HEALTHCHECK"]
    assert len(checks) == 1, f"{path} must have exactly one HEALTHCHECK"
    _, separator, command = checks[0].partition("CMD ")
    assert separator, f"{path}: the HEALTHCHECK has no CMD"
    parsed = json.loads(command)
    assert isinstance(parsed, list) and all(isinstance(part, str) for part in parsed)
    return parsed
