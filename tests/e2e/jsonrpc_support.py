"""What the JSON-RPC end-to-end tests share: the endpoint's address (from the daemon's log), a client that POSTs
bodies over TLS with a bearer token or a client certificate, and a stand-in upstream node.

The upstream stand-in answers the few methods eth_sendTransaction fills a transaction from (chain id, pending
nonce, fee history, tip, gas estimate), records every eth_sendRawTransaction it gets and answers the read
methods with fixed values. The tool tests (tests/tools) run the endpoint against a real anvil node; here the
node's answers are fixed so that a test can check exactly what was filled in, on the development policy's
chain (Sepolia), and then check the broadcast transaction independently with eth-account.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from eth_utils import keccak

from .conftest import Daemon, DevEnv

SEPOLIA = 11155111
_JSONRPC_LISTENING = re.compile(r"custody JSON-RPC listening on (\S+?):(\d+)")


def jsonrpc_url(daemon: Daemon, timeout: float = 30.0) -> str:
    """The https:// URL of the daemon's JSON-RPC endpoint, from the line the daemon logs when it listens."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _JSONRPC_LISTENING.search(daemon.log())
        if found:
            return f"https://{found.group(1)}:{found.group(2)}/"
        time.sleep(0.05)
    raise AssertionError(f"the daemon never said where its JSON-RPC endpoint listens: {daemon.log()}")


def backend_token(env: DevEnv) -> str:
    return (env.directory / "tokens" / "backend.token").read_text().strip()


@dataclass
class Answer:
    status: int
    body: Any  # the decoded JSON, or None for an empty body
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def result(self) -> Any:
        assert isinstance(self.body, dict) and "result" in self.body, self.body
        return self.body["result"]

    @property
    def error(self) -> dict[str, Any]:
        assert isinstance(self.body, dict) and "error" in self.body, self.body
        return self.body["error"]  # type: ignore[no-any-return]


class JsonRpcClient:
    """POSTs to the endpoint as a tool would: TLS verified against the custody CA, and a bearer token or a
    client certificate (or neither)."""

    def __init__(
        self, env: DevEnv, url: str, *, token: str | None = None, identity: str | None = None
    ) -> None:
        self.url = url
        self._token = token
        self._context = ssl.create_default_context(cafile=str(env.directory / "pki" / "ca.pem"))
        if identity is not None:
            self._context.load_cert_chain(
                str(env.directory / "pki" / f"{identity}.pem"), str(env.directory / "pki" / f"{identity}.key")
            )
        self._ids = iter(range(1, 10**9))

    def post(self, body: bytes, headers: dict[str, str] | None = None) -> Answer:
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if self._token is not None:
            all_headers.setdefault("Authorization", f"Bearer {self._token}")
        request = urllib.request.Request(self.url, data=body, headers=all_headers, method="POST")
        try:
            with urllib.request.urlopen(request, context=self._context, timeout=120) as response:
                raw, status, answer_headers = response.read(), response.status, dict(response.headers)
        except urllib.error.HTTPError as refused:
            raw, status, answer_headers = refused.read(), refused.code, dict(refused.headers)
        return Answer(status, json.loads(raw) if raw else None, answer_headers)

    def call(self, method: str, *params: Any) -> Answer:
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}
        return self.post(json.dumps(body).encode())

    def batch(self, calls: list[dict[str, Any]]) -> Answer:
        return self.post(json.dumps(calls).encode())


class AnswerLost(Exception):
    """Raised by ``UpstreamNode.answer`` for a call the node carried out but whose answer is lost: the client
    gets an empty HTTP 502, as from a gateway whose node was slow."""


@dataclass
class UpstreamNode:
    """A stand-in Ethereum node on a free local port (see the module docstring)."""

    chain_id: int = SEPOLIA
    pending_nonce: int = 0
    next_base_fee: int = 7 * 10**9
    tip: int = 10**9
    gas_estimate: int = 21_000
    broadcast: list[bytes] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, method: str, params: list[Any]) -> Any:
        self.calls.append(method)
        if method == "eth_chainId":
            return hex(self.chain_id)
        if method == "net_version":
            return str(self.chain_id)
        if method == "eth_getTransactionCount":
            return hex(self.pending_nonce)
        if method == "eth_feeHistory":
            return {
                "oldestBlock": "0x10",
                "baseFeePerGas": [hex(self.next_base_fee)] * 2,
                "gasUsedRatio": [0.5],
            }
        if method == "eth_maxPriorityFeePerGas":
            return hex(self.tip)
        if method == "eth_gasPrice":
            return hex(self.next_base_fee + self.tip)
        if method == "eth_estimateGas":
            return hex(self.gas_estimate)
        if method == "eth_blockNumber":
            return "0x10"
        if method == "eth_getBlockByNumber":
            return {"number": "0x10", "baseFeePerGas": hex(self.next_base_fee), "gasLimit": hex(30_000_000)}
        if method == "eth_sendRawTransaction":
            raw = bytes.fromhex(params[0].removeprefix("0x"))
            self.broadcast.append(raw)
            return "0x" + keccak(raw).hex()
        if method == "eth_getTransactionByHash":
            known = {"0x" + keccak(raw).hex() for raw in self.broadcast}
            return {"hash": params[0]} if params[0] in known else None
        raise LookupError(method)

    def start(self) -> UpstreamNode:
        node = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                call = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                try:
                    answer = {
                        "jsonrpc": "2.0",
                        "id": call["id"],
                        "result": node.answer(call["method"], call["params"]),
                    }
                except AnswerLost:
                    self.send_response(502)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                except LookupError:
                    answer = {
                        "jsonrpc": "2.0",
                        "id": call["id"],
                        "error": {"code": -32601, "message": f"the method {call['method']} does not exist"},
                    }
                body = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
