"""A real local Ethereum chain for the tool tests: an anvil node (the binary the `@foundry-rs/anvil` npm package
ships, installed in tests/tools by `make test`), contracts deployed on it from compiled artifacts that npm
packages ship (Safe's singleton, proxy factory and test ERC-20 from `@safe-global/safe-contracts`), and the
node scripts in tests/tools that drive ethers and viem.

Everything here talks to anvil with plain JSON-RPC and builds calldata with eth_abi (tests/evm_payloads.py),
so what the tests check on chain does not depend on the client libraries under test.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import shutil
import ssl
import subprocess
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import rlp
from eth_abi.abi import decode
from eth_account import Account
from eth_account.messages import SignableMessage
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address

from tests.daemons import wait_for
from tests.evm_payloads import EXAMPLE_SAFE, ZERO_ADDRESS, erc20_transfer, function_call

from .conftest import Daemon, Databases, DevEnv
from .incident_support import Custody, running_custody
from .jsonrpc_support import backend_token, jsonrpc_url

TOOLS_DIR = Path(__file__).resolve().parents[1] / "tools"
NODE_MODULES = TOOLS_DIR / "node_modules"
SAFE_ARTIFACTS = NODE_MODULES / "@safe-global" / "safe-contracts" / "build" / "artifacts" / "contracts"
# Sepolia's chain id: the development policy signs on chain ids 1 and 11155111, so a node started with this
# one is judged by the policy `custody dev init` writes, unchanged.
CHAIN_ID = 11155111
ONE_ETHER = 10**18
START_TIMEOUT_SECONDS = 30
# The platform suffixes of Foundry's binary packages, by (platform.system(), platform.machine()).
_NPM_PLATFORMS = {
    ("Linux", "x86_64"): "linux-amd64",
    ("Linux", "aarch64"): "linux-arm64",
    ("Darwin", "x86_64"): "darwin-amd64",
    ("Darwin", "arm64"): "darwin-arm64",
}


# --- Finding the tools ---------------------------------------------------------------------------------------
def foundry_binary(tool: str) -> Path:
    """Where npm put the platform binary of a Foundry tool (anvil, cast): the `@foundry-rs/TOOL` package ships
    it in an optional dependency named for the platform, `@foundry-rs/TOOL-linux-amd64` here."""
    suffix = _NPM_PLATFORMS.get((platform.system(), platform.machine()), "unsupported")
    return NODE_MODULES / "@foundry-rs" / f"{tool}-{suffix}" / "bin" / tool


def missing_tool() -> str | None:
    """One sentence naming the first tool the tool tests need that is not installed, or None."""
    if shutil.which("node") is None:
        return "Node.js is not installed (`make test` installs it with the system packages)."
    if (platform.system(), platform.machine()) not in _NPM_PLATFORMS:
        return f"Foundry's npm packages ship no anvil for {platform.system()} on {platform.machine()}."
    for tool in ("anvil", "cast"):
        if not os.access(foundry_binary(tool), os.X_OK):
            return f"{tool} is not installed in tests/tools/node_modules (`make tools` installs it)."
    for package in ("ethers", "viem"):
        if not (NODE_MODULES / package / "package.json").is_file():
            return f"the npm package {package} is not installed in tests/tools (`make tools` installs it)."
    if not SAFE_ARTIFACTS.is_dir():
        return "Safe's compiled contracts are not installed in tests/tools (`make tools` installs them)."
    return None


def require_tools() -> None:
    """Skip the calling test module when a tool is missing, saying which, except in CI (CI=true), whose run
    installs every tool with `make test`: there a missing tool is a failure, so nothing is skipped silently."""
    missing = missing_tool()
    if missing is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI must run the tool tests, but {missing}", pytrace=False)
    pytest.skip(missing, allow_module_level=True)


# --- The node ----------------------------------------------------------------------------------------------
class RpcError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"JSON-RPC error {error.get('code')}: {error.get('message')}")
        self.error = error


def json_rpc(
    url: str, method: str, params: Sequence[Any] = (), headers: dict[str, str] | None = None, **options: Any
) -> Any:
    """One JSON-RPC 2.0 call over HTTP(S); the result, or RpcError carrying the error object."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode()
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json", **(headers or {})}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=60, **options) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as refused:
        answer = json.loads(refused.read())
    if "error" in answer:
        raise RpcError(answer["error"])
    return answer["result"]


