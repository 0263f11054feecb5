// viem as a script uses a remote signer: a wallet client with a JSON-RPC account (an address whose key the
// node holds) on custody's JSON-RPC endpoint. Run by the end-to-end tests (tests/e2e/test_tools_*.py):
//
//   CUSTODY_RPC_TOKEN=... node viem_client.mjs ACTION '{"url": ..., "chainId": ..., "from": ..., ...}'
//
// ACTION is one of send-transaction, sign-message, sign-typed-data. The bearer token comes from the
// environment, never the command line. It prints one JSON document: the result, checked with viem's own
// recover functions.
import {
  createPublicClient,
  createWalletClient,
  defineChain,
  http,
  recoverMessageAddress,
  recoverTypedDataAddress,
} from "viem";

const [action, argument] = process.argv.slice(2);
const input = JSON.parse(argument ?? "{}");

const headers = process.env.CUSTODY_RPC_TOKEN ? { Authorization: `Bearer ${process.env.CUSTODY_RPC_TOKEN}` } : {};
const transport = http(input.url, { fetchOptions: { headers }, retryCount: 0 });
// The local chain, by its id only: viem asks no other node than the endpoint given.
const chain = defineChain({
  id: input.chainId,
  name: "custody test chain",
  nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
  rpcUrls: { default: { http: [input.url] } },
});
const wallet = createWalletClient({ account: input.from, chain, transport });
const reader = createPublicClient({ chain, transport });

async function run() {
  switch (action) {
    case "send-transaction": {
      const { to, value } = input.transaction;
      const hash = await wallet.sendTransaction({ to, value: BigInt(value) });
      const receipt = await reader.waitForTransactionReceipt({ hash, timeout: 60_000 });
      return { hash, status: receipt.status, blockNumber: Number(receipt.blockNumber), from: receipt.from };
    }
    case "sign-message": {
      const signature = await wallet.signMessage({ message: input.message });
      return { signature, recovered: await recoverMessageAddress({ message: input.message, signature }) };
    }
    case "sign-typed-data": {
      const { domain, types, primaryType, message } = input.typedData;
      const signature = await wallet.signTypedData({ domain, types, primaryType, message });
      const recovered = await recoverTypedDataAddress({ domain, types, primaryType, message, signature });
      return { signature, recovered };
    }
    default:
      throw new Error(`unknown action ${action}`);
  }
}

console.log(JSON.stringify(await run()));
