"""``custody dev init``: a complete local environment, from nothing, in one directory.

The directory holds a SoftHSM2 token, a small PKI (CA, server and client certificates), approver keys, the
server configuration, the development policy and one client profile per identity. Everything secret (HSM PINs,
TLS private keys, approver keys and their passphrases) is written readable by the owner only, and nothing
secret is returned to the caller: the command line prints paths, never PINs.

This is a developer tool that writes files with the adapters (SoftHSM2, key files, certificates), not a use
case of the daemon, so it lives beside the command that runs it (custody/cli/dev.py) rather than in custody.app.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from custody.approver_keys.pkcs8_file import generate_encrypted_key_file
from custody.config import bearer_token_hash, is_listen_address, load_server_config
from custody.domain.errors import AlreadyExists, InvalidInput
from custody.domain.principals import Role
from custody.hsm.softhsm import create_softhsm_token
from custody.tls.certificates import (
    IssuedCertificate,
    create_ca,
    issue_client_certificate,
    issue_server_certificate,
    write_private_key,
    write_public_file,
)

SOFTHSM_LABEL = "custody-dev"
DEFAULT_LISTEN = "127.0.0.1:50051"
# The Prometheus listener of a development environment (when enabled in server.toml) is the gRPC port plus this;
# the port in between is kept for the JSON-RPC endpoint.
METRICS_PORT_OFFSET = 2
DEFAULT_DATABASE_URL = "sqlite:///custody.db"
APPROVERS = ("alice", "bob", "carol", "dave")
CLIENT_IDENTITIES = ("backend", "alice", "bob", "carol", "dave", "admin")

_PRIVATE_DIRECTORY_MODE = 0o700
_SUBDIRECTORIES = ("softhsm", "secrets", "pki", "approvers", "profiles", "examples", "tokens")
# The JSON-RPC endpoint of a development environment is the gRPC port plus this.
JSONRPC_PORT_OFFSET = 1
_DATABASE_URL_SCHEMES = ("sqlite", "postgresql", "postgres")
# An identity names files (pki/NAME.pem, profiles/NAME.toml) and is a certificate's common name (at most 64).
_IDENTITY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

# A transfer of 0.01 ether on Sepolia: small enough for the development policy (at most 1 ether on chain ids 1
# and 11155111) to sign it at once. The recipient is the well-known 0x...dEaD burn address, so a test
# transaction that is broadcast by mistake sends Sepolia ether nowhere that matters.
_EXAMPLE_TRANSACTION = {
    "type": 2,
    "chainId": 11155111,
    "nonce": 0,
    "to": "0x000000000000000000000000000000000000dEaD",
    "value": 10_000_000_000_000_000,
    "gas": 21000,
    "maxFeePerGas": 30_000_000_000,
    "maxPriorityFeePerGas": 1_000_000_000,
}

# The "Mail" example of the EIP-712 specification (https://eips.ethereum.org/EIPS/eip-712, "Example"), whose
# signing digest the EIP publishes, so that a signature over it can be checked against the text of the EIP.
_EXAMPLE_TYPED_DATA = {
    "types": {
        "EIP712Domain": [
            {"name": "name", "type": "string"},
            {"name": "version", "type": "string"},
            {"name": "chainId", "type": "uint256"},
            {"name": "verifyingContract", "type": "address"},
        ],
        "Person": [{"name": "name", "type": "string"}, {"name": "wallet", "type": "address"}],
        "Mail": [
            {"name": "from", "type": "Person"},
            {"name": "to", "type": "Person"},
            {"name": "contents", "type": "string"},
        ],
    },
    "primaryType": "Mail",
    "domain": {
        "name": "Ether Mail",
        "version": "1",
        "chainId": 1,
        "verifyingContract": "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC",
    },
    "message": {
        "from": {"name": "Cow", "wallet": "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"},
        "to": {"name": "Bob", "wallet": "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB"},
        "contents": "Hello, Bob!",
    },
}


@dataclass(frozen=True)
class DevEnvironment:
    directory: Path
    server_config: Path
    policy_file: Path
    database_url: str  # as written to server.toml; may hold a PostgreSQL password, so print redacted_database
    hsm_pin_file: Path
    softhsm_config: Path
    ca_file: Path
    profiles: dict[str, Path]
    approver_keys: dict[str, Path]
    example_transaction: Path
    example_typed_data: Path
    listen: str = DEFAULT_LISTEN
    backend_token: Path | None = None  # the bearer token of backend for the JSON-RPC endpoint (mode 0600)

    @property
    def jsonrpc_listen(self) -> str:
        return jsonrpc_address(self.listen)

    @property
    def redacted_database(self) -> str:
        """The database URL without its password, safe to print."""
        return redact_database_url(self.database_url)


def init_dev_environment(
    directory: Path, database_url: str | None, listen: str | None = None
) -> DevEnvironment:
    """Build a development environment in ``directory``, which must not exist yet or be empty, whose daemon
    listens on ``listen`` (HOST:PORT, default 127.0.0.1:50051) and whose profiles connect there.

    If anything fails half-way, what was written is removed again, so the command can simply be re-run.
    """
    database_url = _check_database_url(database_url or DEFAULT_DATABASE_URL)
    listen = _check_listen(listen or DEFAULT_LISTEN)
    if (directory / "server.toml").exists():
        raise AlreadyExists(
            f"{directory} already holds a custody environment (it has a server.toml); remove the directory"
            " or choose another one."
        )
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise AlreadyExists(
            f"{directory} exists and is not an empty directory; `custody dev init` builds an environment only"
            " in a new or empty directory."
        )
    directory.mkdir(mode=_PRIVATE_DIRECTORY_MODE, parents=True, exist_ok=True)
    try:
        return _build(directory, database_url, listen)
    except BaseException:
        # The directory was empty or absent before, so everything in it is ours to remove.
        for child in directory.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        raise


@dataclass(frozen=True)
class AddedIdentity:
    name: str
    roles: tuple[Role, ...]
    certificate: Path
    private_key: Path
    profile: Path
    approver_key_file: (
        Path | None
    )  # where `approver-key create` puts the key, for an approver; None otherwise
    token_file: Path | None = None  # its bearer token for the JSON-RPC endpoint (mode 0600)
    token_hash: str = ""  # the [jsonrpc.tokens] value for that token


def add_dev_identity(directory: Path, name: str, roles: tuple[Role, ...]) -> AddedIdentity:
    """Issue a client certificate for ``name`` from the environment's CA and write ``profiles/NAME.toml``.

    The server's principals and the policy are left as they are: who may do what is the administrators'
    decision, so the caller prints what to add rather than granting anything.
    """
    if not _IDENTITY_NAME.fullmatch(name):
        raise InvalidInput(
            f"an identity name is 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit;"
            f" got {name!r}",
            field="NAME",
        )
    server_config = directory / "server.toml"
    if not server_config.is_file() or not (directory / "pki" / "ca.key").is_file():
        raise InvalidInput(
            f"{directory} is not a development environment made by `custody dev init` (it needs server.toml"
            " and pki/ca.key); run the command inside one or give it with --dir",
            field="--dir",
        )
    certificate = directory / "pki" / f"{name}.pem"
    profile = directory / "profiles" / f"{name}.toml"
    if certificate.exists() or profile.exists():
        raise AlreadyExists(
            f"the identity {name!r} already exists in {directory} ({certificate.name} or {profile.name});"
            " choose another name"
        )
    listen = load_server_config(server_config).listen
    ca = IssuedCertificate(
        cert_pem=(directory / "pki" / "ca.pem").read_bytes(),
        key_pem=(directory / "pki" / "ca.key").read_bytes(),
    )
    _write_certificate(directory / "pki", name, issue_client_certificate(ca, name))
    is_approver = Role.APPROVER in roles
    profile = _write_profile(directory, name, listen, approver_key=is_approver, approver_passphrase=False)
    token_file, hashed = _write_token(directory, name)
    return AddedIdentity(
        name=name,
        roles=roles,
        certificate=certificate,
        private_key=directory / "pki" / f"{name}.key",
        profile=profile,
        approver_key_file=directory / "approvers" / f"{name}.key" if is_approver else None,
        token_file=token_file,
        token_hash=hashed,
    )


def redact_database_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def _build(directory: Path, database_url: str, listen: str) -> DevEnvironment:
    # Secrets live under these directories, and the umask may be permissive, so the modes are set explicitly.
    os.chmod(directory, _PRIVATE_DIRECTORY_MODE)
    for name in _SUBDIRECTORIES:
        subdirectory = directory / name
        subdirectory.mkdir(mode=_PRIVATE_DIRECTORY_MODE)
        os.chmod(subdirectory, _PRIVATE_DIRECTORY_MODE)

    pin, so_pin = secrets.token_hex(16), secrets.token_hex(16)
    hsm_pin_file = directory / "secrets" / "hsm.pin"
    write_private_key(hsm_pin_file, pin.encode("ascii"))
    write_private_key(directory / "secrets" / "hsm.so-pin", so_pin.encode("ascii"))
    token = create_softhsm_token(directory / "softhsm", SOFTHSM_LABEL, pin, so_pin)
    _make_private_tree(directory / "softhsm")

    pki = directory / "pki"
    ca = create_ca()
    _write_certificate(pki, "ca", ca)
    _write_certificate(
        pki, "server", issue_server_certificate(ca, hostnames=("localhost",), ips=("127.0.0.1", "::1"))
    )
    for identity in CLIENT_IDENTITIES:
        _write_certificate(pki, identity, issue_client_certificate(ca, identity))

    approver_public_keys = {name: _write_approver_key(directory, name) for name in APPROVERS}
    approver_keys = {name: directory / "approvers" / f"{name}.key" for name in APPROVERS}

    # Imported here because the policy module loads the whole policy language (and eth-utils with it), which
    # `custody dev --help` and `dev add-identity` do not need.
    from custody.policy_file import dev_policy_toml

    policy_file = directory / "policy.toml"
    write_public_file(policy_file, dev_policy_toml(approver_public_keys).encode("utf-8"))

    backend_token, backend_token_hash = _write_token(directory, "backend")
    server_config = directory / "server.toml"
    softhsm_config = _relative_to(token.config_path, directory)
    write_public_file(
        server_config,
        _server_toml(
            module=token.module_path,
            softhsm_config=softhsm_config,
            database_url=database_url,
            listen=listen,
            backend_token_hash=backend_token_hash,
        ).encode(),
    )

    profiles = {
        identity: _write_profile(
            directory,
            identity,
            listen,
            approver_key=identity in APPROVERS,
            approver_passphrase=identity in APPROVERS,
        )
        for identity in CLIENT_IDENTITIES
    }

    example_transaction = directory / "examples" / "eip1559-tx.json"
    write_public_file(example_transaction, _json_document(_EXAMPLE_TRANSACTION))
    example_typed_data = directory / "examples" / "typed-data.json"
    write_public_file(example_typed_data, _json_document(_EXAMPLE_TYPED_DATA))

    return DevEnvironment(
        directory=directory,
        server_config=server_config,
        policy_file=policy_file,
        database_url=database_url,
        hsm_pin_file=hsm_pin_file,
        softhsm_config=token.config_path,
        ca_file=pki / "ca.pem",
        profiles=profiles,
        approver_keys=approver_keys,
        example_transaction=example_transaction,
        example_typed_data=example_typed_data,
        listen=listen,
        backend_token=backend_token,
    )


def _check_database_url(url: str) -> str:
    scheme = urlsplit(url).scheme
    if scheme not in _DATABASE_URL_SCHEMES or (scheme == "sqlite" and not url.startswith("sqlite:///")):
        raise InvalidInput(
            "give the database as sqlite:///PATH or postgresql://USER@HOST/NAME;"
            f" got a URL with scheme {scheme or 'none'!r}",
            field="--database",
        )
    return url


def _check_listen(listen: str) -> str:
    if not is_listen_address(listen):
        raise InvalidInput(f"give the address as HOST:PORT, got {listen!r}", field="--listen")
    if int(listen.rpartition(":")[2]) + METRICS_PORT_OFFSET > 65535:
        raise InvalidInput(
            f"the port must leave room for the metrics listener at PORT+{METRICS_PORT_OFFSET}; got {listen!r}",
            field="--listen",
        )
    return listen


def metrics_address(listen: str) -> str:
    """The development environment's metrics address for a gRPC address: the same host, PORT+2."""
    host, _, port = listen.rpartition(":")
    return f"{host}:{int(port) + METRICS_PORT_OFFSET}"


