// ethers v6 as a script uses a remote signer: a JsonRpcProvider on custody's JSON-RPC endpoint and the
// JsonRpcSigner of one of its accounts. Run by the end-to-end tests (tests/e2e/test_tools_*.py):
//
//   CUSTODY_RPC_TOKEN=... node ethers_client.mjs ACTION '{"url": ..., "from": ..., ...}'
//
// ACTION is one of accounts, send-transaction, sign-transaction, sign-message, sign-typed-data. The bearer
// token comes from the environment, never the command line. It prints one JSON document: the result, checked
// with ethers' own functions where ethers has one (the recovered signer), or {"error": {code, message, data}}
// when the endpoint answered a JSON-RPC error (a request waiting for approvals, say).
import { FetchRequest, JsonRpcProvider, Transaction, verifyMessage, verifyTypedData } from "ethers";

const [action, argument] = process.argv.slice(2);
const input = JSON.parse(argument ?? "{}");

function provider() {
  const request = new FetchRequest(input.url);
  if (process.env.CUSTODY_RPC_TOKEN) {
    request.setHeader("Authorization", `Bearer ${process.env.CUSTODY_RPC_TOKEN}`);
  }
  // The chain id is given, so ethers asks for it once rather than guessing the network by polling.
  return new JsonRpcProvider(request, input.chainId, { staticNetwork: true });
}

// The transaction fields a test gives as JSON (decimal strings for big numbers) as ethers takes them.
function transaction(fields) {
  const tx = { ...fields };
  for (const name of ["value", "gasLimit", "maxFeePerGas", "maxPriorityFeePerGas", "gasPrice"]) {
    if (tx[name] !== undefined) tx[name] = BigInt(tx[name]);
  }
  return tx;
}

async function run() {
  const rpc = provider();
  if (action === "accounts") {
    return { accounts: await rpc.send("eth_accounts", []) };
  }
  const signer = await rpc.getSigner(input.from);
  switch (action) {
    case "send-transaction": {
      const sent = await signer.sendTransaction(transaction(input.transaction));
      const receipt = await sent.wait(1, 60_000);
      return { hash: sent.hash, status: receipt.status, blockNumber: receipt.blockNumber, from: sent.from };
    }
    case "sign-transaction": {
      const signed = await signer.signTransaction(transaction(input.transaction));
      const parsed = Transaction.from(signed);
      const result = { signed, hash: parsed.hash, recovered: parsed.from };
      if (input.broadcast) {
        const sent = await rpc.broadcastTransaction(signed);
        const receipt = await sent.wait(1, 60_000);
        Object.assign(result, { status: receipt.status, blockNumber: receipt.blockNumber });
      }
      return result;
    }
    case "sign-message": {
      const signature = await signer.signMessage(input.message);
      return { signature, recovered: verifyMessage(input.message, signature) };
    }
    case "sign-typed-data": {
      const { domain, types, message } = input.typedData;
      const { EIP712Domain: _domainType, ...messageTypes } = types;
      const signature = await signer.signTypedData(domain, messageTypes, message);
      return { signature, recovered: verifyTypedData(domain, messageTypes, message, signature) };
    }
    default:
      throw new Error(`unknown action ${action}`);
  }
}

// A JSON-RPC error answer, as ethers carries it: on the error itself, or in its `error` or `info` member.
function rpcError(error) {
  for (const candidate of [error?.error, error?.info?.error, error]) {
    if (candidate && typeof candidate.code === "number") {
      return { code: candidate.code, message: candidate.message, data: candidate.data ?? null };
    }
  }
  return null;
}

try {
  console.log(JSON.stringify(await run()));
} catch (error) {
  const answered = rpcError(error);
  if (answered === null) {
    console.error(error);
    process.exit(1);
  }
  console.log(JSON.stringify({ error: answered }));
}
// Done: exit now rather than once the provider's last polling timer has run out (about two seconds).
process.exit(0);
