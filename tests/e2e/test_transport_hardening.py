"""What a certificate of the custody CA can do on a real daemon without being configured, or by naming two
identities: its refusals are counted but cannot flood the audit log, its health watches cannot take the
slots WatchRequest needs and end after watch_seconds, and a subject with two common names is refused."""

from __future__ import annotations

import datetime
import json
import re
import time
import urllib.request
from collections.abc import Iterator

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from custody.api._gen import custody_pb2 as pb
from custody.api._gen import custody_pb2_grpc as pb_grpc
from custody.tls.certificates import IssuedCertificate, issue_client_certificate

from .approvals_support import submit_tx, treasury_tx
from .conftest import (
    BACKENDS,
    Daemon,
    Databases,
    DevEnv,
    Nonces,
    channel_for,
    cli_json,
    make_dev_env,
    start_daemon,
    stop_daemon,
)

WATCH_SECONDS = 2
# Longer than any stream of these tests may last; only a stream the daemon never ends reaches it.
STREAM_TIMEOUT_SECONDS = 30
_METRICS_LISTENING = re.compile(r"metrics listening on 127\.0\.0\.1:(\d+)")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, databases: Databases) -> DevEnv:
    # What is checked here lives in the transport, whatever the store; the first configured backend is enough.
    made = make_dev_env(tmp_path_factory.mktemp("transport") / "env", BACKENDS[0], databases)
    made.config.write_text(
        made.config.read_text()
        + '\n[metrics]\nlisten = "127.0.0.1:0"\n'
        + f"\n[limits]\nmax_workers = 4\nmax_watches = 2\nwatch_seconds = {WATCH_SECONDS}\n"
    )
    return made