def jsonrpc_address(listen: str) -> str:
    """The development environment's JSON-RPC address for a gRPC address: the same host, PORT+1."""
    host, _, port = listen.rpartition(":")
    return f"{host}:{int(port) + JSONRPC_PORT_OFFSET}"


def _write_token(directory: Path, name: str) -> tuple[Path, str]:
    """A new bearer token for ``name`` in tokens/NAME.token (mode 0600, the token alone on one line), and the
    hash server.toml's [jsonrpc.tokens] holds for it."""
    token = secrets.token_urlsafe(32)
    path = directory / "tokens" / f"{name}.token"
    path.parent.mkdir(mode=_PRIVATE_DIRECTORY_MODE, exist_ok=True)
    write_private_key(path, (token + "\n").encode("ascii"))
    return path, bearer_token_hash(token)


def _make_private_tree(root: Path) -> None:
    # The token files hold the HSM's (PIN-encrypted) key material; only the owner may list or read them.
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        os.chmod(path, _PRIVATE_DIRECTORY_MODE if path.is_dir() else 0o600)


def _write_certificate(pki: Path, name: str, issued: IssuedCertificate) -> None:
    write_public_file(pki / f"{name}.pem", issued.cert_pem)
    write_private_key(pki / f"{name}.key", issued.key_pem)


