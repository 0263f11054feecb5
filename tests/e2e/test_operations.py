"""Operating the daemon: metrics, JSON logs, systemd notifications, health that follows the HSM and the
database away and back, and a daemon that waits for its token.

Each test starts its own real daemon on a fresh `custody dev init` environment and drives it through gRPC
clients; every signature is recovered with eth-account and compared with the key's address.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import threading
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import grpc
import pytest
from eth_account import Account
from grpc_health.v1 import health_pb2, health_pb2_grpc

from custody.api._gen import custody_pb2 as pb
from custody.api._gen import custody_pb2_grpc as pb_grpc
from tests.daemons import wait_for

from .conftest import (
    BACKENDS,
    Daemon,
    Databases,
    DevEnv,
    channel_for,
    make_dev_env,
    start_daemon,
    stop_daemon,
)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
RECIPIENT = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


def transaction(nonce: int, value: int = 10**16) -> dict[str, object]:
    return {
        "type": 2,
        "chainId": 11155111,
        "nonce": nonce,
        "to": RECIPIENT,
        "value": value,
        "gas": 21000,
        "maxFeePerGas": 30_000_000_000,
        "maxPriorityFeePerGas": 1_000_000_000,
    }


def configure(env: DevEnv, *, hsm: str = "", extra: str = "") -> None:
    """Add settings to the environment's server.toml: ``hsm`` lines into [hsm], ``extra`` sections at the end."""
    text = env.config.read_text()
    anchor = 'pin_file = "secrets/hsm.pin"\n'
    assert anchor in text
    env.config.write_text(text.replace(anchor, anchor + hsm + "\n") + "\n" + extra)


def submit(env: DevEnv, daemon: Daemon, key: str, tx: dict[str, object]) -> pb.SigningRequest:
    with channel_for(env, daemon, "backend") as channel:
        return (
            pb_grpc.SigningServiceStub(channel)
            .SubmitRequest(
                pb.SubmitRequestRequest(
                    key_label=key, kind=pb.PAYLOAD_KIND_TRANSACTION, payload=json.dumps(tx).encode()
                ),
                timeout=30,
            )
            .request
        )


def sign_and_verify(env: DevEnv, daemon: Daemon, nonce: int, address: str) -> pb.SigningRequest:
    signed = submit(env, daemon, "ops", transaction(nonce))
    assert signed.state == pb.REQUEST_STATE_SIGNED, signed
    assert Account.recover_transaction(signed.signed_tx) == address
    return signed


def create_key(env: DevEnv, daemon: Daemon, label: str) -> str:
    with channel_for(env, daemon, "admin") as channel:
        return str(
            pb_grpc.KeyServiceStub(channel)
            .CreateKey(pb.CreateKeyRequest(label=label), timeout=30)
            .key.address
        )


def health_of(env: DevEnv, daemon: Daemon) -> int:
    with channel_for(env, daemon, "admin") as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status


def token_directory(env: DevEnv) -> Path:
    (directory,) = (env.directory / "softhsm" / "tokens").iterdir()
    return directory


