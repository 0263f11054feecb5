"""`custody policy ...` without a daemon: reading the proposed file, and how an explanation is shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from custody.api._gen import custody_pb2
from custody.cli.policy import (
    MAX_POLICY_BYTES,
    explanation_text,
    explanation_to_json,
    read_policy_document,
)
from custody.domain.errors import InvalidInput


def explanation() -> custody_pb2.ExplainRequestResponse:
    return custody_pb2.ExplainRequestResponse(
        decision=custody_pb2.Decision(
            action="approve",
            rule="treasury-transactions",
            reason="needs 2 of treasury",
            policy_version=4,
            quorum=[custody_pb2.QuorumTerm(group="treasury", threshold=2)],
        ),
        rules=[
            custody_pb2.RuleTrace(
                rule="ops-transactions",
                matched=False,
                conditions=[
                    custody_pb2.ConditionTrace(condition="keys", matched=False, detail="treasury is not ops"),
                ],
            ),
            custody_pb2.RuleTrace(
                rule="treasury-transactions",
                matched=True,
                conditions=[
                    custody_pb2.ConditionTrace(condition="keys", matched=True, detail="treasury"),
                    custody_pb2.ConditionTrace(condition="kinds", matched=True),
                ],
            ),
        ],
    )


def test_explanation_json_mirrors_the_proto() -> None:
    answer = explanation_to_json(explanation())
    assert answer["decision"]["rule"] == "treasury-transactions"
    assert answer["decision"]["quorum"] == [{"group": "treasury", "threshold": 2}]
    assert answer["decision"]["policy_version"] == 4
    assert answer["rules"] == [
        {
            "rule": "ops-transactions",
            "matched": False,
            "conditions": [{"condition": "keys", "matched": False, "detail": "treasury is not ops"}],
        },
        {
            "rule": "treasury-transactions",
            "matched": True,
            "conditions": [
                {"condition": "keys", "matched": True, "detail": "treasury"},
                {"condition": "kinds", "matched": True, "detail": ""},
            ],
        },
    ]
    assert json.loads(json.dumps(answer)) == answer


def test_explanation_text_names_each_rule_and_condition() -> None:
    lines = explanation_text("req_9", explanation()).splitlines()
    assert lines[0] == "request req_9: approve by rule treasury-transactions under policy version 4"
    assert "  quorum: 2 of treasury" in lines
    assert "rule ops-transactions: did not match" in lines
    assert "  [NO ] keys (treasury is not ops)" in lines
    assert "rule treasury-transactions: MATCHED" in lines
    assert "  [yes] kinds" in lines


def test_deny_by_default_says_so() -> None:
    response = custody_pb2.ExplainRequestResponse(
        decision=custody_pb2.Decision(action="deny", reason="no rule allows this request", policy_version=1)
    )
    text = explanation_text("req_1", response)
    assert "deny (no rule matched: deny by default)" in text
    assert "no rule was tried." in text


def test_a_proposed_policy_is_read_as_utf8_text(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text("version = 2\n# Zürich office\n", encoding="utf-8")
    assert read_policy_document(str(path)) == "version = 2\n# Zürich office\n"


def test_unreadable_oversized_and_binary_policy_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"cannot read .*missing\.toml: no such file or directory"):
        read_policy_document(str(tmp_path / "missing.toml"))
    large = tmp_path / "large.toml"
    large.write_bytes(b"#" * (MAX_POLICY_BYTES + 1))
    with pytest.raises(InvalidInput, match="larger than the limit"):
        read_policy_document(str(large))
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"version = 1\n\xff\n")
    with pytest.raises(InvalidInput, match=r"not UTF-8 text \(byte 12\)"):
        read_policy_document(str(binary))