def _write_approver_key(directory: Path, name: str) -> str:
    """Write an Ed25519 approver key, encrypted under a random passphrase kept next to it in secrets/, and
    return its raw public key as 64 hex digits, the form the policy names approvers' keys in."""
    passphrase = secrets.token_urlsafe(24).encode("ascii")
    write_private_key(directory / "secrets" / f"{name}.passphrase", passphrase)
    public_key = generate_encrypted_key_file(directory / "approvers" / f"{name}.key", passphrase).hex()
    write_public_file(directory / "approvers" / f"{name}.pub", (public_key + "\n").encode("ascii"))
    return public_key


def _write_profile(
    directory: Path, identity: str, listen: str, *, approver_key: bool, approver_passphrase: bool
) -> Path:
    lines = [
        f"# custody client profile for {identity}",
        f"server = {_toml_string(listen)}",
        'ca_file = "../pki/ca.pem"            # relative paths resolve against this file\'s directory',
        f"cert_file = {_toml_string(f'../pki/{identity}.pem')}",
        f"key_file = {_toml_string(f'../pki/{identity}.key')}",
    ]
    if approver_key:
        lines.append(f"approver_key_file = {_toml_string(f'../approvers/{identity}.key')}")
    if approver_passphrase:
        lines.append(f"approver_passphrase_file = {_toml_string(f'../secrets/{identity}.passphrase')}")
    path = directory / "profiles" / f"{identity}.toml"
    write_public_file(path, ("\n".join(lines) + "\n").encode("utf-8"))
    return path


