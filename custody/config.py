"""The daemon's configuration file (``server.toml``): parsed strictly, validated once at start.

Every problem is reported as one ConfigurationError naming the file, the key and what is wrong, so an operator
can fix it without reading code. Relative paths resolve against the directory of the configuration file, so
an environment can be moved as a whole. Secrets are never stored in this file: the HSM PIN comes from a file
(mode 0600) or an environment variable.

Values that name files (the PIN file, TLS files, the policy file, the PKCS#11 module, values of
[hsm.environment]) and the database URL may contain ``${NAME}``, replaced at start by the environment variable
NAME: systemd's ``${CREDENTIALS_DIRECTORY}`` or a container's secret mount can so be named without writing the
path (or a database password) into this file. An unset or empty variable is a configuration error.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from custody.domain.errors import ConfigurationError
from custody.domain.principals import Principal, Role
from custody.observability.logs import LogFormat, default_format

DEFAULT_LISTEN = "127.0.0.1:50051"
# Payloads are capped at 128 KiB by the parsers; the transport limit leaves room for the envelope.
DEFAULT_MAX_MESSAGE_BYTES = 512 * 1024
DEFAULT_JSONRPC_MAX_BATCH = 20
MAX_JSONRPC_BATCH = 1000
TOKEN_HASH_PREFIX = "sha256:"  # noqa: S105 -- names a hash format, not a secret
_TOKEN_HASH = re.compile(r"sha256:[0-9a-f]{64}")
DATABASE_URL_PREFIXES = ("sqlite:///", "postgresql://", "postgres://")
MAX_HSM_LANES = 16
_ENVIRONMENT_REFERENCE = re.compile(r"\$\{([^}]*)\}")
_ENVIRONMENT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class TlsConfig:
    ca_file: Path
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class HsmConfig:
    module: str
    token_label: str
    pin_file: Path | None
    pin_env: str | None
    environment: Mapping[str, str] = field(default_factory=dict)
    # Start the gRPC server at once and keep trying the token every wait_seconds, instead of refusing to start.
    wait_for_token: bool = False
    wait_seconds: float = 2.0
    # Worker processes that call the HSM, each with its own library initialization and login.
    lanes: int = 1
    # Sign a request the policy signs at once inside the write transaction that records it: for an HSM in this
    # machine (SoftHSM2, a PCIe card) whose call takes a fraction of a millisecond, never with lanes.
    sign_in_write_transaction: bool = False


@dataclass(frozen=True)
class Limits:
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_workers: int = 16
    max_concurrent_rpcs: int = 256
    shutdown_grace_seconds: float = 10.0
    # How often the background worker expires overdue requests and signs time-locked ones that came due.
    worker_interval_seconds: float = 1.0
    # The worker signs a checkpoint over the audit log's head once this many events followed the last one.
    audit_checkpoint_every: int = 1000
    # ... and once the oldest event no checkpoint covers is this many seconds old, so that an export of a quiet
    # daemon is covered by a signed checkpoint within about this long.
    audit_checkpoint_interval_seconds: float = 60.0
    # Watch streams (WatchRequest, the health service's Watch) open at once. Each holds one of the max_workers
    # threads for as long as it is open, so they are capped well below it and the rest stay free for unary
    # calls (approvals, health checks). When unset: a quarter of max_workers, at least 1.
    max_watches: int = 4
    # A WatchRequest stream ends after this many seconds even when the request is not final yet; the CLI
    # subscribes again. A watch therefore never keeps a thread indefinitely.
    watch_seconds: float = 60.0


@dataclass(frozen=True)
class MetricsConfig:
    listen: str | None = None  # HOST:PORT of the Prometheus listener; None serves no metrics


@dataclass(frozen=True)
class JsonRpcConfig:
    """The Ethereum JSON-RPC endpoint (custody.jsonrpc). ``listen`` None leaves it off."""

    listen: str | None = None
    # Plain HTTP instead of TLS: refused unless ``listen`` is a loopback address, so that bearer tokens and
    # signatures never cross a network in the clear.
    plain_http: bool = False
    # The node that eth_sendTransaction fills missing fields from and broadcasts to, and that read methods are
    # forwarded to. May hold an API key, so it is never repeated in a message.
    upstream: str | None = None
    max_batch: int = DEFAULT_JSONRPC_MAX_BATCH
    # The chain id eth_chainId answers when no upstream node is configured to ask.
    chain_id: int | None = None
    # Identity name -> SHA-256 of its bearer token. Only the hash is configured; the token is the caller's.
    tokens: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class LoggingConfig:
    format: LogFormat = "json"


@dataclass(frozen=True)
class ServerConfig:
    path: Path
    listen: str
    tls: TlsConfig
    hsm: HsmConfig
    database_url: str
    policy_file: Path
    principals: Mapping[str, Principal]
    limits: Limits
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    jsonrpc: JsonRpcConfig = field(default_factory=JsonRpcConfig)

    @property
    def base_dir(self) -> Path:
        return self.path.parent


_TOP_LEVEL_KEYS = {
    "listen",
    "tls",
    "hsm",
    "database",
    "policy",
    "principals",
    "limits",
    "metrics",
    "logging",
    "jsonrpc",
}


class _Reader:
    """Reads typed values out of the parsed TOML, naming ``file: key`` in every error."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.base_dir = path.parent

    def fail(self, key: str, problem: str) -> ConfigurationError:
        return ConfigurationError(f"{self.path}: {key}: {problem}")

    def table(
        self, data: Mapping[str, Any], key: str, allowed: set[str], *, required: bool = True
    ) -> dict[str, Any]:
        value = data.get(key.rsplit(".", 1)[-1])
        if value is None:
            if required:
                raise self.fail(key, "this section is required")
            return {}
        if not isinstance(value, dict):
            raise self.fail(key, "must be a table")
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise self.fail(
                key, f"unknown setting(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
            )
        return value

    def boolean(self, data: Mapping[str, Any], key: str, default: bool) -> bool:
        value = data.get(key.rsplit(".", 1)[-1], default)
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, got {value!r}")
        return value

    def string(self, data: Mapping[str, Any], key: str, *, required: bool = True) -> str | None:
        value = data.get(key.rsplit(".", 1)[-1])
        if value is None:
            if required:
                raise self.fail(key, "is required")
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, "must be a non-empty string")
        return value

    def expanded(self, key: str, value: str) -> str:
        """``value`` with every ${NAME} replaced by the environment variable NAME."""

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if not _ENVIRONMENT_NAME.fullmatch(name):
                raise self.fail(key, f"${{{name}}} is not a valid environment variable reference")
            found = os.environ.get(name, "")
            if not found:
                raise self.fail(key, f"the environment variable {name} is not set (or empty)")
            return found

        return _ENVIRONMENT_REFERENCE.sub(replace, value)

    def path_value(self, data: Mapping[str, Any], key: str, *, must_exist: bool = True) -> Path:
        raw = self.string(data, key)
        assert raw is not None
        resolved = self.resolve(self.expanded(key, raw))
        if must_exist and not resolved.is_file():
            raise self.fail(key, f"file {resolved} does not exist")
        return resolved

    def resolve(self, raw: str) -> Path:
        candidate = Path(raw).expanduser()
        return candidate if candidate.is_absolute() else (self.base_dir / candidate).resolve()

    def positive(self, data: Mapping[str, Any], key: str, default: float, *, integer: bool = True) -> Any:
        value = data.get(key.rsplit(".", 1)[-1], default)
        allowed_types = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, allowed_types) or value <= 0:
            raise self.fail(key, f"must be a positive {'integer' if integer else 'number'}, got {value!r}")
        return value


