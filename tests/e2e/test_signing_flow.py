"""The signing core end to end: real daemon, real SoftHSM2 token, real SQLite, mTLS, the CLI and a gRPC client.

Every signature is checked by an independent path: eth-account recovers the signer from the signed bytes, and
the result must be the key's address, which is itself recomputed here from the public key.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data
from eth_keys import keys as eth_keys
from eth_utils import keccak, to_checksum_address
from grpc_health.v1 import health_pb2, health_pb2_grpc

from custody.api._gen import custody_pb2 as pb
from custody.api._gen import custody_pb2_grpc as pb_grpc
from custody.tls.certificates import create_ca, issue_client_certificate

from .conftest import Daemon, DevEnv, Nonces, channel_for, cli_json, run_cli, start_daemon, stop_daemon

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
ONE_ETHER = 10**18
RECIPIENT = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"

# The EIP-712 "Mail" example with the digest the EIP publishes; the vector file names its source.
MAIL_VECTOR = json.loads((Path(__file__).parents[1] / "vectors" / "eip712_mail.json").read_text())
MAIL_TYPED_DATA = MAIL_VECTOR["typed_data"]


def eip1559_tx(nonce: int, value: int = ONE_ETHER // 100, chain_id: int = 11155111) -> dict[str, object]:
    return {
        "type": 2,
        "chainId": chain_id,
        "nonce": nonce,
        "to": RECIPIENT,
        "value": value,
        "gas": 21000,
        "maxFeePerGas": 30_000_000_000,
        "maxPriorityFeePerGas": 1_000_000_000,
        "data": "0x",
    }


def legacy_tx(nonce: int) -> dict[str, object]:
    return {
        "chainId": 1,
        "nonce": nonce,
        "to": RECIPIENT,
        "value": 12345,
        "gas": 21000,
        "gasPrice": 20 * 10**9,
    }


def address_from_public_key(public_key_hex: str) -> str:
    """Independent of custody's code: keccak of the 64-byte point, last 20 bytes, EIP-55 by eth-utils."""
    point = bytes.fromhex(public_key_hex.removeprefix("0x"))
    assert len(point) == 65 and point[0] == 4
    return to_checksum_address(keccak(point[1:])[-20:])


def assert_low_s(signature: bytes) -> None:
    s = int.from_bytes(signature[32:64], "big")
    assert 0 < s <= SECP256K1_N // 2


def assert_signed_transaction(answer: dict[str, object], expected_address: str) -> None:
    assert answer["state"] == "SIGNED", answer
    signed_tx = bytes.fromhex(str(answer["signed_tx"]).removeprefix("0x"))
    assert Account.recover_transaction(signed_tx) == expected_address
    assert "0x" + keccak(signed_tx).hex() == answer["tx_hash"]
    assert_low_s(bytes.fromhex(str(answer["signature"]).removeprefix("0x")))


def write_json(directory: Path, name: str, content: object) -> Path:
    path = directory / name
    path.write_text(json.dumps(content))
    return path


def test_created_keys_carry_the_address_of_their_public_key(dev_env: DevEnv, daemon: Daemon, keys) -> None:
    for label, key in keys.items():
        assert key["label"] == label
        assert key["state"] == "ACTIVE"
        assert key["address"] == address_from_public_key(key["public_key"])
    listed = cli_json(dev_env, daemon, "backend", "keys", "list")
    assert {key["label"] for key in listed} == {"ops", "treasury"}
    shown = cli_json(dev_env, daemon, "alice", "keys", "show", "ops")
    assert shown == keys["ops"]


def test_a_second_key_with_the_same_label_is_refused(dev_env: DevEnv, daemon: Daemon, keys) -> None:
    result = run_cli(dev_env, daemon, "admin", "keys", "create", "--label", "ops", check=False)
    assert result.returncode != 0
    assert "already exists" in result.stderr


