"""The upstream Ethereum node: where eth_sendTransaction learns missing fields and broadcasts, and where the
allowlisted read methods go.

Its URL may carry an API key, so no message names it: errors say "the upstream node ([jsonrpc] upstream)".
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import urllib.error
import urllib.request
from typing import Any

from custody.domain.errors import Unavailable
from custody.jsonrpc.protocol import JsonRpcError

log = logging.getLogger(__name__)

UPSTREAM_TIMEOUT_SECONDS = 15.0
# A node's answer to an allowlisted read (eth_getLogs, a block with its transactions) can be large, but a
# bound keeps a misbehaving node from filling the daemon's memory.
MAX_UPSTREAM_ANSWER_BYTES = 32 * 1024 * 1024
UPSTREAM = "the upstream node ([jsonrpc] upstream)"


class UpstreamError(JsonRpcError):
    """The node answered the call with an error object; passed on to the caller as the node wrote it."""


class Upstream:
    def __init__(self, url: str, timeout: float = UPSTREAM_TIMEOUT_SECONDS) -> None:
        self._url = url
        self._timeout = timeout
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def call(self, method: str, params: list[Any] | dict[str, Any]) -> Any:
        """The node's result for one call; UpstreamError for its error answer, Unavailable when it cannot be
        reached or answers something that is not JSON-RPC."""
        with self._lock:
            call_id = next(self._ids)
        body = json.dumps({"jsonrpc": "2.0", "id": call_id, "method": method, "params": params}).encode()
        request = urllib.request.Request(  # noqa: S310 -- the scheme is checked to be http(s) in the config
            self._url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                raw = response.read(MAX_UPSTREAM_ANSWER_BYTES + 1)
        except urllib.error.HTTPError as error:
            # Nodes answer JSON-RPC errors with HTTP 200, but some gateways use 4xx/5xx with a JSON body.
            raw = error.read(MAX_UPSTREAM_ANSWER_BYTES + 1)
            if not raw:
                raise Unavailable(f"{UPSTREAM} answered {method} with HTTP status {error.code}") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            log.warning("the upstream node could not be reached for %s: %s", method, reason)
            raise Unavailable(f"{UPSTREAM} could not be reached for {method}") from None
        if len(raw) > MAX_UPSTREAM_ANSWER_BYTES:
            raise Unavailable(
                f"{UPSTREAM} answered {method} with more than {MAX_UPSTREAM_ANSWER_BYTES} bytes"
            )
        try:
            answer = json.loads(raw)
        except (ValueError, RecursionError):
            raise Unavailable(f"{UPSTREAM} answered {method} with something that is not JSON") from None
        if not isinstance(answer, dict) or ("result" not in answer and "error" not in answer):
            raise Unavailable(f"{UPSTREAM} answered {method} with something that is not a JSON-RPC answer")
        error_object = answer.get("error")
        if error_object is not None:
            if not isinstance(error_object, dict) or not isinstance(error_object.get("code"), int):
                raise Unavailable(f"{UPSTREAM} answered {method} with a malformed error")
            data = error_object.get("data")
            raise UpstreamError(
                error_object["code"],
                str(error_object.get("message", "")),
                data if isinstance(data, dict) else ({"upstream": data} if data is not None else None),
            )
        return answer["result"]
