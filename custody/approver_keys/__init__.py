"""Approver keys: what the command line signs approval statements with, and where their secrets come from.

An approver's Ed25519 key lives either in a passphrase-encrypted PKCS#8 file (``pkcs8_file.py``) or in the
approver's own PKCS#11 token (``pkcs11_token.py``); both offer the tiny ``ApproverSigner`` interface. The
passphrase or PIN that unlocks the key comes from a file, an environment variable or a prompt, never from a
command-line argument, where other users of the machine could read it in the process list.
"""

from __future__ import annotations

import getpass
import os
import stat
import sys
from pathlib import Path
from typing import Protocol

from custody.domain.errors import ConfigurationError, InvalidInput

# A passphrase or PIN is short; a larger file is almost certainly the wrong file.
MAX_SECRET_FILE_BYTES = 4096


class ApproverSigner(Protocol):
    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key, as the policy names it (in hex)."""
        ...

    def sign(self, statement: bytes) -> bytes:
        """The 64-byte pure Ed25519 signature over ``statement``."""
        ...


def read_secret(*, file: Path | None, env: str | None, prompt: str | None) -> bytes:
    """Read a passphrase or PIN from ``file`` or the environment variable ``env``, else by prompting.

    At most one of ``file`` and ``env`` may be given; when neither is, ``prompt`` is shown on the terminal. A
    file must be readable by its owner alone (mode 0600 or stricter) and its one trailing newline, if any, is
    not part of the secret. Errors name the source but never contain the secret.
    """
    if file is not None and env is not None:
        raise InvalidInput(
            "give the secret either in a file or in an environment variable, not both", field="secret"
        )
    if file is not None:
        return _read_secret_file(file)
    if env is not None:
        value = os.environb.get(env.encode())
        if value is None:
            raise ConfigurationError(f"the environment variable {env} that should hold the secret is not set")
        if not value:
            raise ConfigurationError(f"the environment variable {env} that should hold the secret is empty")
        return value
    if prompt is None:
        raise ConfigurationError("no source for the secret was given: name a file or an environment variable")
    if not sys.stdin.isatty():
        raise ConfigurationError(
            "cannot prompt for the secret because standard input is not a terminal; name a file (mode 0600)"
            " or an environment variable that holds it"
        )
    secret = getpass.getpass(prompt).encode("utf-8")
    if not secret:
        raise InvalidInput("the secret typed at the prompt is empty", field="secret")
    return secret


def _read_secret_file(path: Path) -> bytes:
    content = read_owner_only_file(path, "secret file", MAX_SECRET_FILE_BYTES)
    # Editors end a file with a newline; it is not part of the passphrase.
    secret = content.removesuffix(b"\n").removesuffix(b"\r")
    if not secret:
        raise ConfigurationError(f"the secret file {path} is empty")
    return secret


def read_owner_only_file(path: Path, description: str, max_bytes: int) -> bytes:
    """Read a regular file of at most ``max_bytes`` that no one but its owner may read or change.

    ``description`` names the file in errors ("secret file", "approver key file").
    """
    try:
        # Checked before opening, because opening a named pipe would wait for a writer, and again on the opened
        # file, which is the one actually read.
        if not stat.S_ISREG(path.stat().st_mode):
            raise ConfigurationError(f"the {description} {path} is not a regular file")
        with path.open("rb") as handle:
            status = os.fstat(handle.fileno())
            if not stat.S_ISREG(status.st_mode):
                raise ConfigurationError(f"the {description} {path} is not a regular file")
            if status.st_mode & 0o077:
                raise ConfigurationError(
                    f"the {description} {path} can be read or changed by other users"
                    f" (mode {stat.S_IMODE(status.st_mode):04o}); run `chmod 600 {path}`"
                )
            content = handle.read(max_bytes + 1)
    except OSError as exc:
        raise ConfigurationError(f"the {description} {path} cannot be read: {exc.strerror}") from None
    if len(content) > max_bytes:
        raise ConfigurationError(f"the {description} {path} is larger than {max_bytes} bytes")
    return content
