"""End-to-end fixtures: a real `custody dev init` environment and a real daemon process, driven over mTLS."""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest

from custody.api._gen import custody_pb2_grpc as pb_grpc
from tests.daemons import CUSTODY, NotifyListener, serve, wait_until_listening, wait_until_serving

IDENTITIES = ("backend", "alice", "bob", "carol", "dave", "admin")


@dataclass
class Daemon:
    process: subprocess.Popen[str]
    address: str
    log_path: Path
    notifications: NotifyListener  # what the daemon told "systemd": READY=1, STATUS=..., WATCHDOG=1

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


# The database backends the suite runs on; CUSTODY_TEST_BACKENDS narrows them (e.g. "sqlite"). Tests of what
# depends on the store (replicas sharing a database, crashes, a tampered database) request the ``backend``
# fixture and run once per backend; the others run on the first.
BACKENDS = tuple(os.environ.get("CUSTODY_TEST_BACKENDS", "sqlite,postgresql").split(","))
# CUSTODY_TEST_SIGN_IN_WRITE_TRANSACTION=1 runs every daemon of the suite with `[hsm] sign_in_write_transaction
# = true` (requests the policy signs at once are signed inside the transaction that records them), so that the
# whole reliability suite can be run in that mode; tests that parametrize it pass it to make_dev_env.
SIGN_IN_WRITE_TRANSACTION = os.environ.get("CUSTODY_TEST_SIGN_IN_WRITE_TRANSACTION") == "1"
# Tests create and drop databases of their own on the PostgreSQL server CI and developers have locally; the
# store tests read the same variable (an administrative URL ending in a database name).
POSTGRES_SERVER = os.environ.get(
    "CUSTODY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
).rsplit("/", 1)[0]


@dataclass
class DevEnv:
    directory: Path
    database_url: str | None = None  # None: the default SQLite file in the directory

    @property
    def config(self) -> Path:
        return self.directory / "server.toml"

    @property
    def backend(self) -> str:
        return "postgresql" if self.database_url else "sqlite"

    def sql(self, statement: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement directly on the environment's database, behind the daemon's back (tests of
        tampering and of start-up refusals). Placeholders are written "?"."""
        if self.database_url is None:
            with sqlite3.connect(self.directory / "custody.db") as connection:
                return connection.execute(statement, tuple(parameters)).fetchall()
        with psycopg.connect(self.database_url, autocommit=True) as connection:
            cursor = connection.execute(statement.replace("?", "%s"), tuple(parameters))  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []

    def profile(self, identity: str) -> Path:
        return self.directory / "profiles" / f"{identity}.toml"

    def pki(self, name: str) -> bytes:
        return (self.directory / "pki" / name).read_bytes()


def run_cli(
    env: DevEnv,
    daemon: Daemon | None,
    identity: str | None,
    *args: str,
    stdin: str | None = None,
    check: bool = True,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the real `custody` console script as a user would."""
    command = [CUSTODY]
    if identity is not None:
        command += ["--profile", str(env.profile(identity))]
    if daemon is not None:
        command += ["--server", daemon.address]
    command += list(args)
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
        env={**os.environ, "CUSTODY_PROFILE": "", **(extra_env or {})},
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{command} exited {result.returncode}: {result.stderr}")
    return result


def cli_json(env: DevEnv, daemon: Daemon, identity: str, *args: str) -> object:
    return json.loads(run_cli(env, daemon, identity, "--json", *args).stdout)


def start_daemon(
    env: DevEnv, log_path: Path, extra_env: dict[str, str] | None = None, *, waiting_for_token: bool = False
) -> Daemon:
    """`custody serve` on a free port, returned once it said READY=1 on its notify socket (see tests/daemons.py);
    with ``waiting_for_token``, once it said that it waits for its absent HSM token."""
    process, listener = serve(["--config", str(env.config), "--listen", "127.0.0.1:0"], log_path, extra_env)
    try:
        wait = wait_until_listening if waiting_for_token else wait_until_serving
        address = wait(process, listener, log_path)
    except BaseException:
        listener.close()
        raise
    return Daemon(process=process, address=address, log_path=log_path, notifications=listener)


def stop_daemon(daemon: Daemon) -> int:
    """SIGTERM, and the exit code once the daemon stopped (it is killed after 30 s, and the test fails)."""
    try:
        if daemon.process.poll() is None:
            daemon.process.send_signal(signal.SIGTERM)
            try:
                return daemon.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.process.kill()
                daemon.process.wait()
                raise
        return daemon.process.returncode
    finally:
        daemon.notifications.close()


def channel_for(
    env: DevEnv,
    daemon: Daemon,
    identity: str | None,
    *,
    ca: bytes | None = None,
    cert: bytes | None = None,
    key: bytes | None = None,
) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca if ca is not None else env.pki("ca.pem"),
        private_key=key if key is not None else (env.pki(f"{identity}.key") if identity else None),
        certificate_chain=cert if cert is not None else (env.pki(f"{identity}.pem") if identity else None),
    )
    return grpc.secure_channel(daemon.address, credentials)


@dataclass
class Databases:
    """PostgreSQL databases made for this test session, dropped at its end."""

    made: list[str] = field(default_factory=list)

    def create(self) -> str:
        name = f"custody_e2e_{secrets.token_hex(6)}"
        with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        self.made.append(name)
        return f"{POSTGRES_SERVER}/{name}"

    def drop_all(self) -> None:
        with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as connection:
            for name in self.made:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def databases() -> Iterator[Databases]:
    made = Databases()
    yield made
    made.drop_all()


