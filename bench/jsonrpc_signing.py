"""JSON-RPC signing throughput next to gRPC's, on one daemon, in one run.

    .venv/bin/python bench/jsonrpc_signing.py [--seconds 3] [--rounds 3] [--concurrency 1,8]
        [--out bench/results/jsonrpc_signing.json]

One custody daemon from `custody dev init` (SQLite, SoftHSM2) serves both transports. Round after round, and
alternating which goes first, each is driven in a closed loop at each concurrency with the same payload, an
EIP-1559 transaction of key `ops` that the development policy signs at once (a new nonce per call):

- grpc: SubmitRequest over mTLS, one channel per client thread (as a backend service holds one);
- jsonrpc: eth_signTransaction over HTTPS with backend's bearer token, one kept-alive connection per client
  thread (as ethers and web3.py keep theirs), the transaction in JSON-RPC form (hex quantities, `input`);
- jsonrpc_batch: the same calls, ten to a batch (rates count calls, not bodies).

Reported: calls per second, p50 and p99 latency, and each JSON-RPC figure as a ratio to gRPC's rate in the same
round (medians over the rounds). The ratio is the figure to compare across runs and machines; the absolute
rates depend on the machine and its neighbours. Every answer is checked for a signed transaction; the first
of each kind is recovered with eth-account to the key's address. The load generator shares the cores with
the daemon. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import platform
import re
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from eth_account import Account
from payloads import transaction

from custody.api._gen import custody_pb2 as pb
from custody.api._gen import custody_pb2_grpc as pb_grpc

CUSTODY = str(Path(sys.executable).parent / "custody")
BATCH = 10


class Daemon:
    def __init__(self, scratch: Path) -> None:
        self.env = scratch / "env"
        subprocess.run([CUSTODY, "dev", "init", str(self.env)], check=True, capture_output=True)
        log = scratch / "daemon.log"
        self.process = subprocess.Popen(
            [
                CUSTODY,
                "serve",
                "--config",
                str(self.env / "server.toml"),
                "--listen",
                "127.0.0.1:0",
                "--jsonrpc-listen",
                "127.0.0.1:0",
            ],
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            env={**os.environ, "CUSTODY_LOG_LEVEL": "WARNING"},
        )
        deadline = time.monotonic() + 60
        grpc_found = jsonrpc_found = None
        while time.monotonic() < deadline and not (grpc_found and jsonrpc_found):
            text = log.read_text()
            grpc_found = re.search(r"custody listening on (\S+:\d+)", text)
            jsonrpc_found = re.search(r"custody JSON-RPC listening on (\S+?):(\d+)", text)
            if self.process.poll() is not None:
                raise SystemExit(f"the daemon exited: {text}")
            time.sleep(0.05)
        if not (grpc_found and jsonrpc_found):
            raise SystemExit("the daemon did not start within 60 s")
        self.grpc_address = grpc_found.group(1)
        self.jsonrpc_port = int(jsonrpc_found.group(2))
        self.token = (self.env / "tokens" / "backend.token").read_text().strip()
        self._nonces = itertools.count()
        self._lock = threading.Lock()
        with self.channel("admin") as admin:
            self.address = (
                pb_grpc.KeyServiceStub(admin)
                .CreateKey(pb.CreateKeyRequest(label="ops"), timeout=60)
                .key.address
            )

    def next_nonce(self) -> int:
        with self._lock:
            return next(self._nonces)

    def channel(self, identity: str) -> grpc.Channel:
        pki = self.env / "pki"
        return grpc.secure_channel(
            self.grpc_address,
            grpc.ssl_channel_credentials(
                (pki / "ca.pem").read_bytes(),
                (pki / f"{identity}.key").read_bytes(),
                (pki / f"{identity}.pem").read_bytes(),
            ),
        )

    def https(self) -> http.client.HTTPSConnection:
        context = ssl.create_default_context(cafile=str(self.env / "pki" / "ca.pem"))
        return http.client.HTTPSConnection("127.0.0.1", self.jsonrpc_port, context=context, timeout=60)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)


def rpc_transaction(sender: str, nonce: int) -> dict[str, Any]:
    fields = json.loads(transaction(nonce))
    return {
        "from": sender,
        "to": fields["to"],
        "value": hex(fields["value"]),
        "gas": hex(fields["gas"]),
        "maxFeePerGas": hex(fields["maxFeePerGas"]),
        "maxPriorityFeePerGas": hex(fields["maxPriorityFeePerGas"]),
        "nonce": hex(nonce),
        "chainId": hex(fields["chainId"]),
        "input": "0x",
    }


# A client makes one call (or one batch) and answers how many signatures it got; it checks each answer.
Client = Callable[[], int]


def grpc_client(daemon: Daemon, first: list[bytes]) -> tuple[Client, Callable[[], None]]:
    channel = daemon.channel("backend")
    stub = pb_grpc.SigningServiceStub(channel)

    def call() -> int:
        request = stub.SubmitRequest(
            pb.SubmitRequestRequest(
                key_label="ops", kind=pb.PAYLOAD_KIND_TRANSACTION, payload=transaction(daemon.next_nonce())
            ),
            timeout=60,
        ).request
        assert request.state == pb.REQUEST_STATE_SIGNED and request.signed_tx
        if not first:
            first.append(request.signed_tx)
        return 1

    return call, channel.close


def jsonrpc_client(daemon: Daemon, first: list[bytes], batch: int) -> tuple[Client, Callable[[], None]]:
    connection = daemon.https()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {daemon.token}"}
    ids = itertools.count()

    def call() -> int:
        calls = [
            {
                "jsonrpc": "2.0",
                "id": next(ids),
                "method": "eth_signTransaction",
                "params": [rpc_transaction(daemon.address, daemon.next_nonce())],
            }
            for _ in range(batch)
        ]
        connection.request("POST", "/", json.dumps(calls if batch > 1 else calls[0]), headers)
        response = connection.getresponse()
        answer = json.loads(response.read())
        answers = answer if isinstance(answer, list) else [answer]
        for entry in answers:
            assert "result" in entry, entry
        if not first:
            first.append(bytes.fromhex(answers[0]["result"][2:]))
        return len(answers)

    return call, connection.close


def closed_loop(
    make_client: Callable[[], tuple[Client, Callable[[], None]]], concurrency: int, seconds: float
) -> dict[str, float]:
    latencies: list[float] = []
    counts = [0] * concurrency
    lock = threading.Lock()
    start = threading.Barrier(concurrency + 1)
    stop_at = [0.0]

    def worker(index: int) -> None:
        client, close = make_client()
        try:
            client()  # warm the connection up outside the measurement
            start.wait()
            while time.perf_counter() < stop_at[0]:
                began = time.perf_counter()
                made = client()
                took = time.perf_counter() - began
                counts[index] += made
                with lock:
                    latencies.extend([took / made] * made if made > 1 else [took])
        finally:
            close()

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(concurrency)]
    for thread in threads:
        thread.start()
    stop_at[0] = time.perf_counter() + seconds + 0.0
    start.wait()
    began = time.perf_counter()
    stop_at[0] = began + seconds
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "rate": sum(counts) / elapsed,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "jsonrpc_signing.json"
    )
    arguments = parser.parse_args()
    levels = [int(level) for level in arguments.concurrency.split(",")]
    with tempfile.TemporaryDirectory(prefix="custody-bench-jsonrpc-") as scratch:
        daemon = Daemon(Path(scratch))
        try:
            firsts: dict[str, list[bytes]] = {"grpc": [], "jsonrpc": [], "jsonrpc_batch": []}
            makers = {
                "grpc": lambda: grpc_client(daemon, firsts["grpc"]),
                "jsonrpc": lambda: jsonrpc_client(daemon, firsts["jsonrpc"], 1),
                "jsonrpc_batch": lambda: jsonrpc_client(daemon, firsts["jsonrpc_batch"], BATCH),
            }
            rounds: list[dict[str, dict[str, dict[str, float]]]] = []
            for number in range(arguments.rounds):
                order = list(makers) if number % 2 == 0 else list(reversed(makers))
                measured: dict[str, dict[str, dict[str, float]]] = {}
                for name in order:
                    measured[name] = {
                        str(level): closed_loop(makers[name], level, arguments.seconds) for level in levels
                    }
                rounds.append(measured)
            for name, signed in firsts.items():
                assert Account.recover_transaction(signed[0]) == daemon.address, name
        finally:
            daemon.stop()

    summary: dict[str, Any] = {}
    for name in ("grpc", "jsonrpc", "jsonrpc_batch"):
        summary[name] = {}
        for level in map(str, levels):
            figures = [measured[name][level] for measured in rounds]
            entry = {
                key: statistics.median(figure[key] for figure in figures)
                for key in ("rate", "p50_ms", "p99_ms")
            }
            if name != "grpc":
                entry["ratio_to_grpc"] = statistics.median(
                    measured[name][level]["rate"] / measured["grpc"][level]["rate"] for measured in rounds
                )
            summary[name][level] = entry
    print(f"{'transport':<14} {'conc':>4} {'sig/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'vs gRPC':>8}")
    for name, by_level in summary.items():
        for level, entry in by_level.items():
            ratio = f"{entry['ratio_to_grpc']:.2f}" if "ratio_to_grpc" in entry else "1.00"
            rate, p50, p99 = entry["rate"], entry["p50_ms"], entry["p99_ms"]
            print(f"{name:<14} {level:>4} {rate:>8.1f} {p50:>8.2f} {p99:>8.2f} {ratio:>8}")
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(
        json.dumps(
            {
                "benchmark": "jsonrpc_signing",
                "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
                "seconds": arguments.seconds,
                "rounds": rounds,
                "median": summary,
            },
            indent=2,
        )
    )
    print(f"wrote {arguments.out}")


if __name__ == "__main__":
    main()
