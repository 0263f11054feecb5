"""deploy/Containerfile, Containerfile.dev and compose.yaml, checked as far as possible without an engine.

No container engine runs here, so these tests read the files: a non-root user, a health check through
`custody health`, state on a volume, SoftHSM2 only in the development image, and a compose file with
PostgreSQL and two replicas sharing one configuration. Added run time: under 1 s.
"""

from __future__ import annotations

import re

import pytest

from tests.deploy.conftest import DEPLOY
from tests.deploy.containerfiles import healthcheck_command, instructions

CONTAINERFILES = ("Containerfile", "Containerfile.dev")


@pytest.mark.parametrize("name", CONTAINERFILES)
def test_the_image_runs_as_a_non_root_user(name: str) -> None:
    steps = instructions(DEPLOY / name)
    final_stage = steps[max(index for index, (keyword, _) in enumerate(steps) if keyword == "FROM") :]
    users = [arguments for keyword, arguments in final_stage if keyword == "USER"]
    assert users, f"{name}: the final stage sets no USER, so it would run as root"
    user, _, group = users[-1].partition(":")
    assert user not in ("root", "0") and group not in ("root", "0"), users[-1]
    # Nothing after the USER line may need root: the engine runs the remaining steps as that user.
    after_user = final_stage[max(i for i, (keyword, _) in enumerate(final_stage) if keyword == "USER") :]
    assert not [arguments for keyword, arguments in after_user if keyword == "RUN"]


@pytest.mark.parametrize("name", CONTAINERFILES)
def test_the_image_is_slim_keeps_state_on_a_volume_and_checks_health(name: str) -> None:
    steps = instructions(DEPLOY / name)
    bases = [arguments.split()[0] for keyword, arguments in steps if keyword == "FROM"]
    assert all(re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", base) for base in bases), bases
    assert ("VOLUME", '["/var/lib/custody"]') in steps
    command = healthcheck_command(DEPLOY / name)
    assert command[:2] == ["custody", "health"]
    assert "--profile" in command


def test_softhsm2_is_only_in_the_development_image() -> None:
    production = instructions(DEPLOY / "Containerfile")
    assert not [arguments for _, arguments in production if "softhsm" in arguments.lower()]
    installs = [
        arguments for keyword, arguments in instructions(DEPLOY / "Containerfile.dev") if keyword == "RUN"
    ]
    assert any("apt-get install" in run and "softhsm2" in run for run in installs)


def test_the_production_image_serves_the_mounted_configuration() -> None:
    steps = dict(instructions(DEPLOY / "Containerfile"))
    assert steps["ENTRYPOINT"] == '["custody"]'
    assert steps["CMD"] == '["serve", "--config", "/etc/custody/server.toml", "--listen", "0.0.0.0:50051"]'


def test_compose_runs_postgresql_and_two_replicas_on_one_configuration() -> None:
    text = (DEPLOY / "compose.yaml").read_text(encoding="utf-8")
    services = re.search(r"^services:\n(.*?)^\S", text, flags=re.MULTILINE | re.DOTALL)
    assert services is not None
    names = re.findall(r"^  ([a-z0-9-]+):$", services.group(1), flags=re.MULTILINE)
    assert names == ["postgres", "init", "custody-1", "custody-2"]
    assert re.search(r"image: docker\.io/library/postgres:\d+", text)
    serve_commands = re.findall(r'command: \["serve", (.*)\]', text)
    # Both replicas serve one configuration, each with its own --listen.
    assert len(serve_commands) == 2
    assert len(set(serve_commands)) == 1
    assert '"--config", "/var/lib/custody/env/server.toml", "--listen"' in serve_commands[0]
    assert "custody dev init /var/lib/custody/env --database postgresql://" in text
    # The database password never appears in the file: it comes from the operator's environment.
    assert "PGPASSWORD: ${CUSTODY_DB_PASSWORD:?" in text
    assert "read_only: true" in text