def test_only_admins_create_keys(dev_env: DevEnv, daemon: Daemon) -> None:
    with channel_for(dev_env, daemon, "backend") as channel, pytest.raises(grpc.RpcError) as refused:
        pb_grpc.KeyServiceStub(channel).CreateKey(pb.CreateKeyRequest(label="sneaky"))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_cli_signs_an_eip1559_transaction(
    dev_env: DevEnv, daemon: Daemon, keys, tmp_path: Path, nonces: Nonces
) -> None:
    tx_file = write_json(tmp_path, "tx.json", eip1559_tx(nonce=next(nonces)))
    answer = cli_json(dev_env, daemon, "backend", "sign", "tx", "--key", "ops", "--file", str(tx_file))
    assert_signed_transaction(answer, keys["ops"]["address"])
    shown = cli_json(dev_env, daemon, "backend", "requests", "show", answer["request_id"])
    assert shown["signed_tx"] == answer["signed_tx"]
    assert shown["state"] == "SIGNED"


def test_grpc_signs_a_legacy_transaction(signing_stub, keys, nonces: Nonces) -> None:
    response = signing_stub.SubmitRequest(
        pb.SubmitRequestRequest(
            key_label="ops",
            kind=pb.PAYLOAD_KIND_TRANSACTION,
            payload=json.dumps(legacy_tx(next(nonces))).encode(),
        )
    )
    request = response.request
    assert request.state == pb.REQUEST_STATE_SIGNED
    assert Account.recover_transaction(request.signed_tx) == keys["ops"]["address"]
    # EIP-155: v = chain_id * 2 + 35 + parity, visible in the decoded transaction.
    assert request.signed_tx[0] >= 0xC0  # a legacy RLP list, not a typed envelope
    assert_low_s(request.signature)


def test_cli_signs_typed_data_and_messages(dev_env: DevEnv, daemon: Daemon, keys, tmp_path: Path) -> None:
    data_file = write_json(tmp_path, "mail.json", MAIL_TYPED_DATA)
    answer = cli_json(
        dev_env, daemon, "backend", "sign", "typed-data", "--key", "ops", "--file", str(data_file)
    )
    assert answer["state"] == "SIGNED"
    signature = bytes.fromhex(answer["signature"].removeprefix("0x"))
    assert len(signature) == 65 and signature[64] in (27, 28)
    assert_low_s(signature)
    signable = encode_typed_data(full_message=MAIL_TYPED_DATA)
    assert Account.recover_message(signable, signature=signature) == keys["ops"]["address"]
    assert answer["digest"] == MAIL_VECTOR["digest"]

    text = "I approve governance proposal 42."
    answer = cli_json(dev_env, daemon, "backend", "sign", "message", "--key", "ops", "--text", text)
    signature = bytes.fromhex(answer["signature"].removeprefix("0x"))
    assert Account.recover_message(encode_defunct(text=text), signature=signature) == keys["ops"]["address"]


def test_a_denial_through_the_cli_exits_3_with_the_reason(
    dev_env: DevEnv, daemon: Daemon, keys, tmp_path: Path, nonces: Nonces
) -> None:
    """What the policy denies is tested in tests/app/test_policy_decisions.py; here, what a user sees."""
    tx_file = write_json(tmp_path, "tx.json", eip1559_tx(nonce=next(nonces), value=2 * ONE_ETHER))
    result = run_cli(
        dev_env,
        daemon,
        "backend",
        "--json",
        "sign",
        "tx",
        "--key",
        "ops",
        "--file",
        str(tx_file),
        check=False,
    )
    answer = json.loads(result.stdout)
    assert answer["state"] == "DENIED"
    assert "deny by default" in answer["decision"]["reason"]
    assert not answer.get("signature") and not answer.get("signed_tx")
    assert result.returncode == 3