@pytest.fixture(scope="module")
def daemon(env: DevEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    running = start_daemon(env, tmp_path_factory.mktemp("logs") / "daemon.log")
    yield running
    assert stop_daemon(running) == 0


def _ca(env: DevEnv) -> IssuedCertificate:
    return IssuedCertificate(cert_pem=env.pki("ca.pem"), key_pem=env.pki("ca.key"))


def _client_certificate_naming(env: DevEnv, *common_names: str) -> IssuedCertificate:
    """A client certificate of the custody CA whose subject holds ``common_names``, in order: the dev PKI
    makes certificates with exactly one."""
    ca = _ca(env)
    ca_certificate = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name) for name in common_names]))
        .issuer_name(ca_certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return IssuedCertificate(cert_pem=certificate.public_bytes(serialization.Encoding.PEM), key_pem=key_pem)


def _audit_events(env: DevEnv, daemon: Daemon, kind: str) -> list[pb.AuditEvent]:
    found: list[pb.AuditEvent] = []
    with channel_for(env, daemon, "admin") as channel:
        stub = pb_grpc.AuditServiceStub(channel)
        while True:
            after = found[-1].sequence if found else 0
            page = stub.ListEvents(pb.ListEventsRequest(kind=kind, after_sequence=after, limit=10_000))
            if not page.events:
                return found
            found.extend(page.events)


def _metrics(daemon: Daemon) -> str:
    port = _METRICS_LISTENING.search(daemon.log())
    assert port is not None, daemon.log()
    with urllib.request.urlopen(f"http://127.0.0.1:{port.group(1)}/metrics", timeout=10) as response:
        return str(response.read().decode())


def _auth_refusals_counted(daemon: Daemon) -> float:
    found = re.search(
        r'^custody_refusals_total\{kind="auth\.refused"\} (\S+)$', _metrics(daemon), re.MULTILINE
    )
    return float(found.group(1)) if found else 0.0


def test_refusals_of_an_unconfigured_certificate_are_counted_but_written_once_a_minute(
    env: DevEnv, daemon: Daemon
) -> None:
    mallory = issue_client_certificate(_ca(env), "mallory")
    counted_before = _auth_refusals_counted(daemon)
    refused_calls = 200
    with channel_for(env, daemon, None, cert=mallory.cert_pem, key=mallory.key_pem) as channel:
        keys = pb_grpc.KeyServiceStub(channel)
        for _ in range(refused_calls):
            with pytest.raises(grpc.RpcError) as refused:
                keys.ListKeys(pb.ListKeysRequest(), timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "'mallory' is not configured" in str(refused.value.details())

    # The first refusal is in the audit log at once; the other 199 wait for the end of the minute and one
    # event that carries their number, instead of 199 writes under the database's write lock.
    written = [
        event
        for event in _audit_events(env, daemon, "auth.refused")
        if "mallory" in json.loads(event.details_json)["reason"]
    ]
    assert len(written) == 1, [event.details_json for event in written]
    details = json.loads(written[0].details_json)
    assert (written[0].actor, details["refusals"], details["method"]) == ("unauthenticated", 1, "ListKeys")
    # The counter counts every one of them, and never names the certificate: anyone the CA certified can
    # choose a name, and each would be a series of its own.
    assert _auth_refusals_counted(daemon) - counted_before == refused_calls
    assert "mallory" not in _metrics(daemon)


def test_health_watches_leave_slots_for_watch_request_and_end_after_watch_seconds(
    env: DevEnv, daemon: Daemon, nonces: Nonces
) -> None:
    cli_json(env, daemon, "admin", "keys", "create", "--label", "treasury")
    pending = submit_tx(env, daemon, "backend", "treasury", treasury_tx(next(nonces)))
    assert pending.state == pb.REQUEST_STATE_PENDING_APPROVAL, pending
    # A certificate nobody configured may watch health: the health service asks for no role.
    mallory = issue_client_certificate(_ca(env), "mallory")
    channels = [channel_for(env, daemon, None, cert=mallory.cert_pem, key=mallory.key_pem) for _ in range(2)]
    try:
        opened = time.monotonic()
        held = health_pb2_grpc.HealthStub(channels[0]).Watch(
            health_pb2.HealthCheckRequest(), timeout=STREAM_TIMEOUT_SECONDS
        )
        assert next(held).status == health_pb2.HealthCheckResponse.SERVING
        # Of the two watch slots, health watches may take one; the second is refused at once.
        extra = health_pb2_grpc.HealthStub(channels[1]).Watch(
            health_pb2.HealthCheckRequest(), timeout=STREAM_TIMEOUT_SECONDS
        )
        with pytest.raises(grpc.RpcError) as refused:
            next(extra)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "call Check" in str(refused.value.details())

        # The slot left is WatchRequest's: the backend still follows its request.
        with channel_for(env, daemon, "backend") as backend:
            watch = pb_grpc.SigningServiceStub(backend).WatchRequest(
                pb.WatchRequestRequest(request_id=pending.request_id), timeout=STREAM_TIMEOUT_SECONDS
            )
            assert next(watch).state == pb.REQUEST_STATE_PENDING_APPROVAL

        # The held health watch ends by itself, normally, after watch_seconds.
        assert list(held) == []
        assert held.code() == grpc.StatusCode.OK
        assert WATCH_SECONDS - 0.5 <= time.monotonic() - opened < STREAM_TIMEOUT_SECONDS
    finally:
        for channel in channels:
            channel.close()


@pytest.mark.parametrize("common_names", [("admin", "backend"), ("backend", "admin"), ()])
def test_a_certificate_without_exactly_one_common_name_is_refused(
    env: DevEnv, daemon: Daemon, common_names: tuple[str, ...]
) -> None:
    issued = _client_certificate_naming(env, *common_names)
    with channel_for(env, daemon, None, cert=issued.cert_pem, key=issued.key_pem) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            pb_grpc.KeyServiceStub(channel).ListKeys(pb.ListKeysRequest(), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "must name exactly one common name" in str(refused.value.details())
        assert f"names {len(common_names)}" in str(refused.value.details())
        with pytest.raises(grpc.RpcError) as refused_admin_call:
            pb_grpc.KeyServiceStub(channel).CreateKey(pb.CreateKeyRequest(label="two-names"), timeout=10)
        assert refused_admin_call.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # Nothing was done in the name of either identity it named.
    listed = cli_json(env, daemon, "admin", "keys", "list")
    assert isinstance(listed, list)
    assert "two-names" not in [key["label"] for key in listed]