def metric(scrape: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", scrape, re.MULTILINE)
    assert match, f"{name}{labels} is not in the scrape"
    return float(match.group(1))


@pytest.mark.skipif("sqlite" not in BACKENDS, reason="runs on the SQLite backend")
def test_metrics_json_logs_and_systemd_notifications(tmp_path: Path, databases: Databases) -> None:
    env = make_dev_env(tmp_path / "env", "sqlite", databases)
    configure(env, extra='[metrics]\nlisten = "127.0.0.1:0"\n\n[logging]\nformat = "json"\n')
    daemon = start_daemon(env, tmp_path / "daemon.log", extra_env={"WATCHDOG_USEC": "400000"})
    notify_listener = daemon.notifications
    try:
        ops_address = create_key(env, daemon, "ops")
        create_key(env, daemon, "treasury")
        signed = sign_and_verify(env, daemon, 0, ops_address)
        with channel_for(env, daemon, "backend") as channel:
            shown = (
                pb_grpc.SigningServiceStub(channel)
                .GetRequest(pb.GetRequestRequest(request_id=signed.request_id), timeout=30)
                .request
            )
        assert shown.signed_tx == signed.signed_tx
        # Over the development policy's 1 ether limit: denied.
        assert submit(env, daemon, "ops", transaction(1, value=5 * 10**18)).state == pb.REQUEST_STATE_DENIED
        # The treasury key needs approvals: one request waits.
        assert submit(env, daemon, "treasury", transaction(0)).state == pb.REQUEST_STATE_PENDING_APPROVAL
        notify_listener.wait_for("WATCHDOG=1")

        port_match = re.search(r"metrics listening on 127\.0\.0\.1:(\d+)", daemon.log())
        assert port_match, daemon.log()
        url = f"http://127.0.0.1:{port_match.group(1)}/metrics"

        def scrape() -> str:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.read().decode()

        # The queue depth is refreshed by the health monitor every 2 seconds.
        wait_for(
            lambda: 'custody_queue_depth{state="PENDING_APPROVAL"} 1.0' in scrape(), "the queue depth gauge"
        )
        text = scrape()
        assert metric(text, "custody_signatures_total", '{kind="transaction"}') == 1
        assert metric(text, "custody_requests_total", '{kind="transaction",state="SIGNED"}') == 1
        assert metric(text, "custody_requests_total", '{kind="transaction",state="DENIED"}') == 1
        assert metric(text, "custody_requests_total", '{kind="transaction",state="PENDING_APPROVAL"}') == 1
        assert metric(text, "custody_denials_total") == 1
        assert metric(text, "custody_hsm_call_seconds_count", '{operation="sign_digest"}') == 1
        assert metric(text, "custody_hsm_call_seconds_bucket", '{le="+Inf",operation="sign_digest"}') == 1
        assert metric(text, "custody_hsm_call_seconds_count", '{operation="generate_secp256k1_key"}') == 2
        assert metric(text, "custody_db_transaction_seconds_count") >= 5
        assert metric(text, "custody_audit_write_failures_total") == 0
        assert metric(text, "custody_queue_depth", '{state="APPROVED"}') == 0
    finally:
        assert stop_daemon(daemon) == 0
    notify_listener.wait_for("STOPPING=1")
    assert notify_listener.lines.count("READY=1") == 1
    assert any(line.startswith("STATUS=serving on 127.0.0.1:") for line in notify_listener.lines)

    log_text = daemon.log()
    lines = [json.loads(line) for line in log_text.splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    calls = [line for line in lines if line["logger"] == "custody.api.servicers"]
    assert len(calls) >= 6
    assert all(str(line.get("request_id", "")).startswith(("call_", "req_")) for line in calls)
    (shown_call,) = [line for line in calls if str(line["message"]).startswith("GetRequest by backend: OK")]
    assert shown_call["request_id"] == signed.request_id
    # The signing call is one line at INFO, tagged with its correlation id, that ends with what the use cases
    # noted deep down: the decision and the signature.
    (signed_line,) = [line for line in lines if f"request {signed.request_id} signed" in str(line["message"])]
    assert signed_line["logger"] == "custody.api.servicers"
    assert str(signed_line["request_id"]).startswith("call_")
    assert str(signed_line["message"]).startswith("SubmitRequest by backend: OK in ")
    assert str(signed_line["message"]).endswith(
        f"; request {signed.request_id} by backend on key ops: APPROVED (ops-transactions)"
        f"; request {signed.request_id} signed with key ops"
    )
    for secret in ("hsm.pin", "hsm.so-pin"):
        assert (env.directory / "secrets" / secret).read_text().strip() not in log_text


@pytest.mark.skipif("sqlite" not in BACKENDS, reason="runs on the SQLite backend")
def test_a_daemon_waits_for_its_token_and_follows_it_away_and_back(
    tmp_path: Path, databases: Databases
) -> None:
    env = make_dev_env(tmp_path / "env", "sqlite", databases)
    configure(env, hsm="wait_for_token = true\nwait_seconds = 0.2")
    token = token_directory(env)
    away = tmp_path / "token-away"
    shutil.move(token, away)
    daemon = start_daemon(
        env, tmp_path / "daemon.log", extra_env={"WATCHDOG_USEC": "400000"}, waiting_for_token=True
    )
    notify_listener = daemon.notifications
    try:
        assert health_of(env, daemon) == NOT_SERVING
        with channel_for(env, daemon, "admin") as channel:
            with pytest.raises(grpc.RpcError) as refused:
                pb_grpc.KeyServiceStub(channel).ListKeys(pb.ListKeysRequest(), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "the HSM token is not available yet" in str(refused.value.details())
        assert daemon.process.poll() is None

        shutil.move(away, token)
        wait_for(lambda: health_of(env, daemon) == SERVING, "SERVING once the token is there")
        address = create_key(env, daemon, "ops")
        sign_and_verify(env, daemon, 0, address)

        # The token goes away under the running daemon, and comes back.
        notify_listener.wait_for("READY=1")
        shutil.move(token, away)
        wait_for(lambda: health_of(env, daemon) == NOT_SERVING, "NOT_SERVING without the token")
        # The watchdog is fed for the daemon being alive, not for its health: systemd must not kill a daemon
        # that rides out the outage (its restart would only fail to find the token).
        pings = notify_listener.lines.count("WATCHDOG=1")
        wait_for(
            lambda: notify_listener.lines.count("WATCHDOG=1") >= pings + 3, "watchdog pings while NOT_SERVING"
        )
        assert health_of(env, daemon) == NOT_SERVING
        shutil.move(away, token)
        wait_for(lambda: health_of(env, daemon) == SERVING, "SERVING once the token is back")
        sign_and_verify(env, daemon, 1, address)
    finally:
        if away.exists():
            shutil.move(away, token)
        assert stop_daemon(daemon) == 0
    assert "waiting for the HSM token 'custody-dev'" in daemon.log()


class TcpProxy:
    """Forwards a local port to PostgreSQL; stopping it drops every connection and refuses new ones, as a
    network partition would, without touching the server other tests share."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._listener: socket.socket | None = None
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            # Closing alone would not wake the thread blocked in accept(), which would keep accepting.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._connections += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)


@pytest.mark.skipif("postgresql" not in BACKENDS, reason="runs on the PostgreSQL backend")
def test_health_follows_the_database_away_and_back(tmp_path: Path, databases: Databases) -> None:
    direct = urlsplit(databases.create())
    proxy = TcpProxy((direct.hostname or "127.0.0.1", direct.port or 5432))
    proxy.start()
    try:
        user = f"{direct.username}@" if direct.username else ""
        proxied_url = urlunsplit(direct._replace(netloc=f"{user}127.0.0.1:{proxy.port}"))
        env = make_dev_env(tmp_path / "env", "sqlite", databases)
        text = env.config.read_text()
        env.config.write_text(text.replace('url = "sqlite:///custody.db"', f'url = "{proxied_url}"'))
        daemon = start_daemon(env, tmp_path / "daemon.log")
        try:
            assert health_of(env, daemon) == SERVING
            address = create_key(env, daemon, "ops")
            proxy.stop()
            wait_for(lambda: health_of(env, daemon) == NOT_SERVING, "NOT_SERVING without the database")
            proxy.start()
            wait_for(lambda: health_of(env, daemon) == SERVING, "SERVING once the database is back")
            sign_and_verify(env, daemon, 0, address)
        finally:
            assert stop_daemon(daemon) == 0
    finally:
        proxy.stop()