def _server_toml(
    *, module: str, softhsm_config: str, database_url: str, listen: str, backend_token_hash: str
) -> str:
    return f"""\
# custody daemon configuration for a local development environment (made by `custody dev init`).
# Relative paths resolve against the directory of this file.
listen = {_toml_string(listen)}

# Prometheus metrics are off in development; to serve them, uncomment these two lines (the address is the
# gRPC port plus {METRICS_PORT_OFFSET}, the port in between being kept for the JSON-RPC endpoint). A second
# replica sharing this file moves its listeners with `custody serve --listen ... --metrics-listen ...`.
# [metrics]
# listen = {_toml_string(metrics_address(listen))}

[tls]
ca_file = "pki/ca.pem"
cert_file = "pki/server.pem"
key_file = "pki/server.key"

[hsm]
module = {_toml_string(module)}
token_label = {_toml_string(SOFTHSM_LABEL)}
pin_file = "secrets/hsm.pin"
[hsm.environment]
# Set before the PKCS#11 library loads: SoftHSM2 reads its configuration once per process.
SOFTHSM2_CONF = {_toml_string(softhsm_config)}

[database]
url = {_toml_string(database_url)}

[policy]
file = "policy.toml"

# The Ethereum JSON-RPC endpoint (web3.py, ethers, viem, Foundry), over TLS with the server certificate above;
# callers present a client certificate of the CA or a bearer token whose SHA-256 is listed below.
# Add `upstream = "http://127.0.0.1:8545"` (a node) for eth_sendTransaction and the read methods.
[jsonrpc]
listen = {_toml_string(jsonrpc_address(listen))}
[jsonrpc.tokens]
backend = {_toml_string(backend_token_hash)}    # the token is in tokens/backend.token

# Who may do what. The identity is the client certificate's common name.
[principals.backend]
roles = ["requester"]
keys = ["ops", "treasury"]

[principals.carol]
roles = ["requester", "approver"]
keys = ["treasury"]

[principals.alice]
roles = ["approver"]
[principals.bob]
roles = ["approver"]
[principals.dave]
roles = ["approver", "security"]
[principals.admin]
roles = ["admin", "auditor"]
"""


def _toml_string(value: str) -> str:
    # A JSON string is a valid TOML basic string: both escape quotes, backslashes and control characters.
    return json.dumps(value, ensure_ascii=False)


def _json_document(value: object) -> bytes:
    return (json.dumps(value, indent=2) + "\n").encode("utf-8")


def _relative_to(path: Path, directory: Path) -> str:
    try:
        return str(path.resolve().relative_to(directory.resolve()))
    except ValueError:
        return str(path.resolve())
