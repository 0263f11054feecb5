"""Client profiles: which daemon to call and with which certificates (TOML, written by ``custody dev init``).

The command line and the Python client (custody.client) read the same files.

A profile looks like this; relative paths resolve against the directory of the profile file, so an
environment directory can be moved as a whole::

    server = "127.0.0.1:50051"
    ca_file = "../pki/ca.pem"
    cert_file = "../pki/alice.pem"
    key_file = "../pki/alice.key"
    approver_key_file = "../approvers/alice.key"               # approvers only
    approver_passphrase_file = "../secrets/alice.passphrase"   # approvers only

An approver whose Ed25519 key lives in their own PKCS#11 token names it instead of ``approver_key_file``::

    approver_pkcs11_module = "/usr/lib/softhsm/libsofthsm2.so"
    approver_token_label = "alice"
    approver_key_label = "alice-approver"
    approver_pin_file = "../secrets/alice.pin"                 # optional; else a prompt or the environment

Passphrases and PINs are read from the named file, else from CUSTODY_APPROVER_PASSPHRASE or
CUSTODY_APPROVER_PIN, else from a prompt; never from a command-line argument.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from custody.domain.errors import ConfigurationError

_KNOWN_ENTRIES = frozenset(
    {
        "server",
        "ca_file",
        "cert_file",
        "key_file",
        "approver_key_file",
        "approver_passphrase_file",
        "approver_pkcs11_module",
        "approver_token_label",
        "approver_key_label",
        "approver_pin_file",
    }
)


@dataclass(frozen=True)
class ClientProfile:
    path: Path
    server: str
    ca_file: Path
    cert_file: Path
    key_file: Path
    approver_key_file: Path | None = None
    approver_passphrase_file: Path | None = None
    approver_pkcs11_module: str | None = None
    approver_token_label: str | None = None
    approver_key_label: str | None = None
    approver_pin_file: Path | None = None


def load_profile(path: Path) -> ClientProfile:
    """Read and check a profile file; every problem is a ConfigurationError naming the file and the entry."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(f"client profile {path} does not exist.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigurationError(f"cannot read client profile {path}: {_reason(error)}.") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigurationError(f"client profile {path} is not valid TOML: {error}.") from None

    unknown = sorted(set(document) - _KNOWN_ENTRIES)
    if unknown:
        raise ConfigurationError(
            f"client profile {path} has unknown entries {', '.join(unknown)};"
            f" known entries are {', '.join(sorted(_KNOWN_ENTRIES))}."
        )
    server = document.get("server")
    if not isinstance(server, str) or not server:
        raise ConfigurationError(f'client profile {path} needs server = "HOST:PORT".')

    return ClientProfile(
        path=path,
        server=server,
        ca_file=_required_path(document, "ca_file", path),
        cert_file=_required_path(document, "cert_file", path),
        key_file=_required_path(document, "key_file", path),
        approver_key_file=_optional_path(document, "approver_key_file", path),
        approver_passphrase_file=_optional_path(document, "approver_passphrase_file", path),
        # A module is a library path as the dynamic loader takes it, so it is not resolved against the profile.
        approver_pkcs11_module=_optional_string(document, "approver_pkcs11_module", path),
        approver_token_label=_optional_string(document, "approver_token_label", path),
        approver_key_label=_optional_string(document, "approver_key_label", path),
        approver_pin_file=_optional_path(document, "approver_pin_file", path),
    )


def read_profile_file(profile: ClientProfile, entry: str, path: Path) -> bytes:
    """The bytes of a file a profile names, or a ConfigurationError naming both the file and the profile."""
    try:
        return path.read_bytes()
    except OSError as error:
        raise ConfigurationError(
            f"cannot read {entry} {path} named by client profile {profile.path}: {_reason(error)}."
        ) from None


def _required_path(document: dict[str, object], entry: str, profile_path: Path) -> Path:
    resolved = _optional_path(document, entry, profile_path)
    if resolved is None:
        raise ConfigurationError(f'client profile {profile_path} needs {entry} = "PATH".')
    return resolved


def _optional_path(document: dict[str, object], entry: str, profile_path: Path) -> Path | None:
    value = document.get(entry)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"client profile {profile_path}: {entry} must be a file path in quotes.")
    # Relative paths are relative to the profile, not to the working directory, so that an environment
    # directory works wherever the command is run from.
    return profile_path.parent / value


def _optional_string(document: dict[str, object], entry: str, profile_path: Path) -> str | None:
    value = document.get(entry)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigurationError(
            f"client profile {profile_path}: {entry} must be a non-empty string in quotes."
        )
    return value


def _reason(error: Exception) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return str(error)
