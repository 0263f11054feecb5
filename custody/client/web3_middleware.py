"""A web3.py middleware that signs eth_sendTransaction through custody and sends eth_sendRawTransaction.

It is web3.py's own SignAndSendRawMiddlewareBuilder (which fills the nonce, gas and fees from the node
exactly as it does for a LocalAccount) with CustodyAccounts in place of private keys::

    account = CustodyClient.from_profile("profiles/backend.toml").account("ops")
    w3.middleware_onion.inject(custody_signing_middleware(account), layer=0)
    w3.eth.send_transaction({"from": account.address, "to": ..., "value": ...})

web3.py is needed only by whoever calls this; custody itself does not depend on it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from custody.client.account import CustodyAccount


def custody_signing_middleware(accounts: CustodyAccount | Iterable[CustodyAccount]) -> Any:
    """The middleware (a builder for ``w3.middleware_onion.inject``) that signs transactions whose ``from``
    is one of ``accounts`` through custody; other transactions pass on to the node unchanged."""
    from web3.middleware import SignAndSendRawMiddlewareBuilder

    chosen = [accounts] if isinstance(accounts, CustodyAccount) else list(accounts)
    by_address = {account.address: account for account in chosen}

    class CustodySignAndSendRawMiddlewareBuilder(SignAndSendRawMiddlewareBuilder):
        @staticmethod
        def build(w3: Any) -> CustodySignAndSendRawMiddlewareBuilder:
            middleware = CustodySignAndSendRawMiddlewareBuilder(w3)
            # The parent keeps its accounts by address and calls sign_transaction on the one a transaction
            # names, which is all a CustodyAccount needs to offer.
            middleware._accounts = by_address  # type: ignore[assignment]
            return middleware

    return CustodySignAndSendRawMiddlewareBuilder.build
