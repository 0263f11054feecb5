"""Signing throughput: the token's raw rate against custody's end-to-end rate, measured in one run.

    .venv/bin/python bench/signing_rate.py [--seconds 5] [--out bench/results/signing_rate.json]

Baseline: a direct python-pkcs11 loop of CKM_ECDSA signatures over 32-byte digests on a fresh SoftHSM2 token,
one thread (the most one process can do, since calls into one PKCS#11 library are serialized).
Measured: SubmitRequest over mTLS for EIP-1559 transactions that the dev policy signs at once, at concurrency 1,
8 and 32, each call parsed, checked against policy, stored, signed in the HSM, normalized and stored again.
Both run on this machine in one invocation, so the ratio end-to-end / raw is the figure to compare across runs.
Not part of `make test`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
from payloads import transaction

from custody.api._gen import custody_pb2 as pb
from custody.api._gen import custody_pb2_grpc as pb_grpc

CUSTODY = str(Path(sys.executable).parent / "custody")
CONCURRENCY_LEVELS = (1, 8, 32)

RAW_SIGN_SCRIPT = r"""
import os, secrets, sys, time
import pkcs11
from pkcs11 import KeyType, Mechanism, Attribute
from pkcs11.util.ec import encode_named_curve_parameters
lib = pkcs11.lib(sys.argv[1])
token = lib.get_token(token_label=sys.argv[2])
seconds = float(sys.argv[3])
with token.open(user_pin=sys.stdin.readline().strip(), rw=True) as session:
    params = session.create_domain_parameters(
        KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("1.3.132.0.10")}, local=True)
    public, private = params.generate_keypair(store=False)
    digests = [secrets.token_bytes(32) for _ in range(1000)]
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        private.sign(digests[count % 1000], mechanism=Mechanism.ECDSA)
        count += 1
    elapsed = time.perf_counter() - start
print(count / elapsed)
"""


def measure_raw(env_dir: Path, seconds: float) -> float:
    server_toml = (env_dir / "server.toml").read_text()
    module = re.search(r'^module\s*=\s*"([^"]+)"', server_toml, re.M).group(1)  # type: ignore[union-attr]
    label = re.search(r'^token_label\s*=\s*"([^"]+)"', server_toml, re.M).group(1)  # type: ignore[union-attr]
    pin = (env_dir / "secrets" / "hsm.pin").read_text().strip()
    result = subprocess.run(
        [sys.executable, "-c", RAW_SIGN_SCRIPT, module, label, str(seconds)],
        input=pin + "\n",
        capture_output=True,
        text=True,
        env={**os.environ, "SOFTHSM2_CONF": str(env_dir / "softhsm" / "softhsm2.conf")},
        check=True,
    )
    return float(result.stdout.strip())


def start_daemon(env_dir: Path, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    log = log_path.open("wb")
    process = subprocess.Popen(
        [CUSTODY, "serve", "--config", str(env_dir / "server.toml"), "--listen", "127.0.0.1:0"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "CUSTODY_LOG_LEVEL": "WARNING"},
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        match = re.search(r"custody listening on (\S+:\d+)", log_path.read_text(errors="replace"))
        if match:
            return process, match.group(1)
        if process.poll() is not None:
            raise SystemExit(f"the daemon exited: {log_path.read_text()}")
        time.sleep(0.05)
    process.kill()
    raise SystemExit("the daemon did not start within 60 s")


def channel(env_dir: Path, address: str, identity: str) -> grpc.Channel:
    pki = env_dir / "pki"
    return grpc.secure_channel(
        address,
        grpc.ssl_channel_credentials(
            root_certificates=(pki / "ca.pem").read_bytes(),
            private_key=(pki / f"{identity}.key").read_bytes(),
            certificate_chain=(pki / f"{identity}.pem").read_bytes(),
        ),
    )


def measure_end_to_end(
    stub: pb_grpc.SigningServiceStub, concurrency: int, seconds: float, first_nonce: int
) -> dict:
    latencies: list[float] = []
    failures = 0
    lock = threading.Lock()
    nonce_counter = iter(range(first_nonce, first_nonce + 10**9))
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        nonlocal failures
        while time.perf_counter() < deadline:
            with lock:
                nonce = next(nonce_counter)
            started = time.perf_counter()
            answer = stub.SubmitRequest(
                pb.SubmitRequestRequest(
                    key_label="ops", kind=pb.PAYLOAD_KIND_TRANSACTION, payload=transaction(nonce)
                ),
                timeout=60,
            )
            elapsed = time.perf_counter() - started
            with lock:
                if answer.request.state == pb.REQUEST_STATE_SIGNED:
                    latencies.append(elapsed)
                else:
                    failures += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    ordered = sorted(latencies)
    return {
        "concurrency": concurrency,
        "signed": len(latencies),
        "not_signed": failures,
        "rate_per_second": len(latencies) / wall,
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time per figure")
    parser.add_argument("--out", type=Path, default=Path("bench/results/signing_rate.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="custody-bench-") as scratch:
        env_dir = Path(scratch) / "env"
        subprocess.run([CUSTODY, "dev", "init", str(env_dir)], check=True, capture_output=True)
        print(f"raw token signing for {args.seconds:.0f} s ...", file=sys.stderr)
        raw_rate = measure_raw(env_dir, args.seconds)
        process, address = start_daemon(env_dir, Path(scratch) / "daemon.log")
        try:
            with channel(env_dir, address, "admin") as admin:
                pb_grpc.KeyServiceStub(admin).CreateKey(pb.CreateKeyRequest(label="ops"))
            results = []
            with channel(env_dir, address, "backend") as backend:
                stub = pb_grpc.SigningServiceStub(backend)
                for index, concurrency in enumerate(CONCURRENCY_LEVELS):
                    print(
                        f"end to end at concurrency {concurrency} for {args.seconds:.0f} s ...",
                        file=sys.stderr,
                    )
                    results.append(measure_end_to_end(stub, concurrency, args.seconds, index * 10**7))
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)

    print()
    print(f"raw token rate (python-pkcs11, 1 thread): {raw_rate:,.0f} signatures/s")
    print(f"{'concurrency':>11} {'signed/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'e2e/raw':>8}")
    for row in results:
        row["ratio_to_raw"] = row["rate_per_second"] / raw_rate
        print(
            f"{row['concurrency']:>11} {row['rate_per_second']:>10,.1f} {row['p50_ms']:>8.2f}"
            f" {row['p99_ms']:>8.2f} {row['ratio_to_raw']:>8.3f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "signing_rate",
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "seconds_per_figure": args.seconds,
                "raw_signatures_per_second": raw_rate,
                "end_to_end": results,
                "run_id": secrets.token_hex(4),
            },
            indent=2,
        )
    )
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
