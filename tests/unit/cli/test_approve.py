"""The approver's side of `custody approve` and `custody reject`, without a daemon.

What is tested here is the approver's own logic: recomputing the digest from the payload and refusing a daemon
that disagrees, turning the proto request into the domain request a statement binds, the summary, the
confirmation, and signing with the real key files `custody dev init` writes. The requests are built as the
daemon would send them, with digests computed independently by eth-account and hashlib; the lead's end-to-end
tests drive the same commands against the real daemon.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from eth_abi.abi import encode
from eth_account.messages import encode_defunct, encode_typed_data
from eth_account.typed_transactions import TypedTransaction
from eth_utils.crypto import keccak

from custody.api._gen import custody_pb2
from custody.approver_keys import ApproverSigner
from custody.approver_keys.pkcs8_file import Pkcs8FileSigner
from custody.cli.approve import SignedVerdict, load_approver_signer, profile_identity, review_and_sign
from custody.cli.dev_env import DevEnvironment, init_dev_environment
from custody.cli.errors import NotConfirmed, ServerDisagrees
from custody.cli.main import run
from custody.cli.profile import load_profile
from custody.cli.review import (
    check_server_hashes,
    domain_request,
    recompute_hashes,
    review_text,
)
from custody.domain.errors import ConfigurationError, FailedPrecondition, PermissionDenied
from custody.domain.requests import PayloadKind, RequestState, Verdict

TOKEN = "0x6B175474E89094C44Da98b954EedeAC495271d0F"
RECIPIENT = "0x000000000000000000000000000000000000dEaD"
ADDRESS = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
NOW = 1_900_000_000

TRANSACTION = {
    "type": 2,
    "chainId": 11155111,
    "nonce": 4,
    "to": RECIPIENT,
    "value": 1_500_000_000_000_000_000,
    "gas": 21000,
    "maxFeePerGas": 30 * 10**9,
    "maxPriorityFeePerGas": 10**9,
}

TREASURY_DECISION = custody_pb2.Decision(
    action="approve",
    rule="treasury-transactions",
    reason="treasury transactions need 2 of treasury",
    policy_version=2,
    quorum=[custody_pb2.QuorumTerm(group="treasury", threshold=2)],
)


@pytest.fixture(scope="module")
def environment(tmp_path_factory: pytest.TempPathFactory) -> DevEnvironment:
    return init_dev_environment(tmp_path_factory.mktemp("approve") / "env", None)


def pending_request(
    kind: int, payload: bytes, digest: bytes, *, chain_id: int = 0
) -> custody_pb2.SigningRequest:
    """A request as the daemon sends it: digest and payload hash as given, computed by the caller."""
    return custody_pb2.SigningRequest(
        request_id="req_7",
        key_label="treasury",
        key_id="0a0b0c",
        address=ADDRESS,
        requester="backend",
        kind=kind,  # type: ignore[arg-type]
        chain_id=chain_id,
        payload=payload,
        payload_hash=hashlib.sha256(payload).digest(),
        digest=digest,
        decision=TREASURY_DECISION,
        state=custody_pb2.REQUEST_STATE_PENDING_APPROVAL,
        created_at="2030-03-17T17:46:40Z",
        updated_at="2030-03-17T17:46:40Z",
        expires_at="2030-03-18T17:46:40Z",
        quorum_progress="1 of 2 from treasury",
        approvals=[
            custody_pb2.ApprovalRecord(approver="carol", verdict="approve", created_at="2030-03-17T17:50:00Z")
        ],
    )


def transaction_request(transaction: dict[str, object] = TRANSACTION) -> custody_pb2.SigningRequest:
    payload = json.dumps(transaction).encode()
    # eth-account's own signing hash, not custody's parser, says what the digest must be.
    digest = bytes(TypedTransaction.from_dict(transaction).hash())
    return pending_request(
        custody_pb2.PAYLOAD_KIND_TRANSACTION,
        payload,
        digest,
        chain_id=int(transaction["chainId"]),  # type: ignore[call-overload]
    )


def policy_change_request(document: str) -> custody_pb2.SigningRequest:
    payload = document.encode()
    request = pending_request(
        custody_pb2.PAYLOAD_KIND_POLICY_CHANGE, payload, hashlib.sha256(payload).digest()
    )
    request.key_label = ""
    request.key_id = ""
    request.address = ""
    return request


def signer_from(environment: DevEnvironment, name: str) -> ApproverSigner:
    passphrase = (environment.directory / "secrets" / f"{name}.passphrase").read_bytes()
    return Pkcs8FileSigner(environment.approver_keys[name], passphrase)


def approve_with_input(
    request: custody_pb2.SigningRequest,
    answer: str,
    signer_factory: Callable[[], ApproverSigner],
    *,
    verdict: Verdict = Verdict.APPROVE,
) -> tuple[SignedVerdict | Exception, str]:
    """Run the approval as an approver at a terminal who types ``answer``; return the outcome and the screen."""
    runner = CliRunner()
    with runner.isolation(input=answer) as streams:
        stdout = streams[0]
        try:
            outcome: SignedVerdict | Exception = review_and_sign(
                request,
                verdict=verdict,
                approver="alice",
                signer_factory=signer_factory,
                assume_yes=False,
                interactive=True,
                expires_in=600,
                now=lambda: NOW,
            )
        except (NotConfirmed, ServerDisagrees, FailedPrecondition) as error:
            outcome = error
        screen = stdout.getvalue().decode()
    return outcome, screen


def never_called() -> ApproverSigner:
    raise AssertionError("the approver key must not be opened")


# -- recomputing the digest ---------------------------------------------------------------------------------


def test_the_digest_is_recomputed_from_the_payload_and_matches_eth_account() -> None:
    request = transaction_request()
    recomputed = recompute_hashes(request)
    assert recomputed.digest == bytes(TypedTransaction.from_dict(TRANSACTION).hash())
    assert recomputed.payload_hash == hashlib.sha256(request.payload).digest()
    assert recomputed.chain_id == 11155111
    check_server_hashes(request, recomputed)


def test_typed_data_and_messages_are_recomputed_like_eth_account() -> None:
    vector = json.loads((Path(__file__).parents[2] / "vectors" / "eip712_mail.json").read_text())
    typed_data = vector["typed_data"]
    # The digest the EIP-712 text publishes for its Mail example.
    expected = bytes.fromhex(vector["digest"].removeprefix("0x"))
    request = pending_request(
        custody_pb2.PAYLOAD_KIND_TYPED_DATA, json.dumps(typed_data).encode(), expected, chain_id=1
    )
    assert recompute_hashes(request).digest == expected
    check_server_hashes(request, recompute_hashes(request))

    message = encode_defunct(text="hello")
    message_digest = keccak(b"\x19" + message.version + message.header + message.body)
    message_request = pending_request(custody_pb2.PAYLOAD_KIND_MESSAGE, b"hello", message_digest)
    recomputed = recompute_hashes(message_request)
    assert recomputed.digest == message_digest and recomputed.chain_id is None
    check_server_hashes(message_request, recomputed)


def test_governance_requests_bind_the_sha256_of_their_payload() -> None:
    request = policy_change_request("version = 3\n")
    recomputed = recompute_hashes(request)
    assert recomputed.digest == recomputed.payload_hash == hashlib.sha256(b"version = 3\n").digest()
    assert recomputed.parsed is None and recomputed.chain_id is None
    check_server_hashes(request, recomputed)


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        # The digest of another transaction (nonce 5): the daemon would have alice approve something else.
        ("digest", bytes(TypedTransaction.from_dict({**TRANSACTION, "nonce": 5}).hash()), "digest"),
        ("payload_hash", hashlib.sha256(b"something else").digest(), "payload hash"),
        ("chain_id", 1, "chain id"),
    ],
)
def test_a_daemon_whose_digest_does_not_match_the_payload_is_refused(
    field: str, value: object, named: str
) -> None:
    request = transaction_request()
    setattr(request, field, value)
    with pytest.raises(
        ServerDisagrees, match=f"request req_7 has {named} .* but its payload gives"
    ) as raised:
        check_server_hashes(request, recompute_hashes(request))
    assert "custody signed nothing" in raised.value.message


def test_a_mismatching_daemon_gets_nothing_signed_and_no_question(environment: DevEnvironment) -> None:
    request = transaction_request()
    request.digest = bytes(32)
    outcome, screen = approve_with_input(request, "y\n", never_called)
    assert isinstance(outcome, ServerDisagrees)
    assert screen == ""


# -- the proto -> domain converter ----------------------------------------------------------------------------


def test_the_domain_request_carries_the_recomputed_values_and_the_daemon_ids() -> None:
    request = transaction_request()
    recomputed = recompute_hashes(request)
    converted = domain_request(request, recomputed)
    assert converted.request_id == "req_7"
    assert converted.kind is PayloadKind.TRANSACTION
    assert converted.state is RequestState.PENDING_APPROVAL
    assert converted.key_id == "0a0b0c" and converted.key_label == "treasury"
    assert converted.chain_id == 11155111
    assert converted.digest == recomputed.digest
    assert converted.payload_hash == recomputed.payload_hash
    assert converted.decision.policy_version == 2
    assert converted.decision.describe_quorum() == "2 of treasury"
    assert converted.expires_at is not None and converted.expires_at.year == 2030


def test_a_message_without_chain_id_converts_to_none() -> None:
    message = encode_defunct(text="gm")
    digest = keccak(b"\x19" + message.version + message.header + message.body)
    request = pending_request(custody_pb2.PAYLOAD_KIND_MESSAGE, b"gm", digest)
    assert domain_request(request, recompute_hashes(request)).chain_id is None


# -- confirmation and signing ----------------------------------------------------------------------------------


def test_answering_no_signs_nothing(environment: DevEnvironment) -> None:
    outcome, screen = approve_with_input(transaction_request(), "n\n", never_called)
    assert isinstance(outcome, NotConfirmed)
    assert "nothing was signed" in outcome.message
    assert "Approve request req_7? [y/N]" in screen
    # The summary came before the question.
    assert screen.index("1500000000000000000 wei = 1.5 ether") < screen.index("Approve request req_7?")


def test_just_pressing_enter_signs_nothing(environment: DevEnvironment) -> None:
    outcome, _ = approve_with_input(transaction_request(), "\n", never_called)
    assert isinstance(outcome, NotConfirmed)


def test_without_a_terminal_and_without_yes_nothing_is_signed() -> None:
    with pytest.raises(NotConfirmed, match="standard input is not a terminal"):
        review_and_sign(
            transaction_request(),
            verdict=Verdict.APPROVE,
            approver="alice",
            signer_factory=never_called,
            assume_yes=False,
            interactive=False,
            expires_in=600,
        )


def test_answering_yes_signs_a_statement_that_verifies_with_the_policy_key(
    environment: DevEnvironment,
) -> None:
    request = transaction_request()
    outcome, _ = approve_with_input(request, "y\n", lambda: signer_from(environment, "alice"))
    assert isinstance(outcome, SignedVerdict)
    # Verified with the public key from the .pub file dev init wrote, by cryptography directly.
    public_key = bytes.fromhex((environment.directory / "approvers" / "alice.pub").read_text().strip())
    Ed25519PublicKey.from_public_bytes(public_key).verify(outcome.signature, outcome.statement)
    prefix = b"custody approval statement v1\n"
    assert outcome.statement.startswith(prefix)
    document = json.loads(outcome.statement[len(prefix) :])
    assert document == {
        "approver": "alice",
        "chain_id": 11155111,
        "decision": "approve",
        "digest": "0x" + TypedTransaction.from_dict(TRANSACTION).hash().hex(),
        "expires_at": NOW + 600,
        "key_id": "0a0b0c",
        "payload_hash": "0x" + hashlib.sha256(request.payload).hexdigest(),
        "policy_version": 2,
        "request_id": "req_7",
    }


def test_a_rejection_is_a_signed_reject_statement(environment: DevEnvironment) -> None:
    outcome, screen = approve_with_input(
        transaction_request(), "y\n", lambda: signer_from(environment, "bob"), verdict=Verdict.REJECT
    )
    assert isinstance(outcome, SignedVerdict)
    assert "Reject request req_7? [y/N]" in screen
    assert json.loads(outcome.statement.split(b"\n", 1)[1])["decision"] == "reject"
    public_key = bytes.fromhex((environment.directory / "approvers" / "bob.pub").read_text().strip())
    Ed25519PublicKey.from_public_bytes(public_key).verify(outcome.signature, outcome.statement)


def test_a_request_no_longer_pending_is_refused_before_the_question() -> None:
    request = transaction_request()
    request.state = custody_pb2.REQUEST_STATE_SIGNED
    outcome, screen = approve_with_input(request, "y\n", never_called)
    assert isinstance(outcome, FailedPrecondition)
    assert "is SIGNED, not waiting for approvals" in outcome.message
    assert screen == ""


# -- the approver key from the profile -------------------------------------------------------------------------


def test_the_profile_names_the_approver_and_its_key(environment: DevEnvironment) -> None:
    profile = load_profile(environment.profiles["carol"])
    assert profile_identity(profile) == "carol"
    signer = load_approver_signer(profile)
    expected = (environment.directory / "approvers" / "carol.pub").read_text().strip()
    assert signer.public_key().hex() == expected


def test_the_passphrase_comes_from_the_environment_when_the_profile_names_no_file(
    environment: DevEnvironment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile_path = tmp_path / "alice.toml"
    profile_path.write_text(
        f'server = "127.0.0.1:1"\nca_file = "{environment.ca_file}"\n'
        f'cert_file = "{environment.directory / "pki" / "alice.pem"}"\n'
        f'key_file = "{environment.directory / "pki" / "alice.key"}"\n'
        f'approver_key_file = "{environment.approver_keys["alice"]}"\n'
    )
    passphrase = (environment.directory / "secrets" / "alice.passphrase").read_text()
    monkeypatch.setenv("CUSTODY_APPROVER_PASSPHRASE", passphrase)
    signer = load_approver_signer(load_profile(profile_path))
    assert (
        signer.public_key().hex() == (environment.directory / "approvers" / "alice.pub").read_text().strip()
    )

    monkeypatch.setenv("CUSTODY_APPROVER_PASSPHRASE", "not-the-passphrase")
    with pytest.raises(PermissionDenied) as raised:
        load_approver_signer(load_profile(profile_path))
    assert "wrong passphrase" in raised.value.message
    assert "not-the-passphrase" not in raised.value.message


def test_a_profile_without_an_approver_key_says_what_to_add(environment: DevEnvironment) -> None:
    with pytest.raises(ConfigurationError, match="names no approver key; add approver_key_file"):
        load_approver_signer(load_profile(environment.profiles["backend"]))


def test_a_pkcs11_approver_profile_needs_token_and_key_labels(
    environment: DevEnvironment, tmp_path: Path
) -> None:
    profile_path = tmp_path / "token.toml"
    profile_path.write_text(
        f'server = "127.0.0.1:1"\nca_file = "{environment.ca_file}"\n'
        f'cert_file = "{environment.directory / "pki" / "dave.pem"}"\n'
        f'key_file = "{environment.directory / "pki" / "dave.key"}"\n'
        'approver_pkcs11_module = "/usr/lib/softhsm/libsofthsm2.so"\napprover_token_label = "dave"\n'
    )
    profile = load_profile(profile_path)
    assert profile.approver_pkcs11_module == "/usr/lib/softhsm/libsofthsm2.so"
    with pytest.raises(ConfigurationError, match="not both approver_token_label and approver_key_label"):
        load_approver_signer(profile)


def test_the_command_refuses_without_a_terminal_before_connecting_and_prints_no_secret(
    environment: DevEnvironment,
) -> None:
    # CliRunner's stdin is not a terminal, and --server names a port nobody listens on: the refusal must come
    # first, as one sentence on stderr, with exit code 1.
    arguments = ["--profile", str(environment.profiles["alice"]), "--server", "127.0.0.1:9", "approve", "r1"]
    with CliRunner().isolation(input="y\n") as streams:
        exit_code = run(arguments)
        output, errors = streams[0].getvalue().decode(), streams[1].getvalue().decode()
    assert exit_code == 1
    assert output == ""
    assert errors.startswith("error: standard input is not a terminal, so custody cannot ask you to confirm;")
    assert errors.count("\n") == 1
    passphrase = (environment.directory / "secrets" / "alice.passphrase").read_text()
    assert passphrase not in errors


def test_signing_with_the_profile_key_never_prints_the_passphrase(
    environment: DevEnvironment, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = load_profile(environment.profiles["alice"])
    outcome, screen = approve_with_input(transaction_request(), "y\n", lambda: load_approver_signer(profile))
    assert isinstance(outcome, SignedVerdict)
    passphrase = (environment.directory / "secrets" / "alice.passphrase").read_text()
    captured = capsys.readouterr()
    for text in (screen, captured.out, captured.err):
        assert passphrase not in text


# -- the summary ------------------------------------------------------------------------------------------------


def test_the_summary_shows_transaction_fields_digest_rule_quorum_and_approvals() -> None:
    request = transaction_request()
    text = review_text(request, recompute_hashes(request))
    for fragment in (
        f"key            treasury ({ADDRESS}",
        "chain id       11155111",
        f"to             {RECIPIENT}",
        "value          1500000000000000000 wei = 1.5 ether",
        "nonce          4",
        "max fee        30000000000 wei per gas",
        "priority fee   1000000000 wei per gas",
        "data           none",
        "[1] ether transfer",
        "0x" + TypedTransaction.from_dict(TRANSACTION).hash().hex(),
        "rule           treasury-transactions (policy version 2)",
        "quorum         2 of treasury",
        "progress       1 of 2 from treasury",
        "approve by carol at 2030-03-17T17:50:00Z",
    ):
        assert fragment in text


def test_the_summary_decodes_a_token_transfer_and_flags_an_unknown_function() -> None:
    transfer = bytes.fromhex("a9059cbb") + encode(["address", "uint256"], [RECIPIENT, 42])
    known = transaction_request(
        {**TRANSACTION, "to": TOKEN, "value": 0, "gas": 90000, "data": "0x" + transfer.hex()}
    )
    text = review_text(known, recompute_hashes(known))
    assert "call             transfer(address,uint256)" in text
    assert f"recipient        {RECIPIENT}" in text and "amount           42" in text
    assert "UNKNOWN SELECTOR" not in text

    unknown_data = bytes.fromhex("deadbeef") + bytes(32)
    unknown = transaction_request(
        {**TRANSACTION, "to": TOKEN, "gas": 90000, "data": "0x" + unknown_data.hex()}
    )
    text = review_text(unknown, recompute_hashes(unknown))
    assert "!!! UNKNOWN SELECTOR (intent 1)" in text
    assert "0x" + unknown_data.hex() in text


def test_the_summary_flags_an_unlimited_allowance() -> None:
    data = bytes.fromhex("095ea7b3") + encode(["address", "uint256"], [RECIPIENT, 2**256 - 1])
    request = transaction_request(
        {**TRANSACTION, "to": TOKEN, "value": 0, "gas": 90000, "data": "0x" + data.hex()}
    )
    assert "!!! UNLIMITED APPROVAL (intent 1)" in review_text(request, recompute_hashes(request))


def test_a_safe_transaction_by_delegatecall_is_flagged_loudly() -> None:
    inner = bytes.fromhex("a9059cbb") + encode(["address", "uint256"], [RECIPIENT, 9])
    safe_tx = {
        "types": json.loads((Path(__file__).parents[2] / "vectors" / "safe_tx_types.json").read_text())[
            "types"
        ],
        "primaryType": "SafeTx",
        "domain": {"chainId": 1, "verifyingContract": ADDRESS},
        "message": {
            "to": TOKEN,
            "value": "0",
            "data": "0x" + inner.hex(),
            "operation": 1,
            "safeTxGas": "0",
            "baseGas": "0",
            "gasPrice": "0",
            "gasToken": "0x" + "00" * 20,
            "refundReceiver": "0x" + "00" * 20,
            "nonce": "12",
        },
    }
    signable = encode_typed_data(full_message=safe_tx)
    digest = keccak(b"\x19" + signable.version + signable.header + signable.body)
    request = pending_request(
        custody_pb2.PAYLOAD_KIND_TYPED_DATA, json.dumps(safe_tx).encode(), digest, chain_id=1
    )
    text = review_text(request, recompute_hashes(request))
    assert "[1] Safe transaction  !!! DELEGATECALL !!!" in text
    assert "!!! DELEGATECALL (intent 1" in text
    assert f"verifyingContract = {ADDRESS}" in text
    assert "transfer(address,uint256)" in text and "amount           9" in text


def test_a_policy_change_shows_the_document_and_its_diff() -> None:
    active = 'version = 1\n[admin]\nquorum = "2 of admins"\n'
    proposed = 'version = 1\n[admin]\nquorum = "1 of admins"\n'
    request = policy_change_request(proposed)
    text = review_text(request, recompute_hashes(request), active_policy=active)
    assert '    | quorum = "1 of admins"' in text
    assert '    -quorum = "2 of admins"' in text
    assert '    +quorum = "1 of admins"' in text
    assert "SHA-256 of the payload" in text
    without = review_text(request, recompute_hashes(request), active_policy=None)
    assert "the active policy could not be fetched" in without


def test_control_characters_in_a_message_are_escaped() -> None:
    # ESC [2J clears a terminal; U+202E reverses the text that follows. Neither may reach the screen raw.
    text_message = "pay 1 ETH\x1b[2J\u202eHTE 0001 yap"
    payload = text_message.encode()
    message = encode_defunct(primitive=payload)
    digest = keccak(b"\x19" + message.version + message.header + message.body)
    request = pending_request(custody_pb2.PAYLOAD_KIND_MESSAGE, payload, digest)
    text = review_text(request, recompute_hashes(request))
    assert "\x1b" not in text and "\u202e" not in text
    assert "pay 1 ETH\\x1b[2J\\u202eHTE 0001 yap" in text