def load_server_config(path: Path) -> ServerConfig:
    """Read and validate ``server.toml``; raises ConfigurationError naming file, key and problem."""
    path = path.resolve()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(f"{path}: the configuration file does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(
            f"{path}: cannot read the configuration file ({exc.__class__.__name__})"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: not valid TOML: {exc}") from None

    reader = _Reader(path)
    unknown = sorted(set(data) - _TOP_LEVEL_KEYS)
    if unknown:
        raise reader.fail(unknown[0], f"unknown setting; allowed: {', '.join(sorted(_TOP_LEVEL_KEYS))}")

    listen = reader.string(data, "listen", required=False) or DEFAULT_LISTEN
    _check_address(reader, "listen", listen)

    tls_table = reader.table(data, "tls", {"ca_file", "cert_file", "key_file"})
    tls = TlsConfig(
        ca_file=reader.path_value(tls_table, "tls.ca_file"),
        cert_file=reader.path_value(tls_table, "tls.cert_file"),
        key_file=reader.path_value(tls_table, "tls.key_file"),
    )

    hsm_table = reader.table(
        data,
        "hsm",
        {
            "module",
            "token_label",
            "pin_file",
            "pin_env",
            "environment",
            "wait_for_token",
            "wait_seconds",
            "lanes",
            "sign_in_write_transaction",
        },
    )
    pin_file_raw = reader.string(hsm_table, "hsm.pin_file", required=False)
    pin_env = reader.string(hsm_table, "hsm.pin_env", required=False)
    if (pin_file_raw is None) == (pin_env is None):
        raise reader.fail(
            "hsm", "set exactly one of pin_file and pin_env (the PIN is never written in this file)"
        )
    environment_raw = hsm_table.get("environment", {})
    if not isinstance(environment_raw, dict) or not all(isinstance(v, str) for v in environment_raw.values()):
        raise reader.fail("hsm.environment", "must be a table of string values")
    # Values that name files (SOFTHSM2_CONF, vendor client configs) are resolved like every other path, so a
    # relative entry means the same thing wherever the daemon is started from.
    environment = {}
    for name, raw_value in environment_raw.items():
        value = reader.expanded(f"hsm.environment.{name}", raw_value)
        environment[name] = str(reader.resolve(value)) if _looks_like_path(value) else value
    module = reader.string(hsm_table, "hsm.module")
    token_label = reader.string(hsm_table, "hsm.token_label")
    assert module is not None and token_label is not None
    lanes = reader.positive(hsm_table, "hsm.lanes", 1)
    if lanes > MAX_HSM_LANES:
        raise reader.fail("hsm.lanes", f"must be at most {MAX_HSM_LANES}, got {lanes}")
    sign_in_write_transaction = reader.boolean(hsm_table, "hsm.sign_in_write_transaction", False)
    if sign_in_write_transaction and lanes > 1:
        # Lanes are for an HSM whose calls take milliseconds; every writer would wait out each of them.
        raise reader.fail(
            "hsm.sign_in_write_transaction",
            "cannot be used with lanes: it holds the database's write lock during the HSM call, which only a"
            " local HSM answers fast enough; remove one of the two settings",
        )
    hsm = HsmConfig(
        module=reader.expanded("hsm.module", module),
        token_label=token_label,
        pin_file=reader.resolve(reader.expanded("hsm.pin_file", pin_file_raw)) if pin_file_raw else None,
        pin_env=pin_env,
        environment=environment,
        wait_for_token=reader.boolean(hsm_table, "hsm.wait_for_token", False),
        wait_seconds=float(reader.positive(hsm_table, "hsm.wait_seconds", 2.0, integer=False)),
        lanes=lanes,
        sign_in_write_transaction=sign_in_write_transaction,
    )

    database_table = reader.table(data, "database", {"url"})
    database_url_raw = reader.string(database_table, "database.url")
    assert database_url_raw is not None
    database_url = reader.expanded("database.url", database_url_raw)
    if not database_url.startswith(DATABASE_URL_PREFIXES):
        # The URL may hold a password, so the message describes it without repeating it.
        raise reader.fail(
            "database.url", "must be a sqlite:///PATH or postgresql://[USER[:PASSWORD]@]HOST[:PORT]/DB URL"
        )

    policy_table = reader.table(data, "policy", {"file"})
    policy_file = reader.path_value(policy_table, "policy.file")

    limits_table = reader.table(
        data,
        "limits",
        {
            "max_message_bytes",
            "max_workers",
            "max_concurrent_rpcs",
            "shutdown_grace_seconds",
            "worker_interval_seconds",
            "audit_checkpoint_every",
            "audit_checkpoint_interval_seconds",
            "max_watches",
            "watch_seconds",
        },
        required=False,
    )
    defaults = Limits()
    max_workers = reader.positive(limits_table, "limits.max_workers", defaults.max_workers)
    max_watches = reader.positive(limits_table, "limits.max_watches", default_max_watches(max_workers))
    if max_watches >= max_workers:
        # Watches that could take every thread would leave none for approvals and health checks: the daemon
        # would look alive and answer nothing.
        if "max_watches" not in limits_table:
            raise reader.fail(
                "limits.max_workers",
                f"must be at least 2, got {max_workers}: one thread serves watch streams and the others"
                " serve every other call",
            )
        raise reader.fail(
            "limits.max_watches",
            f"must be below max_workers ({max_workers}) so that watch streams cannot take every thread,"
            f" got {max_watches}",
        )
    limits = Limits(
        max_message_bytes=reader.positive(
            limits_table, "limits.max_message_bytes", defaults.max_message_bytes
        ),
        max_workers=max_workers,
        max_concurrent_rpcs=reader.positive(
            limits_table, "limits.max_concurrent_rpcs", defaults.max_concurrent_rpcs
        ),
        shutdown_grace_seconds=float(
            reader.positive(
                limits_table, "limits.shutdown_grace_seconds", defaults.shutdown_grace_seconds, integer=False
            )
        ),
        worker_interval_seconds=float(
            reader.positive(
                limits_table,
                "limits.worker_interval_seconds",
                defaults.worker_interval_seconds,
                integer=False,
            )
        ),
        audit_checkpoint_every=reader.positive(
            limits_table, "limits.audit_checkpoint_every", defaults.audit_checkpoint_every
        ),
        audit_checkpoint_interval_seconds=float(
            reader.positive(
                limits_table,
                "limits.audit_checkpoint_interval_seconds",
                defaults.audit_checkpoint_interval_seconds,
                integer=False,
            )
        ),
        max_watches=max_watches,
        watch_seconds=float(
            reader.positive(limits_table, "limits.watch_seconds", defaults.watch_seconds, integer=False)
        ),
    )

    metrics_table = reader.table(data, "metrics", {"listen"}, required=False)
    metrics_listen = reader.string(metrics_table, "metrics.listen", required=False)
    if metrics_listen is not None:
        _check_address(reader, "metrics.listen", metrics_listen, allow_any_port=True)

    logging_table = reader.table(data, "logging", {"format"}, required=False)
    log_format = reader.string(logging_table, "logging.format", required=False) or default_format()
    if log_format not in ("json", "text"):
        raise reader.fail("logging.format", f'must be "json" or "text", got {log_format!r}')

    principals = _read_principals(reader, data.get("principals"))
    jsonrpc = _read_jsonrpc(reader, data, principals)
    return ServerConfig(
        path=path,
        listen=listen,
        tls=tls,
        hsm=hsm,
        database_url=database_url,
        policy_file=policy_file,
        principals=principals,
        limits=limits,
        metrics=MetricsConfig(listen=metrics_listen),
        logging=LoggingConfig(format="json" if log_format == "json" else "text"),
        jsonrpc=jsonrpc,
    )


def _read_jsonrpc(
    reader: _Reader, data: Mapping[str, Any], principals: Mapping[str, Principal]
) -> JsonRpcConfig:
    table = reader.table(
        data,
        "jsonrpc",
        {"listen", "plain_http", "upstream", "max_batch", "chain_id", "tokens"},
        required=False,
    )
    listen = reader.string(table, "jsonrpc.listen", required=False)
    if listen is not None:
        # Port 0 lets the system pick a free port, which the daemon names in its "JSON-RPC listening" line.
        _check_address(reader, "jsonrpc.listen", listen, allow_any_port=True)
    plain_http = reader.boolean(table, "jsonrpc.plain_http", False)
    if plain_http and listen is not None and not is_loopback_address(listen):
        raise reader.fail(
            "jsonrpc.plain_http",
            f"plain HTTP is allowed only on a loopback address (127.0.0.1, ::1, localhost), not {listen!r};"
            " remove plain_http to serve TLS with the [tls] certificate",
        )
    upstream_raw = reader.string(table, "jsonrpc.upstream", required=False)
    upstream = None
    if upstream_raw is not None:
        upstream = reader.expanded("jsonrpc.upstream", upstream_raw)
        # The URL may carry an API key, so the message describes it without repeating it.
        if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", upstream):
            raise reader.fail("jsonrpc.upstream", "must be an http:// or https:// URL of an Ethereum node")
        if upstream.startswith("http://") and not _is_loopback_host(urlsplit(upstream).hostname or ""):
            # The node fills in nonces and fees and broadcasts: over plain HTTP anyone on the way could
            # change what it answers.
            raise reader.fail(
                "jsonrpc.upstream",
                "must be an https:// URL for a node that is not on this machine; plain http:// is allowed only"
                " for a loopback address (127.0.0.1, ::1, localhost)",
            )
    max_batch = reader.positive(table, "jsonrpc.max_batch", DEFAULT_JSONRPC_MAX_BATCH)
    if max_batch > MAX_JSONRPC_BATCH:
        raise reader.fail("jsonrpc.max_batch", f"must be at most {MAX_JSONRPC_BATCH}, got {max_batch}")
    chain_id = table.get("chain_id")
    if chain_id is not None:
        chain_id = reader.positive(table, "jsonrpc.chain_id", 1)
    tokens_raw = table.get("tokens", {})
    if not isinstance(tokens_raw, dict):
        raise reader.fail("jsonrpc.tokens", 'must be a table of identity = "sha256:<64 hex digits>"')
    tokens: dict[str, bytes] = {}
    for name, value in tokens_raw.items():
        key = f"jsonrpc.tokens.{name}"
        if name not in principals:
            raise reader.fail(key, f"{name!r} is not a principal of [principals]; a token authenticates one")
        # A token itself would be a secret in a file many people read; only its hash belongs here.
        if not isinstance(value, str) or not _TOKEN_HASH.fullmatch(value):
            raise reader.fail(
                key,
                'must be "sha256:" and 64 lowercase hex digits, the SHA-256 of the token'
                " (custody dev init writes one; never the token itself)",
            )
        tokens[name] = bytes.fromhex(value.removeprefix(TOKEN_HASH_PREFIX))
    if len(set(tokens.values())) != len(tokens):
        raise reader.fail(
            "jsonrpc.tokens", "two identities have the same token hash; each needs its own token"
        )
    return JsonRpcConfig(
        listen=listen,
        plain_http=plain_http,
        upstream=upstream,
        max_batch=max_batch,
        chain_id=chain_id,
        tokens=tokens,
    )


def default_max_watches(max_workers: int) -> int:
    """The [limits] max_watches that applies when the file sets none: a quarter of the threads, at least 1."""
    return max(1, max_workers // 4)


def _read_principals(reader: _Reader, raw: Any) -> dict[str, Principal]:
    if not isinstance(raw, dict) or not raw:
        raise reader.fail(
            "principals", 'name at least one principal, e.g. [principals.admin] roles = ["admin"]'
        )
    role_names = {role.value for role in Role}
    principals: dict[str, Principal] = {}
    for name, entry in raw.items():
        key = f"principals.{name}"
        if not isinstance(entry, dict):
            raise reader.fail(key, "must be a table with roles (and keys for requesters)")
        unknown = sorted(set(entry) - {"roles", "keys"})
        if unknown:
            raise reader.fail(key, f"unknown setting(s) {', '.join(unknown)}; allowed: keys, roles")
        roles_raw = entry.get("roles")
        if not isinstance(roles_raw, list) or not roles_raw or not all(isinstance(r, str) for r in roles_raw):
            raise reader.fail(f"{key}.roles", f"must be a non-empty list of: {', '.join(sorted(role_names))}")
        bad_roles = sorted(set(roles_raw) - role_names)
        if bad_roles:
            raise reader.fail(
                f"{key}.roles",
                f"unknown role(s) {', '.join(bad_roles)}; known: {', '.join(sorted(role_names))}",
            )
        keys_raw = entry.get("keys", [])
        if not isinstance(keys_raw, list) or not all(isinstance(k, str) for k in keys_raw):
            raise reader.fail(f"{key}.keys", "must be a list of key labels")
        roles = frozenset(Role(r) for r in roles_raw)
        if keys_raw and Role.REQUESTER not in roles:
            raise reader.fail(f"{key}.keys", "only a principal with the requester role can be granted keys")
        principals[name] = Principal(name=name, roles=roles, keys=frozenset(keys_raw))
    return principals


def with_listener_overrides(
    config: ServerConfig,
    *,
    listen: str | None = None,
    metrics_listen: str | None = None,
    jsonrpc_listen: str | None = None,
) -> ServerConfig:
    """``config`` with the addresses given on the command line in place of the configured ones.

    Each listener can be moved on its own, so that two replicas can share one configuration file (and one
    database) and still listen on different ports.
    """
    # Port 0 lets the system pick a free port, which the daemon names in its "listening on" line: tests and
    # scripts that start several daemons rely on it.
    if listen is not None:
        if not is_listen_address(listen, allow_any_port=True):
            raise ConfigurationError(f"--listen: must be HOST:PORT, got {listen!r}")
        config = replace(config, listen=listen)
    if metrics_listen is not None:
        if not is_listen_address(metrics_listen, allow_any_port=True):
            raise ConfigurationError(f"--metrics-listen: must be HOST:PORT, got {metrics_listen!r}")
        config = replace(config, metrics=replace(config.metrics, listen=metrics_listen))
    if jsonrpc_listen is not None:
        if not is_listen_address(jsonrpc_listen, allow_any_port=True):
            raise ConfigurationError(f"--jsonrpc-listen: must be HOST:PORT, got {jsonrpc_listen!r}")
        if config.jsonrpc.plain_http and not is_loopback_address(jsonrpc_listen):
            raise ConfigurationError(
                f"--jsonrpc-listen: {jsonrpc_listen!r} is not a loopback address, and [jsonrpc] plain_http"
                " allows plain HTTP only on one"
            )
        config = replace(config, jsonrpc=replace(config.jsonrpc, listen=jsonrpc_listen))
    return config


def bearer_token_hash(token: str) -> str:
    """The value [jsonrpc.tokens] holds for a bearer token: "sha256:" and the hex of its SHA-256."""
    return TOKEN_HASH_PREFIX + hashlib.sha256(token.encode("ascii")).hexdigest()


def is_loopback_address(address: str) -> bool:
    """Whether HOST:PORT names a loopback host (127.0.0.0/8, ::1 or localhost)."""
    return _is_loopback_host(address.rpartition(":")[0].removeprefix("[").removesuffix("]"))


def _is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_listen_address(address: str, *, allow_any_port: bool = False) -> bool:
    """Whether ``address`` is HOST:PORT; ``allow_any_port`` admits port 0, which lets the system pick a free
    port."""
    host, sep, port = address.rpartition(":")
    lowest = 0 if allow_any_port else 1
    return bool(sep and host and port.isdigit() and lowest <= int(port) < 65536)


def _check_address(reader: _Reader, key: str, address: str, *, allow_any_port: bool = False) -> None:
    if not is_listen_address(address, allow_any_port=allow_any_port):
        raise reader.fail(key, f"must be HOST:PORT, got {address!r}")


def _looks_like_path(value: str) -> bool:
    return "/" in value or value.endswith((".conf", ".cfg", ".ini", ".json", ".toml"))


def read_secret_file(path: Path, what: str) -> str:
    """Read a secret (a PIN) from a file that only its owner can read; refuse group- or world-readable files.

    The content is stripped of its trailing newline. Neither the content nor a part of it ever appears in an
    error message.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigurationError(f"the {what} file {path} does not exist") from None
    except OSError as exc:
        raise ConfigurationError(f"cannot read the {what} file {path} ({exc.strerror})") from None
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise ConfigurationError(
            f"the {what} file {path} can be read by other users (mode {stat.S_IMODE(info.st_mode):o});"
            " make it mode 0600 or stricter"
        )
    secret = path.read_text(encoding="utf-8").rstrip("\r\n")
    if not secret:
        raise ConfigurationError(f"the {what} file {path} is empty")
    return secret


def read_hsm_pin(hsm: HsmConfig) -> str:
    if hsm.pin_file is not None:
        return read_secret_file(hsm.pin_file, "HSM PIN")
    assert hsm.pin_env is not None
    pin = os.environ.get(hsm.pin_env, "")
    if not pin:
        raise ConfigurationError(f"the environment variable {hsm.pin_env} holding the HSM PIN is not set")
    return pin
