"""The intents of EIP-7702 authorizations: one ``authorization`` intent per tuple, naming its delegate.

An authorization signed by custody and each tuple of a set-code transaction's ``authorizationList`` become the
same intent, so one policy condition (``delegates``, ``any_chain``) judges both and the approver reads both the
same way: the delegate as a party, the chain in words, and flags that say the account will run that code.
"""

from __future__ import annotations

from custody.chains.evm.authorizations import (
    EVERY_CHAIN,
    Authorization,
    SignedAuthorization,
    clears_delegation,
    describe_chain,
)
from custody.domain.intents import Intent, IntentFlag, IntentKind, Party, PartyRole


def authorization_intent(authorization: Authorization | SignedAuthorization) -> Intent:
    """The intent of one authorization; a tuple of a set-code transaction also names its recovered authority.

    An authorization to the zero address makes the account run no code: it is flagged as clearing the
    delegation, never as running a delegate's code, so its flags and its lines say the same thing.
    """
    clears = clears_delegation(authorization.delegate)
    flags = {IntentFlag.CLEARS_DELEGATION if clears else IntentFlag.CODE_DELEGATION}
    if authorization.chain_id == EVERY_CHAIN:
        flags.add(IntentFlag.EVERY_CHAIN)
    fields: list[tuple[str, str]] = []
    if isinstance(authorization, SignedAuthorization):
        fields.append(("authority (account whose code changes)", authorization.authority))
    else:
        fields.append(("authority (account whose code changes)", "the signing key's account"))
    fields.extend(
        [
            (
                "delegate (code the account will run)",
                f"{authorization.delegate} (none: this clears the delegation)"
                if clears
                else authorization.delegate,
            ),
            ("chain id", describe_chain(authorization.chain_id, authorization.nonce)),
            ("nonce", str(authorization.nonce)),
        ]
    )
    return Intent(
        kind=IntentKind.AUTHORIZATION,
        parties=(Party(PartyRole.DELEGATE, authorization.delegate),),
        flags=frozenset(flags),
        fields=tuple(fields),
        subject=f"delegate {authorization.delegate}",
    )
