"""The framework's ceiling for the signing benchmark: a bare mTLS grpcio server from custody's own proto.

    .venv/bin/python bench/bare_server.py ENV_DIR --mode sign|noop [--workers 16]

ENV_DIR is a `custody dev init` directory: the server uses its TLS files, its SoftHSM2 token and PIN. It
serves SigningService.SubmitRequest only. In mode `sign` each call hashes the payload and signs the hash in
the HSM with a secp256k1 key made at start (one call into the PKCS#11 library at a time, as custody must),
then answers SIGNED with the signature: what any Python gRPC signer must do at the least, so custody's rate
divided by this one is the share of the framework's limit custody reaches. In mode `noop` it answers without
signing: the cost of gRPC and TLS alone. It prints `listening on HOST:PORT` once it serves, and stops on
SIGTERM. Run by bench/signing_rate.py; not part of `make test`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import signal
import sys
import threading
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from custody.api._gen import custody_pb2 as pb
from custody.api._gen import custody_pb2_grpc as pb_grpc


class BareSigner(pb_grpc.SigningServiceServicer):
    def __init__(self, sign: Any) -> None:
        self._sign = sign
        self._lock = threading.Lock()

    def SubmitRequest(self, request: pb.SubmitRequestRequest, context: grpc.ServicerContext) -> Any:
        digest = hashlib.sha256(request.payload).digest()
        signature = b""
        if self._sign is not None:
            # SoftHSM2 initialised by python-pkcs11 has its own locks off: one call at a time per process.
            with self._lock:
                signature = self._sign(digest)
        return pb.SubmitRequestResponse(
            request=pb.SigningRequest(
                key_label=request.key_label,
                state=pb.REQUEST_STATE_SIGNED,
                digest=digest,
                signature=signature,
            )
        )


def open_signer(env_dir: Path) -> Any:
    """A function signing 32-byte digests with a fresh secp256k1 key in the environment's token."""
    import pkcs11
    from pkcs11 import Attribute, KeyType, Mechanism
    from pkcs11.util.ec import encode_named_curve_parameters

    server_toml = (env_dir / "server.toml").read_text()
    module = re.search(r'^module\s*=\s*"([^"]+)"', server_toml, re.M).group(1)  # type: ignore[union-attr]
    label = re.search(r'^token_label\s*=\s*"([^"]+)"', server_toml, re.M).group(1)  # type: ignore[union-attr]
    os.environ["SOFTHSM2_CONF"] = str(env_dir / "softhsm" / "softhsm2.conf")
    token = pkcs11.lib(module).get_token(token_label=label)
    session = token.open(user_pin=(env_dir / "secrets" / "hsm.pin").read_text().strip(), rw=True)
    params = session.create_domain_parameters(
        KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("1.3.132.0.10")}, local=True
    )
    _public, private = params.generate_keypair(store=False)

    def sign(digest: bytes) -> bytes:
        return private.sign(digest, mechanism=Mechanism.ECDSA)  # type: ignore[no-any-return]

    return sign


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("env_dir", type=Path)
    parser.add_argument("--mode", choices=("sign", "noop"), default="sign")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--listen", default="127.0.0.1:0")
    args = parser.parse_args()
    pki = args.env_dir / "pki"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers))
    pb_grpc.add_SigningServiceServicer_to_server(
        BareSigner(open_signer(args.env_dir) if args.mode == "sign" else None), server
    )
    credentials = grpc.ssl_server_credentials(
        [((pki / "server.key").read_bytes(), (pki / "server.pem").read_bytes())],
        root_certificates=(pki / "ca.pem").read_bytes(),
        require_client_auth=True,
    )
    port = server.add_secure_port(args.listen, credentials)
    server.start()
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    print(f"listening on {args.listen.rsplit(':', 1)[0]}:{port}", flush=True)
    stopped.wait()
    server.stop(1).wait()
    sys.exit(0)


if __name__ == "__main__":
    main()
