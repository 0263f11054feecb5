"""The payload every benchmark signs: an EIP-1559 transfer of 0.001 ether on Sepolia, which the development
policy signs at once for key `ops` and holds for approvals for key `treasury`. Benchmarks run as scripts
(`python bench/NAME.py`), so they import this module by its file name."""

from __future__ import annotations

import json


def transaction(nonce: int) -> bytes:
    return json.dumps(
        {
            "type": 2,
            "chainId": 11155111,
            "nonce": nonce,
            "to": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "value": 10**15,
            "gas": 21000,
            "maxFeePerGas": 30 * 10**9,
            "maxPriorityFeePerGas": 10**9,
        }
    ).encode()