class Nonces:
    """Transaction nonces, each handed out once per test session (per worker, under pytest-xdist). A nonce once
    signed stays taken for its key, so tests that share a daemon and its keys take their nonces from here and
    never collide, whichever of them runs first. Load threads may draw from it at once."""

    def __init__(self) -> None:
        self._next = 0
        self._lock = threading.Lock()

    def __iter__(self) -> Nonces:
        return self

    def __next__(self) -> int:
        return self.reserve(1).start

    def reserve(self, count: int) -> range:
        """``count`` consecutive nonces nobody else gets, for a test that chooses among them itself."""
        with self._lock:
            block = range(self._next, self._next + count)
            self._next += count
        return block


@pytest.fixture(scope="session")
def nonces() -> Nonces:
    return Nonces()


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class _DevInitTemplate:
    """One `custody dev init` per process, copied for every environment a test asks for.

    `custody dev init` takes over a second (a CA and certificates, a SoftHSM2 token, encrypted approver keys),
    and the suite makes dozens of environments. A copy is the same environment a new user gets: its files are
    relative to its directory except SoftHSM2's token directory, which the copy points at its own tokens, and
    the database URL, which for PostgreSQL names a database made for the copy. Environments share the CA,
    the approvers' keys and the HSM PIN, never a token or a database.
    """

    def __init__(self) -> None:
        self._directory: Path | None = None

    def copy_to(self, directory: Path, database_url: str | None, *, sign_in_write_transaction: bool) -> None:
        template = self._made()
        shutil.copytree(template, directory)
        softhsm_config = directory / "softhsm" / "softhsm2.conf"
        softhsm_config.write_text(softhsm_config.read_text().replace(str(template), str(directory)))
        server_toml = directory / "server.toml"
        # Daemons of the suite run side by side, so each JSON-RPC endpoint takes a free port as the gRPC
        # listener does (--listen 127.0.0.1:0); the daemon names it in its log.
        text = server_toml.read_text()
        assert _JSONRPC_LISTEN_LINE in text
        server_toml.write_text(text.replace(_JSONRPC_LISTEN_LINE, 'listen = "127.0.0.1:0"'))
        if database_url is not None:
            text = server_toml.read_text()
            assert _SQLITE_URL_LINE in text
            server_toml.write_text(text.replace(_SQLITE_URL_LINE, f"url = {json.dumps(database_url)}"))
        if sign_in_write_transaction:
            text = server_toml.read_text()
            assert "\n[hsm]\n" in text
            server_toml.write_text(
                text.replace("\n[hsm]\n", f"\n[hsm]\n{SIGN_IN_WRITE_TRANSACTION_LINE}\n", 1)
            )

    def _made(self) -> Path:
        if self._directory is None:
            parent = Path(tempfile.mkdtemp(prefix="custody-e2e-template-"))
            atexit.register(shutil.rmtree, parent, ignore_errors=True)
            directory = parent / "env"
            result = subprocess.run(
                [CUSTODY, "dev", "init", str(directory)],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert result.returncode == 0, result.stderr
            self._directory = directory
        return self._directory


_SQLITE_URL_LINE = 'url = "sqlite:///custody.db"'
SIGN_IN_WRITE_TRANSACTION_LINE = "sign_in_write_transaction = true"
_JSONRPC_LISTEN_LINE = 'listen = "127.0.0.1:50052"'
_DEV_INIT = _DevInitTemplate()


def make_dev_env(
    directory: Path, backend: str, databases: Databases, *, sign_in_write_transaction: bool | None = None
) -> DevEnv:
    """The environment `custody dev init DIR` makes (with --database for PostgreSQL), as a new user runs it;
    copied from one made earlier in this process (see _DevInitTemplate). ``sign_in_write_transaction`` sets
    that [hsm] option; None leaves it to CUSTODY_TEST_SIGN_IN_WRITE_TRANSACTION."""
    database_url = databases.create() if backend == "postgresql" else None
    if sign_in_write_transaction is None:
        sign_in_write_transaction = SIGN_IN_WRITE_TRANSACTION
    _DEV_INIT.copy_to(directory, database_url, sign_in_write_transaction=sign_in_write_transaction)
    return DevEnv(directory, database_url)


@pytest.fixture(scope="session")
def dev_env(tmp_path_factory: pytest.TempPathFactory, databases: Databases) -> DevEnv:
    """The session's shared environment, on the first configured backend: the tests that use it check the
    transport, identities and the command line, which do not depend on the store. Tests of what does (replicas
    sharing a database, crashes, tampering with the database) request ``backend`` and run on each."""
    return make_dev_env(tmp_path_factory.mktemp("e2e") / "env", BACKENDS[0], databases)


@pytest.fixture(scope="session")
def daemon(dev_env: DevEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    running = start_daemon(dev_env, tmp_path_factory.mktemp("logs") / "daemon.log")
    yield running
    stop_daemon(running)


@pytest.fixture(scope="session")
def keys(dev_env: DevEnv, daemon: Daemon) -> dict[str, dict[str, str]]:
    """The dev environment's two keys, created once through the CLI as the admin."""
    created = {}
    for label in ("ops", "treasury"):
        created[label] = cli_json(dev_env, daemon, "admin", "keys", "create", "--label", label)
    return created  # type: ignore[return-value]


@pytest.fixture
def signing_stub(dev_env: DevEnv, daemon: Daemon) -> Iterator[pb_grpc.SigningServiceStub]:
    with channel_for(dev_env, daemon, "backend") as channel:
        yield pb_grpc.SigningServiceStub(channel)
