"""How long signing takes after the last approval, against an auto-signed request, measured in one run.

    .venv/bin/python bench/approval_latency.py [--rounds 200] [--out bench/results/approval_latency.json]

For each round the backend submits an EIP-1559 treasury transaction (2 of alice, bob, carol), alice approves,
and the time of bob's Approve call is measured: that call verifies the statement, counts the verdict, completes
the quorum, takes the signing claim, re-verifies every counted statement, signs in the HSM and commits the
signature before it answers. The baseline is SubmitRequest for an `ops` transaction that policy signs at once
(parse, policy, store, sign, store), measured over the same connection setup in the same run, so the ratio is
the cost of the approval path. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from cryptography.hazmat.primitives import serialization
from payloads import transaction

from custody.api._gen import custody_pb2 as pb
from custody.api._gen import custody_pb2_grpc as pb_grpc
from custody.domain.approvals import ApprovalStatement
from custody.domain.requests import Verdict

CUSTODY = str(Path(sys.executable).parent / "custody")


def channel(env: Path, address: str, identity: str) -> grpc.Channel:
    pki = env / "pki"
    return grpc.secure_channel(
        address,
        grpc.ssl_channel_credentials(
            root_certificates=(pki / "ca.pem").read_bytes(),
            private_key=(pki / f"{identity}.key").read_bytes(),
            certificate_chain=(pki / f"{identity}.pem").read_bytes(),
        ),
    )


def approver_key(env: Path, name: str):  # type: ignore[no-untyped-def]
    passphrase = (env / "secrets" / f"{name}.passphrase").read_bytes().strip()
    return serialization.load_pem_private_key(
        (env / "approvers" / f"{name}.key").read_bytes(), password=passphrase
    )


def approve_request(request: pb.SigningRequest, name: str, key) -> pb.ApproveRequest:  # type: ignore[no-untyped-def]
    statement = ApprovalStatement(
        request_id=request.request_id,
        digest=request.digest,
        payload_hash=hashlib.sha256(request.payload).digest(),
        chain_id=request.chain_id or None,
        key_id=request.key_id,
        policy_version=request.decision.policy_version,
        decision=Verdict.APPROVE,
        approver=name,
        expires_at=int(time.time()) + 600,
    ).to_bytes()
    return pb.ApproveRequest(
        request_id=request.request_id, statement=statement, signature=key.sign(statement)
    )


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summary(latencies: list[float]) -> dict[str, float]:
    return {
        "count": len(latencies),
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * percentile(latencies, 0.99),
        "mean_ms": 1000 * statistics.fmean(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("bench/results/approval_latency.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="custody-bench-") as scratch:
        env = Path(scratch) / "env"
        subprocess.run([CUSTODY, "dev", "init", str(env)], check=True, capture_output=True)
        log_path = Path(scratch) / "daemon.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    CUSTODY,
                    "serve",
                    "--config",
                    str(env / "server.toml"),
                    "--listen",
                    "127.0.0.1:0",
                    "--jsonrpc-listen",
                    "127.0.0.1:0",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "CUSTODY_LOG_LEVEL": "WARNING"},
            )
        try:
            deadline = time.monotonic() + 60
            while not (match := re.search(r"custody listening on (\S+:\d+)", log_path.read_text())):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the daemon did not start: {log_path.read_text()}")
                time.sleep(0.05)
            address = match.group(1)
            with channel(env, address, "admin") as admin:
                keys = pb_grpc.KeyServiceStub(admin)
                keys.CreateKey(pb.CreateKeyRequest(label="ops"))
                keys.CreateKey(pb.CreateKeyRequest(label="treasury"))
            alice_key, bob_key = approver_key(env, "alice"), approver_key(env, "bob")
            with (
                channel(env, address, "backend") as backend,
                channel(env, address, "alice") as alice,
                channel(env, address, "bob") as bob,
            ):
                signing = pb_grpc.SigningServiceStub(backend)
                alice_stub, bob_stub = pb_grpc.ApprovalServiceStub(alice), pb_grpc.ApprovalServiceStub(bob)
                baseline, after_last_approval = [], []
                print(f"{args.rounds} rounds ...", file=sys.stderr)
                for nonce in range(args.rounds):
                    started = time.perf_counter()
                    auto = signing.SubmitRequest(
                        pb.SubmitRequestRequest(
                            key_label="ops", kind=pb.PAYLOAD_KIND_TRANSACTION, payload=transaction(nonce)
                        )
                    ).request
                    baseline.append(time.perf_counter() - started)
                    assert auto.state == pb.REQUEST_STATE_SIGNED

                    pending = signing.SubmitRequest(
                        pb.SubmitRequestRequest(
                            key_label="treasury", kind=pb.PAYLOAD_KIND_TRANSACTION, payload=transaction(nonce)
                        )
                    ).request
                    alice_stub.Approve(approve_request(pending, "alice", alice_key))
                    last = approve_request(pending, "bob", bob_key)
                    started = time.perf_counter()
                    signed = bob_stub.Approve(last).request
                    after_last_approval.append(time.perf_counter() - started)
                    assert signed.state == pb.REQUEST_STATE_SIGNED, signed
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)

    results = {
        "benchmark": "approval_latency",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "rounds": args.rounds,
        "auto_signed_submit": summary(baseline),
        "last_approval_to_signature": summary(after_last_approval),
    }
    results["ratio_p50"] = (
        results["last_approval_to_signature"]["p50_ms"] / results["auto_signed_submit"]["p50_ms"]
    )
    print()
    print(f"{'':32} {'p50 ms':>8} {'p99 ms':>8}")
    for name in ("auto_signed_submit", "last_approval_to_signature"):
        row = results[name]
        print(f"{name:32} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f}")
    print(f"ratio (last approval -> signature) / (auto-signed submit), p50: {results['ratio_p50']:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
