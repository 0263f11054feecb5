"""SoftHSM2 tokens for tests and for ``custody dev init``.

SoftHSM2 reads the file named by ``SOFTHSM2_CONF`` once, when the library is initialised (python-pkcs11 does
that the first time ``pkcs11.lib(path)`` is called in a process, and caches the library per path). A process
therefore sees exactly one token directory: code that needs several tokens should create them all in one
``directory`` under different labels rather than in several directories.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from custody.domain.errors import ConfigurationError, InvalidInput

logger = logging.getLogger(__name__)

SOFTHSM2_MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/lib/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
)

# SoftHSM2 stores token labels in the 32-byte CK_TOKEN_INFO.label field.
_MAX_TOKEN_LABEL_BYTES = 32

_CONFIG_TEMPLATE = """\
# Written by custody: a SoftHSM2 configuration whose tokens live next to this file.
directories.tokendir = {tokendir}
objectstore.backend = file
log.level = ERROR
slots.removable = false
"""


@dataclass(frozen=True)
class SoftHsmToken:
    config_path: Path  # the softhsm2.conf to export as SOFTHSM2_CONF before the library is first loaded
    module_path: str
    label: str


def find_softhsm2_module() -> str:
    """Return the path of the SoftHSM2 PKCS#11 library, or raise ConfigurationError saying how to get it."""
    for candidate in SOFTHSM2_MODULE_CANDIDATES:
        if Path(candidate).is_file():
            return candidate
    raise ConfigurationError(
        "the SoftHSM2 PKCS#11 library was not found in any of "
        f"{', '.join(SOFTHSM2_MODULE_CANDIDATES)}; install softhsm2 (for example `apt-get install softhsm2`)"
    )


def write_softhsm_config(directory: Path) -> Path:
    """Write ``directory/softhsm2.conf`` with its token directory at ``directory/tokens``; return its path.

    Writing the same configuration twice is harmless, so several tokens can share one directory.
    """
    token_dir = directory / "tokens"
    token_dir.mkdir(parents=True, exist_ok=True)
    config_path = directory / "softhsm2.conf"
    config_path.write_text(_CONFIG_TEMPLATE.format(tokendir=token_dir.resolve()), encoding="utf-8")
    return config_path


def create_softhsm_token(directory: Path, label: str, pin: str, so_pin: str) -> SoftHsmToken:
    """Initialise a fresh SoftHSM2 token labelled ``label`` whose files live under ``directory``.

    softhsm2-util accepts PINs only on its command line, so they appear in that child's argv and nowhere
    else: not in this process's environment, not in logs, and not in the errors raised here.
    """
    if not label or len(label.encode("utf-8")) > _MAX_TOKEN_LABEL_BYTES:
        raise InvalidInput(
            f"a token label is 1 to {_MAX_TOKEN_LABEL_BYTES} bytes of UTF-8; got {label!r}", field="label"
        )
    if not pin or not so_pin:
        raise InvalidInput("a SoftHSM2 token needs a non-empty user PIN and SO PIN", field="pin")
    module_path = find_softhsm2_module()
    util = shutil.which("softhsm2-util")
    if util is None:
        raise ConfigurationError(
            "the softhsm2-util command was not found on PATH; install softhsm2 (for example "
            "`apt-get install softhsm2`)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    config_path = write_softhsm_config(directory)
    child_environment = dict(os.environ, SOFTHSM2_CONF=str(config_path))
    command = [util, "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", so_pin]
    try:
        completed = subprocess.run(
            command, env=child_environment, capture_output=True, text=True, check=False, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        # The exception text may repeat the command line, so only its type is reported.
        raise ConfigurationError(
            f"softhsm2-util could not be run to create token {label!r}: {type(exc).__name__}"
        ) from None
    if completed.returncode != 0:
        output = _redact(f"{completed.stderr.strip()} {completed.stdout.strip()}".strip(), (pin, so_pin))
        raise ConfigurationError(
            f"softhsm2-util failed to create token {label!r} (exit status {completed.returncode}): {output}"
        )
    logger.info("created SoftHSM2 token %r in %s", label, directory)
    return SoftHsmToken(config_path=config_path, module_path=module_path, label=label)


def _redact(text: str, secrets: tuple[str, ...]) -> str:
    """Replace every occurrence of each secret in ``text`` so tool output can be shown safely."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "<redacted>")
    return text
