"""Fixtures for the approver key tests: an approval statement to sign and the approver's own SoftHSM2 token.

The token tests run their PKCS#11 calls in a child process (token_scenarios.py): SoftHSM2 binds SOFTHSM2_CONF
once per process, and this pytest process may have loaded it already for the HSM tests' token directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from custody.domain.approvals import ApprovalStatement
from custody.domain.requests import Verdict
from custody.hsm.softhsm import create_softhsm_token

APPROVER_TOKEN_LABEL = "approver-alice"
APPROVER_PIN = "alice-token-pin-2468"
APPROVER_SO_PIN = "alice-token-so-pin-1357"
SCENARIOS_SCRIPT = Path(__file__).with_name("token_scenarios.py")


@pytest.fixture(scope="session")
def statement_bytes() -> bytes:
    """A well-formed statement; what it says does not matter to a signer, only its exact bytes."""
    return ApprovalStatement(
        request_id="req_018bcfe56800a1b2c3d4e5f6a7b8c9d0e1f2",
        digest=bytes(range(32)),
        payload_hash=bytes(range(32, 64)),
        chain_id=11155111,
        key_id="00112233445566778899aabbccddeeff",
        policy_version=1,
        decision=Verdict.APPROVE,
        approver="alice",
        expires_at=1_700_003_600,
    ).to_bytes()


@pytest.fixture(scope="module")
def token_outcomes(tmp_path_factory: pytest.TempPathFactory, statement_bytes: bytes) -> dict[str, Any]:
    """Create the approver's token in a fresh directory and run every token scenario once in a child."""
    directory = tmp_path_factory.mktemp("approver-token")
    token = create_softhsm_token(directory, APPROVER_TOKEN_LABEL, APPROVER_PIN, APPROVER_SO_PIN)
    environment = dict(
        os.environ, SOFTHSM2_CONF=str(token.config_path), CUSTODY_TEST_APPROVER_PIN=APPROVER_PIN
    )
    completed = subprocess.run(
        [sys.executable, str(SCENARIOS_SCRIPT), token.module_path, token.label, statement_bytes.hex()],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, f"the token scenarios failed:\n{completed.stderr}"
    assert APPROVER_PIN not in completed.stdout
    assert APPROVER_PIN not in completed.stderr
    outcomes: dict[str, Any] = json.loads(completed.stdout)
    return outcomes