@dataclass
class Chain:
    """A running anvil node. ``deployer`` is anvil's first development account, which the node keeps unlocked:
    it deploys the contracts and pays for what the tests set up."""

    process: subprocess.Popen[str]
    url: str
    log_path: Path
    deployer: str
    contracts: dict[str, str] = field(default_factory=dict)  # name -> address

    def rpc(self, method: str, *params: Any) -> Any:
        return json_rpc(self.url, method, params)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def set_balance(self, address: str, wei: int) -> None:
        self.rpc("anvil_setBalance", address, hex(wei))

    def balance(self, address: str) -> int:
        return int(self.rpc("eth_getBalance", address, "latest"), 16)

    def nonce(self, address: str) -> int:
        return int(self.rpc("eth_getTransactionCount", address, "latest"), 16)

    def call(self, to: str, data: bytes, result_types: Sequence[str]) -> tuple[Any, ...]:
        answer = self.rpc("eth_call", {"to": to, "data": "0x" + data.hex()}, "latest")
        return tuple(decode(list(result_types), bytes.fromhex(answer[2:])))

    def receipt(self, tx_hash: str) -> dict[str, Any]:
        """The receipt of a transaction, once mined: anvil mines each transaction as it arrives, but answers
        eth_sendTransaction before the block is sealed."""
        receipts: list[dict[str, Any]] = []

        def mined() -> bool:
            receipt = self.rpc("eth_getTransactionReceipt", tx_hash)
            if receipt is not None:
                receipts.append(receipt)
            return bool(receipts)

        wait_for(mined, f"transaction {tx_hash} to be mined", timeout=20)
        return receipts[0]

    def transact(self, to: str | None, data: bytes, value: int = 0) -> dict[str, Any]:
        """Send a transaction from the deployer and return its receipt, which must show success."""
        fields: dict[str, Any] = {"from": self.deployer, "data": "0x" + data.hex(), "value": hex(value)}
        if to is not None:
            fields["to"] = to
        receipt = self.receipt(self.rpc("eth_sendTransaction", fields))
        assert receipt["status"] == "0x1", receipt
        return receipt

    def deploy(self, artifact: str) -> str:
        """Deploy the compiled contract ``artifact`` (a path under Safe's build artifacts, a contract whose
        constructor takes no arguments) from the deployer."""
        receipt = self.transact(None, bytes.fromhex(safe_artifact(artifact)["bytecode"][2:]))
        return to_checksum_address(receipt["contractAddress"])

    def token_balance(self, token: str, holder: str) -> int:
        (balance,) = self.call(token, function_call("balanceOf(address)", [holder]), ["uint256"])
        return int(balance)


def safe_artifact(path: str) -> dict[str, Any]:
    """A Hardhat artifact of `@safe-global/safe-contracts` (abi, bytecode), e.g. "Safe.sol/Safe"."""
    loaded: dict[str, Any] = json.loads((SAFE_ARTIFACTS / f"{path}.json").read_text())
    return loaded


