"""Which client profile a command uses: --profile, else $CUSTODY_PROFILE (custody.client.profile reads it)."""

from __future__ import annotations

import os
from pathlib import Path

from custody.cli.errors import MissingProfile
from custody.client.profile import ClientProfile, load_profile, read_profile_file

__all__ = [
    "PROFILE_ENVIRONMENT_VARIABLE",
    "ClientProfile",
    "find_profile_path",
    "load_profile",
    "read_profile_file",
]

PROFILE_ENVIRONMENT_VARIABLE = "CUSTODY_PROFILE"

# The profile `custody dev init dev-env` writes for the administrator; suggested when no profile is given and
# such an environment exists in the working directory.
_DEV_ENVIRONMENT_PROFILES = Path("dev-env") / "profiles"


def find_profile_path(given: str | None) -> Path:
    """The profile named by --profile, else by CUSTODY_PROFILE; MissingProfile says how to name one."""
    named = given or os.environ.get(PROFILE_ENVIRONMENT_VARIABLE)
    if named:
        return Path(named)
    hint = ""
    if _DEV_ENVIRONMENT_PROFILES.is_dir():
        hint = (
            f" (for the local development environment: --profile {_DEV_ENVIRONMENT_PROFILES / 'admin.toml'})"
        )
    raise MissingProfile(
        f"no client profile given; pass --profile FILE or set {PROFILE_ENVIRONMENT_VARIABLE}{hint}."
    )
