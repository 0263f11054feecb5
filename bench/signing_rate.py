"""Signing throughput against the framework's limit: raw token, bare gRPC+HSM server and custody, in one run.

    .venv/bin/python bench/signing_rate.py [--seconds 2.5] [--rounds 2] [--backends sqlite,postgresql]
        [--baseline-ref GITREV] [--profile] [--scaling] [--out bench/results/signing_rate.json]

Measured in one invocation, on this machine, alternating the servers round after round so that a busy
neighbour on a shared machine slows every figure of a round alike (the ratios are the figures to compare
across runs and machines, never the absolute rates):

- raw: a direct python-pkcs11 loop of CKM_ECDSA secp256k1 signatures over 32-byte digests, one thread;
- ceiling: bench/bare_server.py, a bare mTLS grpcio server from custody's proto that only hashes the payload
  and signs in the HSM (one call at a time) at concurrency 8: the most a Python gRPC signer does here;
- grpc_noop: the same server answering without signing (gRPC and TLS alone);
- custody on SQLite and on PostgreSQL: SubmitRequest of EIP-1559 transactions the development policy signs
  at once, closed loop at concurrency 1, 8 and 32 (rate, p50, p99), then an open loop of Poisson arrivals at
  half the saturated rate of the same round (p50 and p99 measured from each call's scheduled start, so a
  stalled server is not hidden by a stalled client);
- the daemon's CPU per signed request, from /proc/PID/stat (its own threads and live child processes; the
  PostgreSQL server's own CPU is not counted);
- with --baseline-ref GITREV: the daemon of that revision (checked out into a temporary git worktree, removed
  afterwards) measured the same way in the same rounds, so `ratio_to_baseline` is the cost or gain of
  everything since it (for example the seals: the revision before them is named in the JSON);
- with --hsm 'sign_in_write_transaction = true': this tree's daemons get that line in their [hsm] table, as
  --limits does for [limits];
- with --limits 'max_workers = 8': this tree's daemons run with that [limits] setting, so that with
  --baseline-ref HEAD the same code is measured with and without it;
- with --scaling: one custody daemon on PostgreSQL against two replicas sharing its database (the load split
  between them), alternated, at concurrency 16: what a second process adds on this machine;
- with --profile: one more custody/SQLite run at concurrency 8 with every daemon thread under cProfile (CPU
  clock), split into components; the shares are scaled to the unprofiled CPU per request of the same run,
  and the profile itself is kept next to the JSON (.pstats, for `python -m pstats`).

The load generator runs on the same cores as the servers. Medians over the rounds are printed and written
as JSON. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import pstats
import random
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from payloads import transaction

from custody.api._gen import custody_pb2 as pb
from custody.api._gen import custody_pb2_grpc as pb_grpc

BENCH_DIR = Path(__file__).resolve().parent
REPOSITORY = BENCH_DIR.parent
PYTHON = sys.executable
CUSTODY = str(Path(sys.executable).parent / "custody")
CONCURRENCY_LEVELS = (1, 8, 32)
CEILING_CONCURRENCY = 8
SCALING_CONCURRENCY = 16
POSTGRES_ADMIN_URL = os.environ.get("CUSTODY_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

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

# What the component split groups a function's own CPU time under, first match wins: (name, substrings of
# "file:function" of which one must appear).
COMPONENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("logging", ("/logging/", "/custody/observability/logs")),
    ("metrics", ("/custody/observability/metrics", "prometheus_client")),
    ("hsm (PKCS#11 calls and adapter)", ("/custody/hsm/", "pkcs11")),
    ("database driver (sqlite3, psycopg)", ("sqlite3", "psycopg")),
    ("store (custody/store Python layers)", ("/custody/store/",)),
    ("time parsing and formatting", ("_strptime", "datetime", "fromisoformat", "isoformat", "strftime")),
    ("audit (hash chain, events)", ("/custody/audit/", "/custody/app/audit.py")),
    ("seals and integrity checks", ("/custody/app/integrity.py", "/custody/domain/seals.py", "hmac")),
    ("policy", ("/custody/domain/policy/",)),
    (
        "payload: parse, hash, recover, assemble (custody/chains, eth-*)",
        ("/custody/chains/", "eth_", "/rlp/", "hexbytes", "/Crypto/", "coincurve", "keccak", "cytoolz"),
    ),
    ("use cases and domain (custody/app, custody/domain)", ("/custody/app/", "/custody/domain/")),
    ("gRPC Python layer and servicers (custody/api, grpc)", ("/grpc/", "/custody/api/", "grpc")),
    ("json", ("/json/", "json")),
    ("threads, locks, queues", ("threading", "/queue.py", "/concurrent/", "lock")),
)
# Inclusive CPU of single calls on the request path (each includes what it calls, so they overlap).
INCLUSIVE_CALLS: tuple[tuple[str, str, str], ...] = (
    ("servicer SubmitRequest", "custody/api/servicers.py", "SubmitRequest"),
    ("submit use case", "custody/app/signing.py", "submit"),
    ("parse_payload", "custody/chains/evm/__init__.py", "parse_payload"),
    ("policy evaluate", "custody/domain/policy", "evaluate"),
    ("sign_if_claimed", "custody/app/signing.py", "sign_if_claimed"),
    ("signing refusal (re-checks)", "custody/app/signing.py", "_refusal"),
    ("HSM sign_digest", "custody/hsm/", "sign_digest"),
    ("seal (HMAC in the HSM)", "custody/app/integrity.py", "seal"),
    ("seal checks", "custody/app/integrity.py", "problem"),
    ("sealed records (encoding what is checked)", "custody/app/integrity.py", "sealed_records"),
    ("audit head check", "custody/audit/head.py", "check"),
    ("recoverable_signature", "custody/chains/evm/signature.py", "recoverable_signature"),
    ("assemble", "custody/chains/evm/", "assemble"),
    ("audit record", "custody/app/audit.py", "record"),
    ("store transaction (begin, commit)", "custody/store/", "transaction"),
    ("authenticate", "custody/api/auth.py", "authenticate"),
    ("log lines", "logging/__init__.py", "info"),
)


# -- processes ------------------------------------------------------------------------------------------------


@dataclass
class Server:
    """A server process under test and what it needs to be called and measured."""

    name: str
    process: subprocess.Popen[bytes]
    address: str
    env_dir: Path
    nonces: Iterator[int] = field(default_factory=lambda: iter(range(10**9)))
    nonce_lock: threading.Lock = field(default_factory=threading.Lock)

    def next_nonce(self) -> int:
        with self.nonce_lock:
            return next(self.nonces)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_process(
    argv: list[str], env: dict[str, str], log_path: Path, pattern: str, what: str
) -> tuple[subprocess.Popen[bytes], str]:
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        match = re.search(pattern, log_path.read_text(errors="replace"))
        if match:
            return process, match.group(1)
        if process.poll() is not None:
            raise SystemExit(f"{what} exited:\n{log_path.read_text()}")
        time.sleep(0.05)
    process.kill()
    raise SystemExit(f"{what} did not start within 90 s:\n{log_path.read_text()}")


def code_env(pythonpath: Path) -> dict[str, str]:
    """The environment that runs the custody code of ``pythonpath`` with the shared interpreter."""
    return {**os.environ, "PYTHONPATH": str(pythonpath), "CUSTODY_LOG_LEVEL": "INFO"}


def dev_init(code: Path, env_dir: Path, database_url: str | None) -> None:
    argv = [CUSTODY, "dev", "init", str(env_dir)]
    if database_url is not None:
        argv += ["--database", database_url]
    subprocess.run(argv, check=True, capture_output=True, env=code_env(code))


def serve_argv(code: Path, env_dir: Path, profile: bool) -> list[str]:
    launcher = [PYTHON, str(BENCH_DIR / "profiled_daemon.py")] if profile else [CUSTODY]
    argv = [
        *launcher,
        "serve",
        "--config",
        str(env_dir / "server.toml"),
        "--listen",
        "127.0.0.1:0",
    ]
    help_text = subprocess.run(
        [CUSTODY, "serve", "--help"], capture_output=True, text=True, env=code_env(code), check=False
    ).stdout
    # Daemons with a JSON-RPC listener must not all take its configured port.
    if "--jsonrpc-listen" in help_text:
        argv += ["--jsonrpc-listen", "127.0.0.1:0"]
    return argv


def start_custody(
    name: str,
    code: Path,
    scratch: Path,
    database_url: str | None,
    *,
    profile_out: Path | None = None,
    limits: str | None = None,
    hsm: str | None = None,
) -> Server:
    env_dir = scratch / name
    dev_init(code, env_dir, database_url)
    if limits:
        with (env_dir / "server.toml").open("a") as server_toml:
            server_toml.write(f"\n[limits]\n{limits}\n")
    if hsm:
        server_toml_path = env_dir / "server.toml"
        text = server_toml_path.read_text()
        server_toml_path.write_text(text.replace("\n[hsm]\n", f"\n[hsm]\n{hsm}\n", 1))
    env = code_env(code)
    if profile_out is not None:
        env["CUSTODY_PROFILE_OUT"] = str(profile_out)
        env["PYTHONPATH"] = f"{code}{os.pathsep}{BENCH_DIR}"
    process, address = start_process(
        serve_argv(code, env_dir, profile_out is not None),
        env,
        scratch / f"{name}.log",
        r"custody listening on (\S+:\d+)",
        f"the {name} daemon",
    )
    server = Server(name, process, address, env_dir)
    with channel(server, "admin") as admin:
        pb_grpc.KeyServiceStub(admin).CreateKey(pb.CreateKeyRequest(label="ops"), timeout=60)
    return server


def start_replica(of: Server, code: Path, scratch: Path) -> Server:
    """A second daemon on ``of``'s configuration and database (PostgreSQL), listening on a port of its own.
    Both hand out nonces from one counter, as they sign for the same key."""
    name = f"{of.name}_replica"
    process, address = start_process(
        serve_argv(code, of.env_dir, False),
        code_env(code),
        scratch / f"{name}.log",
        r"custody listening on (\S+:\d+)",
        f"the {name} daemon",
    )
    return Server(name, process, address, of.env_dir, nonces=of.nonces, nonce_lock=of.nonce_lock)


def measure_scaling(one: Server, code: Path, scratch: Path, seconds: float, rounds: int) -> dict[str, Any]:
    """One daemon against two replicas sharing its PostgreSQL database, alternated, at the same total
    concurrency: how far a second process gets past one process's GIL on this machine."""
    replica = start_replica(one, code, scratch)
    try:
        single: list[dict[str, Any]] = []
        double: list[dict[str, Any]] = []
        for number in range(rounds):
            order = [(single, [one]), (double, [one, replica])]
            for rows, servers in order if number % 2 == 0 else reversed(order):
                rows.append(closed_loop(servers, SCALING_CONCURRENCY, seconds))
    finally:
        replica.stop()
    keys = ("rate_per_second", "p50_ms", "p99_ms", "server_cpu_ms_per_request")
    return {
        "concurrency": SCALING_CONCURRENCY,
        "one_process": {key: median_of(single, key) for key in keys},
        "two_processes": {key: median_of(double, key) for key in keys},
        "two_over_one": statistics.median(
            two["rate_per_second"] / one_row["rate_per_second"]
            for one_row, two in zip(single, double, strict=True)
        ),
    }


