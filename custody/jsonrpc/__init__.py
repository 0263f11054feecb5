"""The Ethereum JSON-RPC endpoint: web3.py, ethers, viem and Foundry sign through custody unchanged.

``server`` is the HTTP(S) listener, ``protocol`` JSON-RPC 2.0's framing, ``auth`` the callers' certificates and
bearer tokens, ``params`` the strict reading of parameters, ``methods`` the methods (calling the use cases in
custody.app as the gRPC servicers do) and ``upstream`` the node that eth_sendTransaction fills from and
broadcasts to. docs/design.md describes the endpoint; the README lists its error codes.
"""