def test_bad_input_is_refused_and_nothing_is_stored(signing_stub, keys, nonces: Nonces) -> None:
    before = len(signing_stub.ListRequests(pb.ListRequestsRequest(limit=1000)).requests)
    bad = {
        **eip1559_tx(nonce=next(nonces)),
        "to": "0x5aaeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    }  # broken EIP-55 checksum
    with pytest.raises(grpc.RpcError) as refused:
        signing_stub.SubmitRequest(
            pb.SubmitRequestRequest(
                key_label="ops", kind=pb.PAYLOAD_KIND_TRANSACTION, payload=json.dumps(bad).encode()
            )
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "to" in refused.value.details()
    with pytest.raises(grpc.RpcError) as refused:
        signing_stub.SubmitRequest(
            pb.SubmitRequestRequest(key_label="ops", kind=pb.PAYLOAD_KIND_TRANSACTION, payload=b"{not json")
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as refused:
        signing_stub.SubmitRequest(
            pb.SubmitRequestRequest(key_label="nope", kind=pb.PAYLOAD_KIND_MESSAGE, payload=b"hi")
        )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED  # not granted, so not even looked up
    after = len(signing_stub.ListRequests(pb.ListRequestsRequest(limit=1000)).requests)
    assert after == before


def test_a_requester_signs_only_with_granted_keys(
    dev_env: DevEnv, daemon: Daemon, keys, nonces: Nonces
) -> None:
    payload = json.dumps(eip1559_tx(nonce=next(nonces))).encode()
    for identity in ("carol", "admin", "alice"):
        with channel_for(dev_env, daemon, identity) as channel:
            with pytest.raises(grpc.RpcError) as refused:
                pb_grpc.SigningServiceStub(channel).SubmitRequest(
                    pb.SubmitRequestRequest(
                        key_label="ops", kind=pb.PAYLOAD_KIND_TRANSACTION, payload=payload
                    )
                )
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED, identity


def test_clients_without_a_valid_certificate_are_refused(dev_env: DevEnv, daemon: Daemon) -> None:
    with channel_for(dev_env, daemon, None) as channel, pytest.raises(grpc.RpcError) as refused:
        pb_grpc.KeyServiceStub(channel).ListKeys(pb.ListKeysRequest(), timeout=10)
    assert refused.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED)

    other_ca = create_ca("another CA")
    stranger = issue_client_certificate(other_ca, "backend")
    with channel_for(dev_env, daemon, None, cert=stranger.cert_pem, key=stranger.key_pem) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            pb_grpc.KeyServiceStub(channel).ListKeys(pb.ListKeysRequest(), timeout=10)
    assert refused.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED)


def test_a_certificate_identity_not_configured_is_unauthenticated(dev_env: DevEnv, daemon: Daemon) -> None:
    ca_key = dev_env.pki("ca.key")
    from custody.tls.certificates import IssuedCertificate

    ca = IssuedCertificate(cert_pem=dev_env.pki("ca.pem"), key_pem=ca_key)
    mallory = issue_client_certificate(ca, "mallory")
    with channel_for(dev_env, daemon, None, cert=mallory.cert_pem, key=mallory.key_pem) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            pb_grpc.KeyServiceStub(channel).ListKeys(pb.ListKeysRequest(), timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "mallory" in refused.value.details()


def test_64_concurrent_submissions_are_all_signed(
    dev_env: DevEnv, daemon: Daemon, keys, nonces: Nonces
) -> None:
    with channel_for(dev_env, daemon, "backend") as channel:
        stub = pb_grpc.SigningServiceStub(channel)

        def submit(nonce: int) -> pb.SigningRequest:
            payload = json.dumps(eip1559_tx(nonce=nonce)).encode()
            return stub.SubmitRequest(
                pb.SubmitRequestRequest(key_label="ops", kind=pb.PAYLOAD_KIND_TRANSACTION, payload=payload),
                timeout=120,
            ).request

        with ThreadPoolExecutor(max_workers=64) as pool:
            answers = list(pool.map(submit, nonces.reserve(64)))
        assert len({answer.request_id for answer in answers}) == 64
        for answer in answers:
            assert answer.state == pb.REQUEST_STATE_SIGNED
            assert Account.recover_transaction(answer.signed_tx) == keys["ops"]["address"]
            assert_low_s(answer.signature)
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
        assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_watch_ends_at_a_final_state(signing_stub, keys) -> None:
    submitted = signing_stub.SubmitRequest(
        pb.SubmitRequestRequest(key_label="ops", kind=pb.PAYLOAD_KIND_MESSAGE, payload=b"watch me")
    ).request
    updates = list(
        signing_stub.WatchRequest(pb.WatchRequestRequest(request_id=submitted.request_id), timeout=30)
    )
    assert [update.state for update in updates] == [pb.REQUEST_STATE_SIGNED]
    signature = updates[0].signature
    assert Account.recover_message(encode_defunct(b"watch me"), signature=signature) == keys["ops"]["address"]


def test_unknown_request_is_not_found_and_signed_cannot_be_cancelled(signing_stub, keys) -> None:
    with pytest.raises(grpc.RpcError) as missing:
        signing_stub.GetRequest(pb.GetRequestRequest(request_id="req_" + "0" * 32))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    signed = signing_stub.SubmitRequest(
        pb.SubmitRequestRequest(key_label="ops", kind=pb.PAYLOAD_KIND_MESSAGE, payload=b"final")
    ).request
    with pytest.raises(grpc.RpcError) as refused:
        signing_stub.CancelRequest(pb.CancelRequestRequest(request_id=signed.request_id))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_reflection_lists_the_contract_services(dev_env: DevEnv, daemon: Daemon) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with channel_for(dev_env, daemon, "admin") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = {
            service.name for response in responses for service in response.list_services_response.service
        }
    assert {
        "custody.v1.KeyService",
        "custody.v1.SigningService",
        "custody.v1.ApprovalService",
        "custody.v1.PolicyService",
        "custody.v1.AuditService",
        "grpc.health.v1.Health",
    } <= names


def test_sigterm_lets_the_daemon_exit_cleanly(dev_env: DevEnv, keys, tmp_path: Path) -> None:
    second = start_daemon(dev_env, tmp_path / "second.log")
    try:
        with channel_for(dev_env, second, "backend") as channel:
            answer = (
                pb_grpc.SigningServiceStub(channel)
                .SubmitRequest(
                    pb.SubmitRequestRequest(
                        key_label="ops", kind=pb.PAYLOAD_KIND_MESSAGE, payload=b"before stop"
                    )
                )
                .request
            )
        assert answer.state == pb.REQUEST_STATE_SIGNED
    finally:
        code = stop_daemon(second)
    assert code == 0, second.log()
    assert "custody stopped" in second.log()


def test_no_pin_in_the_daemon_log(dev_env: DevEnv, daemon: Daemon, keys) -> None:
    pin = (dev_env.directory / "secrets" / "hsm.pin").read_text().strip()
    assert pin and pin not in daemon.log()


def test_public_key_matches_hsm_signature_recovery(keys) -> None:
    """The public key custody reports is the one eth-keys recovers from a signature it made."""
    public = eth_keys.PublicKey(bytes.fromhex(keys["ops"]["public_key"].removeprefix("0x"))[1:])
    assert public.to_checksum_address() == keys["ops"]["address"]


def test_oversized_payloads_are_refused_before_anything_is_stored(signing_stub, keys) -> None:
    before = len(signing_stub.ListRequests(pb.ListRequestsRequest(limit=1000)).requests)
    with pytest.raises(grpc.RpcError) as refused:
        signing_stub.SubmitRequest(
            pb.SubmitRequestRequest(
                key_label="ops", kind=pb.PAYLOAD_KIND_MESSAGE, payload=b"x" * (128 * 1024 + 1)
            )
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "payload" in refused.value.details()
    # Past the transport's message limit the call never reaches custody's code.
    with pytest.raises(grpc.RpcError) as refused:
        signing_stub.SubmitRequest(
            pb.SubmitRequestRequest(
                key_label="ops", kind=pb.PAYLOAD_KIND_MESSAGE, payload=b"x" * (1024 * 1024)
            )
        )
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert len(signing_stub.ListRequests(pb.ListRequestsRequest(limit=1000)).requests) == before