def start_bare(name: str, mode: str, env_dir: Path, scratch: Path) -> Server:
    process, address = start_process(
        [PYTHON, str(BENCH_DIR / "bare_server.py"), str(env_dir), "--mode", mode],
        code_env(REPOSITORY),
        scratch / f"{name}.log",
        r"listening on (\S+:\d+)",
        f"the {name} server",
    )
    return Server(name, process, address, env_dir)


def channel(server: Server, identity: str) -> grpc.Channel:
    pki = server.env_dir / "pki"
    return grpc.secure_channel(
        server.address,
        grpc.ssl_channel_credentials(
            root_certificates=(pki / "ca.pem").read_bytes(),
            private_key=(pki / f"{identity}.key").read_bytes(),
            certificate_chain=(pki / f"{identity}.pem").read_bytes(),
        ),
    )


def process_cpu_seconds(pid: int) -> float:
    """User and system CPU of ``pid`` and its live children (HSM lane workers), from /proc."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command name: state, ppid, ..., utime (14th field overall) and stime (15th).
        if stat.parent.name == str(pid) or fields[1] == str(pid):
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def measure_raw(env_dir: Path, seconds: float) -> float:
    server_toml = (env_dir / "server.toml").read_text()
    module = re.search(r'^module\s*=\s*"([^"]+)"', server_toml, re.M).group(1)  # type: ignore[union-attr]
    label = re.search(r'^token_label\s*=\s*"([^"]+)"', server_toml, re.M).group(1)  # type: ignore[union-attr]
    pin = (env_dir / "secrets" / "hsm.pin").read_text().strip()
    result = subprocess.run(
        [PYTHON, "-c", RAW_SIGN_SCRIPT, module, label, str(seconds)],
        input=pin + "\n",
        capture_output=True,
        text=True,
        env={**os.environ, "SOFTHSM2_CONF": str(env_dir / "softhsm" / "softhsm2.conf")},
        check=True,
    )
    return float(result.stdout.strip())


# -- load -----------------------------------------------------------------------------------------------------


def submission(server: Server) -> pb.SubmitRequestRequest:
    return pb.SubmitRequestRequest(
        key_label="ops", kind=pb.PAYLOAD_KIND_TRANSACTION, payload=transaction(server.next_nonce())
    )


def summarize(
    latencies: list[float], signed: int, not_signed: int, wall: float, cpu: float
) -> dict[str, Any]:
    ordered = sorted(latencies)
    return {
        "signed": signed,
        "not_signed": not_signed,
        "rate_per_second": signed / wall,
        "p50_ms": 1000 * statistics.median(ordered) if ordered else None,
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else None,
        "server_cpu_ms_per_request": 1000 * cpu / signed if signed else None,
    }


def closed_loop(target: Server | list[Server], concurrency: int, seconds: float) -> dict[str, Any]:
    """``concurrency`` clients calling as fast as answers come, spread over ``target``'s servers (replicas
    sharing one database); the CPU figure is their sum."""
    servers = target if isinstance(target, list) else [target]
    latencies: list[float] = []
    not_signed = 0
    lock = threading.Lock()
    with contextlib.ExitStack() as connections:
        stubs = []
        for server in servers:
            stub = pb_grpc.SigningServiceStub(connections.enter_context(channel(server, "backend")))
            stub.SubmitRequest(submission(server), timeout=60)  # the connection is up before the clock starts
            stubs.append((server, stub))
        deadline = time.perf_counter() + seconds

        def worker(server: Server, stub: pb_grpc.SigningServiceStub) -> None:
            nonlocal not_signed
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                answer = stub.SubmitRequest(submission(server), timeout=60)
                elapsed = time.perf_counter() - started
                with lock:
                    if answer.request.state == pb.REQUEST_STATE_SIGNED:
                        latencies.append(elapsed)
                    else:
                        not_signed += 1

        cpu_before = sum(process_cpu_seconds(server.process.pid) for server in servers)
        start = time.perf_counter()
        threads = [
            threading.Thread(target=worker, args=stubs[index % len(stubs)]) for index in range(concurrency)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - start
        cpu = sum(process_cpu_seconds(server.process.pid) for server in servers) - cpu_before
    return {"concurrency": concurrency, **summarize(latencies, len(latencies), not_signed, wall, cpu)}


def open_loop(server: Server, rate: float, seconds: float, seed: int) -> dict[str, Any]:
    """Poisson arrivals at ``rate`` per second for ``seconds``; each latency counts from the scheduled start."""
    latencies: list[float] = []
    not_signed = 0
    lock = threading.Lock()
    arrivals = random.Random(seed)
    pending: list[grpc.Future] = []  # type: ignore[type-arg]

    def done(scheduled: float) -> Callable[[Any], None]:
        def record(future: Any) -> None:
            nonlocal not_signed
            elapsed = time.perf_counter() - scheduled
            with lock:
                if future.exception() is None and future.result().request.state == pb.REQUEST_STATE_SIGNED:
                    latencies.append(elapsed)
                else:
                    not_signed += 1

        return record

    with channel(server, "backend") as connection:
        stub = pb_grpc.SigningServiceStub(connection)
        stub.SubmitRequest(submission(server), timeout=60)
        cpu_before = process_cpu_seconds(server.process.pid)
        start = time.perf_counter()
        scheduled = start
        while scheduled < start + seconds:
            scheduled += arrivals.expovariate(rate)
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            future = stub.SubmitRequest.future(submission(server), timeout=60)
            future.add_done_callback(done(scheduled))
            pending.append(future)
        for future in pending:
            with contextlib.suppress(grpc.RpcError):
                future.result()
        wall = time.perf_counter() - start
        cpu = process_cpu_seconds(server.process.pid) - cpu_before
    with lock:
        return {
            "offered_rate_per_second": rate,
            **summarize(list(latencies), len(latencies), not_signed, wall, cpu),
        }


# -- the profile ----------------------------------------------------------------------------------------------


def component_split(
    profile_path: Path, requests: int, process_cpu_ms: float, cpu_ms_unprofiled: float | None
) -> dict[str, Any]:
    """CPU per request by component (own time of each function, grouped) and of the main calls (inclusive).

    The profile sees only Python threads; the daemon's CPU from /proc minus theirs is the part spent in
    threads Python did not start (gRPC core's own), which the profiler does not slow. cProfile slows every
    Python call, so the Python components are scaled to what is left of the unprofiled CPU per request
    measured in the same run once that part is taken off.
    """
    stats = pstats.Stats(str(profile_path)).stats  # type: ignore[attr-defined]
    own: dict[str, float] = {}
    total = 0.0
    for (filename, _line, function), (_cc, _nc, own_time, _cumulative, _callers) in stats.items():
        where = f"{filename}:{function}"
        total += own_time
        group = next((name for name, marks in COMPONENTS if any(mark in where for mark in marks)), "other")
        own[group] = own.get(group, 0.0) + own_time
    inclusive: dict[str, float] = {}
    for name, file_mark, function_name in INCLUSIVE_CALLS:
        inclusive[name] = max(
            (
                cumulative
                for (filename, _line, function), (_cc, _nc, _own, cumulative, _callers) in stats.items()
                if file_mark in filename and function == function_name
            ),
            default=0.0,
        )
    python_ms = 1000 * total / requests
    outside_python_ms = max(0.0, process_cpu_ms - python_ms)
    scale = 1.0
    if cpu_ms_unprofiled and python_ms:
        scale = max(0.0, cpu_ms_unprofiled - outside_python_ms) / python_ms
    by_component = {
        name: round(1000 * seconds / requests * scale, 4)
        for name, seconds in sorted(own.items(), key=lambda item: -item[1])
    }
    by_component["outside Python threads (gRPC core, TLS)"] = round(outside_python_ms, 4)
    unclassified = sorted(
        (
            (own_time, f"{filename}:{function}")
            for (filename, _line, function), (_cc, _nc, own_time, _cumulative, _callers) in stats.items()
            if not any(any(mark in f"{filename}:{function}" for mark in marks) for _name, marks in COMPONENTS)
        ),
        reverse=True,
    )[:15]
    return {
        "requests": requests,
        "profiled_process_cpu_ms_per_request": process_cpu_ms,
        "profiled_python_cpu_ms_per_request": python_ms,
        "unprofiled_cpu_ms_per_request": cpu_ms_unprofiled,
        "python_scale": scale,
        "own_cpu_ms_per_request_by_component": by_component,
        "inclusive_cpu_ms_per_request": {
            name: round(1000 * seconds / requests * scale, 4) for name, seconds in inclusive.items()
        },
        "largest_in_other_ms_per_request": {
            where: round(1000 * seconds / requests * scale, 4) for seconds, where in unclassified
        },
    }


def run_profile(
    scratch: Path, seconds: float, cpu_ms_unprofiled: float | None, profile_path: Path
) -> dict[str, Any]:
    server = start_custody("profiled_sqlite", REPOSITORY, scratch, None, profile_out=profile_path)
    cpu_before = process_cpu_seconds(server.process.pid)
    try:
        result = closed_loop(server, CEILING_CONCURRENCY, seconds)
    finally:
        cpu_all = process_cpu_seconds(server.process.pid) - cpu_before
        server.stop()
    # Everything the daemon did after start is in both figures: the measured calls, the warm-up call before
    # them and the background worker; per request they are counted over the calls made after start.
    requests = result["signed"] + result["not_signed"] + 1
    split = component_split(profile_path, requests, 1000 * cpu_all / requests, cpu_ms_unprofiled)
    return {"closed_loop_under_profiler": result, **split}


# -- the run --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def baseline_checkout(ref: str | None, scratch: Path) -> Iterator[tuple[Path, str] | None]:
    """The revision ``ref`` checked out into a temporary git worktree, removed afterwards."""
    if ref is None:
        yield None
        return
    commit = subprocess.run(
        ["git", "-C", str(REPOSITORY), "rev-parse", "--verify", f"{ref}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    path = scratch / "baseline-tree"
    subprocess.run(
        ["git", "-C", str(REPOSITORY), "worktree", "add", "--detach", str(path), commit],
        check=True,
        capture_output=True,
    )
    try:
        yield path, commit
    finally:
        subprocess.run(
            ["git", "-C", str(REPOSITORY), "worktree", "remove", "--force", str(path)],
            check=False,
            capture_output=True,
        )
        subprocess.run(["git", "-C", str(REPOSITORY), "worktree", "prune"], check=False, capture_output=True)


@contextlib.contextmanager
def postgres_database() -> Iterator[Callable[[], str]]:
    """Makes PostgreSQL databases on demand and drops them at the end."""
    import psycopg

    made: list[str] = []

    def create() -> str:
        name = f"custody_bench_{secrets.token_hex(4)}"
        with psycopg.connect(f"{POSTGRES_ADMIN_URL}/postgres", autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        made.append(name)
        return f"{POSTGRES_ADMIN_URL}/{name}"

    try:
        yield create
    finally:
        with psycopg.connect(f"{POSTGRES_ADMIN_URL}/postgres", autocommit=True) as connection:
            for name in made:
                connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def median_of(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [row[key] for row in rows if row.get(key) is not None]
    return statistics.median(values) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.5, help="measuring time per figure and round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of alternated measurements")
    parser.add_argument("--backends", default="sqlite,postgresql", help="comma-separated: sqlite,postgresql")
    parser.add_argument("--baseline-ref", help="also measure the daemon of this git revision, alternating")
    parser.add_argument("--profile", action="store_true", help="split the CPU per request by component")
    parser.add_argument(
        "--hsm",
        metavar="TOML",
        help="lines for the [hsm] table of this tree's daemons only, e.g. 'sign_in_write_transaction = true'"
        " (with --baseline-ref HEAD: the same code with and without it)",
    )
    parser.add_argument(
        "--limits",
        metavar="TOML",
        help="a [limits] table body for this tree's daemons only, e.g. 'max_workers = 8' (with"
        " --baseline-ref HEAD: the same code with and without it)",
    )
    parser.add_argument(
        "--scaling",
        action="store_true",
        help="also measure two replicas on one PostgreSQL database against one daemon",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/signing_rate.json"))
    args = parser.parse_args()
    backends = [name for name in args.backends.split(",") if name]

    started = time.time()
    servers: list[Server] = []
    with (
        tempfile.TemporaryDirectory(prefix="custody-bench-") as scratch_name,
        postgres_database() as new_database,
    ):
        scratch = Path(scratch_name)
        with baseline_checkout(args.baseline_ref, scratch) as baseline:
            try:
                print("starting the servers ...", file=sys.stderr)
                ceiling_env = scratch / "ceiling"
                dev_init(REPOSITORY, ceiling_env, None)
                ceiling = start_bare("ceiling", "sign", ceiling_env, scratch)
                noop = start_bare("grpc_noop", "noop", ceiling_env, scratch)
                servers += [ceiling, noop]
                variants: list[tuple[str, Path]] = [("custody", REPOSITORY)]
                if baseline is not None:
                    variants.append(("baseline", baseline[0]))
                custody: dict[tuple[str, str], Server] = {}
                for backend in backends:
                    for variant, code in variants:
                        url = new_database() if backend == "postgresql" else None
                        server = start_custody(
                            f"{variant}_{backend}",
                            code,
                            scratch,
                            url,
                            limits=args.limits if variant == "custody" else None,
                            hsm=args.hsm if variant == "custody" else None,
                        )
                        servers.append(server)
                        custody[(variant, backend)] = server

                rounds: list[dict[str, Any]] = []
                for number in range(args.rounds):
                    print(f"round {number + 1} of {args.rounds} ...", file=sys.stderr)
                    measured: dict[str, Any] = {
                        "raw_signatures_per_second": measure_raw(ceiling_env, args.seconds),
                        "ceiling": closed_loop(ceiling, CEILING_CONCURRENCY, args.seconds),
                        "grpc_noop": closed_loop(noop, CEILING_CONCURRENCY, args.seconds),
                    }
                    # Alternate which variant goes first, so neither always runs on a warmer machine.
                    order = variants if number % 2 == 0 else list(reversed(variants))
                    for backend in backends:
                        for variant, _code in order:
                            server = custody[(variant, backend)]
                            closed = [
                                closed_loop(server, level, args.seconds) for level in CONCURRENCY_LEVELS
                            ]
                            saturated = max(row["rate_per_second"] for row in closed)
                            measured[f"{variant}_{backend}"] = {
                                "closed_loop": closed,
                                "open_loop_half_saturation": open_loop(
                                    server, saturated / 2, args.seconds, seed=number
                                ),
                            }
                    rounds.append(measured)

                scaling = None
                if args.scaling and "postgresql" in backends:
                    print("one process against two replicas ...", file=sys.stderr)
                    scaling = measure_scaling(
                        custody[("custody", "postgresql")], REPOSITORY, scratch, args.seconds, args.rounds
                    )
                profile = None
                if args.profile:
                    print("profiled run ...", file=sys.stderr)
                    unprofiled = median_of(
                        [
                            next(row for row in r["custody_sqlite"]["closed_loop"] if row["concurrency"] == 8)
                            for r in rounds
                            if "custody_sqlite" in r
                        ],
                        "server_cpu_ms_per_request",
                    )
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    profile = run_profile(
                        scratch, max(args.seconds, 5.0), unprofiled, args.out.with_suffix(".pstats")
                    )
            finally:
                for server in servers:
                    server.stop()
        report = build_report(args, rounds, variants_named(baseline), backends, profile, started)
        report["scaling_postgresql"] = scaling
    print_report(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwritten to {args.out}")


def variants_named(baseline: tuple[Path, str] | None) -> dict[str, str | None]:
    head = subprocess.run(
        ["git", "-C", str(REPOSITORY), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(REPOSITORY), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    named: dict[str, str | None] = {"custody": head + (" with uncommitted changes" if dirty else "")}
    if baseline is not None:
        named["baseline"] = baseline[1]
    return named


def build_report(
    args: argparse.Namespace,
    rounds: list[dict[str, Any]],
    variants: dict[str, str | None],
    backends: list[str],
    profile: dict[str, Any] | None,
    started: float,
) -> dict[str, Any]:
    raw = statistics.median(r["raw_signatures_per_second"] for r in rounds)
    ceiling = {
        key: median_of([r["ceiling"] for r in rounds], key)
        for key in ("rate_per_second", "p50_ms", "p99_ms", "server_cpu_ms_per_request")
    }
    noop = {
        key: median_of([r["grpc_noop"] for r in rounds], key)
        for key in ("rate_per_second", "p50_ms", "p99_ms", "server_cpu_ms_per_request")
    }
    servers: dict[str, Any] = {}
    for variant in variants:
        for backend in backends:
            name = f"{variant}_{backend}"
            closed = []
            for index, level in enumerate(CONCURRENCY_LEVELS):
                rows = [r[name]["closed_loop"][index] for r in rounds]
                figures = {
                    key: median_of(rows, key)
                    for key in ("rate_per_second", "p50_ms", "p99_ms", "server_cpu_ms_per_request")
                }
                # Ratios are taken round by round (against the ceiling and raw of the same round), then
                # their median, so that a slow round does not skew them.
                figures["ratio_to_ceiling"] = statistics.median(
                    row["rate_per_second"] / r["ceiling"]["rate_per_second"]
                    for row, r in zip(rows, rounds, strict=True)
                )
                figures["ratio_to_raw"] = statistics.median(
                    row["rate_per_second"] / r["raw_signatures_per_second"]
                    for row, r in zip(rows, rounds, strict=True)
                )
                closed.append({"concurrency": level, **figures, "signed": sum(row["signed"] for row in rows)})
            open_rows = [r[name]["open_loop_half_saturation"] for r in rounds]
            servers[name] = {
                "closed_loop": closed,
                "open_loop_half_saturation": {
                    key: median_of(open_rows, key)
                    for key in ("offered_rate_per_second", "rate_per_second", "p50_ms", "p99_ms")
                },
            }
    if "baseline" in variants:
        for backend in backends:
            ours, theirs = servers[f"custody_{backend}"], servers[f"baseline_{backend}"]
            name_ours, name_theirs = f"custody_{backend}", f"baseline_{backend}"
            for index in range(len(CONCURRENCY_LEVELS)):
                rate_ratio = statistics.median(
                    r[name_ours]["closed_loop"][index]["rate_per_second"]
                    / r[name_theirs]["closed_loop"][index]["rate_per_second"]
                    for r in rounds
                )
                cpu_ours = ours["closed_loop"][index]["server_cpu_ms_per_request"]
                cpu_theirs = theirs["closed_loop"][index]["server_cpu_ms_per_request"]
                ours["closed_loop"][index]["ratio_to_baseline"] = rate_ratio
                ours["closed_loop"][index]["cpu_ratio_to_baseline"] = (
                    cpu_ours / cpu_theirs if cpu_ours and cpu_theirs else None
                )
    return {
        "benchmark": "signing_rate",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": os.getloadavg(),
            "note": "load generator on the same cores; compare ratios, not absolute rates",
        },
        "seconds_per_figure": args.seconds,
        "rounds": args.rounds,
        "variants": variants,
        "custody_limits": args.limits,
        "custody_hsm": args.hsm,
        "raw_signatures_per_second": raw,
        "ceiling_bare_grpc_hsm": ceiling,
        "grpc_noop": noop,
        "servers": servers,
        "profile": profile,
        "per_round": rounds,
        "wall_seconds": time.time() - started,
        "run_id": secrets.token_hex(4),
    }


def print_report(report: dict[str, Any]) -> None:
    ceiling, noop = report["ceiling_bare_grpc_hsm"], report["grpc_noop"]
    print()
    for variant, commit in report["variants"].items():
        print(f"{variant}: {commit}")
    print(
        f"raw token rate (python-pkcs11, 1 thread): {report['raw_signatures_per_second']:,.0f} signatures/s"
    )
    print(
        f"ceiling (bare gRPC+HSM, c={CEILING_CONCURRENCY}): {ceiling['rate_per_second']:,.0f}/s,"
        f" p50 {ceiling['p50_ms']:.2f} ms, CPU {ceiling['server_cpu_ms_per_request']:.2f} ms/request;"
        f" gRPC alone: {noop['rate_per_second']:,.0f}/s, CPU {noop['server_cpu_ms_per_request']:.2f} ms/request"
    )
    print(
        f"{'server':<22} {'c':>3} {'signed/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'CPU ms':>7}"
        f" {'/ceiling':>8} {'/raw':>6} {'/base':>6} {'CPU/base':>8}"
    )
    for name, figures in report["servers"].items():
        for row in figures["closed_loop"]:
            to_baseline = row.get("ratio_to_baseline")
            print(
                f"{name:<22} {row['concurrency']:>3} {row['rate_per_second']:>9,.1f} {row['p50_ms']:>7.2f}"
                f" {row['p99_ms']:>7.2f} {row['server_cpu_ms_per_request'] or 0:>7.2f}"
                f" {row['ratio_to_ceiling']:>8.3f} {row['ratio_to_raw']:>6.3f}"
                + (f" {to_baseline:>6.3f}" if to_baseline else "")
                + (f" {row['cpu_ratio_to_baseline']:>8.3f}" if row.get("cpu_ratio_to_baseline") else "")
            )
        opened = figures["open_loop_half_saturation"]
        print(
            f"{name:<22} open loop at {opened['offered_rate_per_second']:,.0f}/s:"
            f" p50 {opened['p50_ms']:.2f} ms, p99 {opened['p99_ms']:.2f} ms"
        )
    scaling = report.get("scaling_postgresql")
    if scaling:
        one, two = scaling["one_process"], scaling["two_processes"]
        print(
            f"\nPostgreSQL at c={scaling['concurrency']}: one process {one['rate_per_second']:,.1f}/s"
            f" (CPU {one['server_cpu_ms_per_request']:.2f} ms/request), two replicas"
            f" {two['rate_per_second']:,.1f}/s (CPU {two['server_cpu_ms_per_request']:.2f} ms/request):"
            f" {scaling['two_over_one']:.2f} times one process"
        )
    profile = report["profile"]
    if profile:
        print(
            f"\nCPU per request by component (own time, Python scaled to"
            f" {profile['unprofiled_cpu_ms_per_request'] or 0:.2f} ms unprofiled):"
        )
        for name, value in profile["own_cpu_ms_per_request_by_component"].items():
            print(f"  {value:7.3f} ms  {name}")
        print("inclusive CPU per request of the main calls (they overlap):")
        for name, value in profile["inclusive_cpu_ms_per_request"].items():
            print(f"  {value:7.3f} ms  {name}")


if __name__ == "__main__":
    main()
