"""Offline verification against an event recorded apart from the database: ``custody audit verify --file EXPORT
--public-key KEY --anchor SEQUENCE:HASH`` fails an export that no longer holds that very event, even when its
chain and its checkpoints verify on their own."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from custody.cli.audit import parse_recorded_event
from custody.cli.main import run
from custody.domain.errors import InvalidInput

from .test_audit_cli import build_chain, raw_public_key, write_export


@pytest.fixture
def here(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.delenv("CUSTODY_PROFILE", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _verify(export: Path, key: Ed25519PrivateKey, anchor: str) -> int:
    return run(
        [
            "audit",
            "verify",
            "--file",
            str(export),
            "--public-key",
            raw_public_key(key).hex(),
            "--anchor",
            anchor,
        ]
    )


def test_an_export_holding_the_recorded_event_verifies(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = Ed25519PrivateKey.generate()
    chain = build_chain(10, key)
    recorded = chain[6]

    assert (
        _verify(
            write_export(here / "audit.jsonl", chain), key, f"{recorded.sequence}:0x{recorded.hash.hex()}"
        )
        == 0
    )
    assert "ok" in capsys.readouterr().out


def test_an_export_that_ends_before_the_recorded_event_is_refused(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An export of a database restored to an older copy: every checkpoint in it verifies."""
    key = Ed25519PrivateKey.generate()
    chain = build_chain(10, key)
    older = [event for event in chain if event.sequence <= 10]
    assert older[-1].kind == "audit.checkpoint"
    recorded = chain[-1]

    assert (
        _verify(write_export(here / "older.jsonl", older), key, f"{recorded.sequence}:{recorded.hash.hex()}")
        == 1
    )
    out = capsys.readouterr().out
    assert f"the export ends at event 10, but the recorded event vouches for event {recorded.sequence}" in out


def test_another_chain_signed_by_the_same_key_is_refused(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A log rewritten in the database and then checkpointed by the daemon verifies on its own; the event
    recorded before the rewrite does not match it."""
    key = Ed25519PrivateKey.generate()
    recorded = build_chain(10, key)[6]
    rewritten = build_chain(10, key, checkpoint_every=3)

    assert (
        _verify(
            write_export(here / "rewritten.jsonl", rewritten),
            key,
            f"{recorded.sequence}:{recorded.hash.hex()}",
        )
        == 1
    )
    out = capsys.readouterr().out
    assert f"audit event {recorded.sequence} in the export has hash" in out


@pytest.mark.parametrize("value", ["", "7", "7:", "0:" + "ab" * 32, "x:" + "ab" * 32, "7:" + "ab" * 31])
def test_a_malformed_anchor_names_the_option(value: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_recorded_event(value)
    assert raised.value.message.startswith("--anchor: ")


def test_the_anchor_needs_an_export(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["audit", "verify", "--anchor", "7:" + "ab" * 32]) == 2
    assert "--anchor checks an export" in capsys.readouterr().err