@contextmanager
def running_anvil(log_directory: Path, chain_id: int = CHAIN_ID) -> Iterator[Chain]:
    """anvil on a free loopback port (it names the port it took), stopped again afterwards."""
    log_path = log_directory / "anvil.log"
    config_out = Path(tempfile.mkdtemp(prefix="custody-anvil-")) / "anvil.json"
    command = [str(foundry_binary("anvil")), "--host", "127.0.0.1", "--port", "0"]
    command += ["--chain-id", str(chain_id), "--accounts", "2", "--config-out", str(config_out)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = _wait_for_listening(process, log_path)
        deployer = to_checksum_address(json.loads(config_out.read_text())["available_accounts"][0])
        chain = Chain(process=process, url=url, log_path=log_path, deployer=deployer)
        assert int(chain.rpc("eth_chainId"), 16) == chain_id
        yield chain
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(config_out.parent, ignore_errors=True)


def _wait_for_listening(process: subprocess.Popen[str], log_path: Path) -> str:
    """Copy anvil's output to its log (a thread keeps reading it, so anvil never blocks on a full pipe) and
    return http://127.0.0.1:PORT once anvil printed "Listening on 127.0.0.1:PORT"."""
    found = threading.Event()
    address: list[str] = []
    assert process.stdout is not None
    stdout = process.stdout

    def copy() -> None:
        with log_path.open("a") as log:
            for line in stdout:
                log.write(line)
                log.flush()
                if not found.is_set() and line.startswith("Listening on "):
                    address.append(line.removeprefix("Listening on ").strip())
                    found.set()
        found.set()

    threading.Thread(target=copy, daemon=True).start()
    found.wait(START_TIMEOUT_SECONDS)
    if not address:
        raise AssertionError(f"anvil did not start listening: {log_path.read_text(errors='replace')}")
    return f"http://{address[0]}"


# --- Contracts ---------------------------------------------------------------------------------------------
ERC20_SUPPLY = 10**15  # what Safe's test token (OpenZeppelin's ERC20) mints to its deployer
SAFE_SETUP = "setup(address[],uint256,address,bytes,address,address,uint256,address)"
CREATE_PROXY = "createProxyWithNonce(address,bytes,uint256)"
EXEC_TRANSACTION = (
    "execTransaction(address,uint256,bytes,uint8,uint256,uint256,uint256,address,address,bytes)"
)


def deploy_contracts(chain: Chain) -> None:
    """Safe 1.4.1's singleton and proxy factory, and an ERC-20 whose whole supply the deployer holds."""
    chain.contracts["safe_singleton"] = chain.deploy("Safe.sol/Safe")
    chain.contracts["safe_proxy_factory"] = chain.deploy("proxies/SafeProxyFactory.sol/SafeProxyFactory")
    chain.contracts["token"] = chain.deploy("test/ERC20Token.sol/ERC20Token")


def create_safe(chain: Chain, owners: Sequence[str], threshold: int, salt: int = 0) -> str:
    """A Safe proxy of the deployed singleton with these owners and threshold, made through the proxy factory
    as the Safe wallet makes one; its address is read from the factory (a dry run of the same call)."""
    initializer = function_call(
        SAFE_SETUP, [list(owners), threshold, ZERO_ADDRESS, b"", ZERO_ADDRESS, ZERO_ADDRESS, 0, ZERO_ADDRESS]
    )
    factory = chain.contracts["safe_proxy_factory"]
    create = function_call(CREATE_PROXY, [chain.contracts["safe_singleton"], initializer, salt])
    answer = chain.rpc(
        "eth_call", {"from": chain.deployer, "to": factory, "data": "0x" + create.hex()}, "latest"
    )
    (address,) = decode(["address"], bytes.fromhex(answer[2:]))
    chain.transact(factory, create)
    safe = to_checksum_address(address)
    assert set(safe_owners(chain, safe)) == set(owners)
    return safe


def safe_owners(chain: Chain, safe: str) -> list[str]:
    (owners,) = chain.call(safe, function_call("getOwners()", []), ["address[]"])
    return [to_checksum_address(owner) for owner in owners]


def safe_nonce(chain: Chain, safe: str) -> int:
    (nonce,) = chain.call(safe, function_call("nonce()", []), ["uint256"])
    return int(nonce)


def safe_signatures(signatures: dict[str, bytes]) -> bytes:
    """Owners' 65-byte ECDSA signatures (r, s, v with v 27 or 28) packed as Safe.checkSignatures reads them:
    ordered by owner address, ascending."""
    return b"".join(signatures[owner] for owner in sorted(signatures, key=lambda owner: int(owner, 16)))


# --- Node scripts ------------------------------------------------------------------------------------------
def run_node_script(
    script: str, arguments: Sequence[str] = (), extra_env: dict[str, str] | None = None
) -> Any:
    """Run tests/tools/SCRIPT with Node.js and return the JSON document it printed on stdout."""
    result = subprocess.run(
        ["node", str(TOOLS_DIR / script), *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=TOOLS_DIR,
        env={**os.environ, **(extra_env or {})},
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"node {script} exited {result.returncode}:\n{result.stderr}\n{result.stdout}")
    return json.loads(result.stdout)


# --- custody's JSON-RPC endpoint --------------------------------------------------------------------------
@dataclass
class Endpoint:
    """custody's JSON-RPC endpoint as a tool reaches it: over TLS with the development CA, authenticated by the
    backend identity's bearer token (``custody dev init`` writes it to tokens/backend.token)."""

    url: str
    token: str
    ca_file: Path

    def call(self, method: str, *params: Any) -> Any:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        return json_rpc(
            self.url, method, params, headers={"Authorization": f"Bearer {self.token}"}, context=context
        )

    def node_environment(self) -> dict[str, str]:
        """What a Node.js script needs to reach the endpoint: the token, and the CA that Node.js trusts besides
        its own (NODE_EXTRA_CA_CERTS, read by Node.js itself)."""
        return {"CUSTODY_RPC_TOKEN": self.token, "NODE_EXTRA_CA_CERTS": str(self.ca_file)}


def with_upstream(env: DevEnv, node_url: str) -> None:
    """Point the environment's JSON-RPC endpoint at ``node_url`` (``[jsonrpc] upstream``), which fills and
    broadcasts eth_sendTransaction and answers the read methods the endpoint forwards."""
    text = env.config.read_text()
    assert "\n[jsonrpc]\n" in text, "custody dev init wrote no [jsonrpc] section"
    env.config.write_text(
        text.replace("\n[jsonrpc]\n", f"\n[jsonrpc]\nupstream = {json.dumps(node_url)}\n", 1)
    )


def endpoint_of(env: DevEnv, daemon: Daemon) -> Endpoint:
    """The daemon's JSON-RPC endpoint, at the port its log names (the suite's environments ask for port 0)."""
    return Endpoint(
        url=jsonrpc_url(daemon), token=backend_token(env), ca_file=env.directory / "pki" / "ca.pem"
    )


# --- custody beside the chain ------------------------------------------------------------------------------
TOKEN_CAP = 10**12  # the most base units of the test token one ops request may move under the test policy
CO_OWNER_KEY = "0x" + "c0" * 32  # invented: the Safe's second owner, a local eth-account key


@dataclass
class ToolSetting:
    """anvil with the contracts, and custody's daemon on a development environment of its own whose keys hold
    ether and tokens on that chain; its JSON-RPC ``endpoint`` forwards to anvil (``[jsonrpc] upstream``).
    ``safe`` is a Safe owned by custody's treasury key and a local key (``co_owner``), 2 of 2, holding ether and
    tokens; the policy in force is the development policy with this Safe in place of its example Safe, plus a
    rule that lets ``ops`` send the test token at once."""

    chain: Chain
    custody: Custody
    endpoint: Endpoint
    safe: str
    co_owner: LocalAccount
    token: str

    @property
    def addresses(self) -> dict[str, str]:
        return self.custody.addresses


def tool_test_policy(document: str, safe: str, token: str) -> str:
    """The next version of the development policy: its treasury rules name ``safe`` instead of the example Safe,
    and the ops key may send up to TOKEN_CAP of ``token`` at once (the development policy lets it send ether
    only)."""
    assert "version = 1\n" in document and EXAMPLE_SAFE in document
    document = document.replace("version = 1\n", "version = 2\n", 1).replace(EXAMPLE_SAFE, safe)
    return (
        document
        + f"""
[[rules]]
name = "ops-token-transfers"
keys = ["ops"]
kinds = ["transaction"]
transaction_types = ["legacy", "eip1559"]
chain_ids = [{CHAIN_ID}]
intents = ["erc20_transfer"]
tokens = ["{token}"]
token_caps = [{{ token = "{token}", max = "{TOKEN_CAP}" }}]
max_fee_wei = "50000000000000000"  # 0.05 ether
action = "sign"
"""
    )


@contextmanager
def tool_setting(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, name: str
) -> Iterator[ToolSetting]:
    """One anvil node and one daemon for a tool test module, set up as ToolSetting describes."""
    require_tools()
    logs = tmp_path_factory.mktemp(f"{name}-logs")
    with running_anvil(logs) as chain:
        deploy_contracts(chain)
        token = chain.contracts["token"]
        prepare = functools.partial(with_upstream, node_url=chain.url)
        with running_custody(tmp_path_factory, databases, name, prepare) as custody:
            co_owner = Account.from_key(CO_OWNER_KEY)
            safe = create_safe(chain, [custody.addresses["treasury"], co_owner.address], threshold=2)
            for address in (*custody.addresses.values(), safe):
                chain.set_balance(address, 10 * ONE_ETHER)
                chain.transact(token, erc20_transfer(address, ERC20_SUPPLY // 10))
            document = (custody.env.directory / "policy.toml").read_text()
            custody.activate_policy(tool_test_policy(document, safe, token))
            yield ToolSetting(
                chain=chain,
                custody=custody,
                endpoint=endpoint_of(custody.env, custody.daemon),
                safe=safe,
                co_owner=co_owner,
                token=token,
            )


# --- Independent checks of signatures ----------------------------------------------------------------------
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def assert_low_s(s: int) -> None:
    assert 0 < s <= SECP256K1_N // 2, "the signature's s is not in the lower half of the curve order"


def assert_message_signed_by(signable: SignableMessage, signature: bytes | str, address: str) -> None:
    """eth-account recovers ``address`` from the 65-byte signature, whose s is low and v 27 or 28."""
    raw = bytes.fromhex(signature.removeprefix("0x")) if isinstance(signature, str) else signature
    assert len(raw) == 65 and raw[64] in (27, 28), raw.hex()
    assert Account.recover_message(signable, signature=raw) == address
    assert_low_s(int.from_bytes(raw[32:64], "big"))


def assert_transaction_signed_by(raw_transaction: bytes | str, address: str) -> None:
    """eth-account recovers ``address`` from the signed transaction, whose s is low."""
    raw = (
        bytes.fromhex(raw_transaction.removeprefix("0x"))
        if isinstance(raw_transaction, str)
        else raw_transaction
    )
    assert Account.recover_transaction(raw) == address
    # The signature is the last three RLP items of the transaction (typed ones after their type byte).
    fields = rlp.decode(raw[1:] if raw[0] < 0x7F else raw)
    assert_low_s(int.from_bytes(fields[-1], "big"))


def assert_mined_and_signed_by(chain: Chain, tx_hash: str, address: str) -> None:
    """anvil mined the transaction successfully, and eth-account recovers ``address`` from the raw bytes anvil
    holds for it (not from what the tool said it sent)."""
    assert chain.receipt(tx_hash)["status"] == "0x1"
    assert_transaction_signed_by(chain.rpc("eth_getRawTransactionByHash", tx_hash), address)
