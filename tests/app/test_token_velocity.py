"""Token velocity: a rule's per-token limit counts what the key's earlier requests moved, as the store keeps
it with each request, over a window the clock moves through."""

from __future__ import annotations

from eth_abi.abi import encode
from eth_utils.crypto import keccak

from custody.domain.requests import RequestState

from .conftest import App, AppFactory, assert_signed_by, assert_unsigned

# USDC on Sepolia (Circle's published test deployment); 6 decimals.
USDC = "0x1c7D4B196Cb0C7B01d743Fbc6116a902379C7238"
RECIPIENT = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
USDC_UNITS = 10**6
RULE = f"""[[rules]]
name = "ops-usdc"
keys = ["ops"]
kinds = ["transaction"]
chain_ids = [11155111]
intents = ["erc20_transfer"]
tokens = ["{USDC}"]
token_velocity = [{{ token = "{USDC}", window_seconds = 3600, max = "{1000 * USDC_UNITS}" }}]
action = "sign"

"""


def with_usdc_rule(document: str) -> str:
    first_rule = document.index("[[rules]]")
    return document[:first_rule] + RULE + document[first_rule:]


def usdc_transfer(app: App, amount: int) -> dict[str, object]:
    calldata = keccak(text="transfer(address,uint256)")[:4] + encode(
        ["address", "uint256"], [RECIPIENT, amount]
    )
    return {
        "type": 2,
        "chainId": 11155111,
        "nonce": app.nonce(),
        "to": USDC,
        "value": 0,
        "gas": 60000,
        "maxFeePerGas": 30 * 10**9,
        "maxPriorityFeePerGas": 10**9,
        "data": "0x" + calldata.hex(),
    }


def test_token_transfers_are_limited_per_window_and_the_limit_frees_up_as_it_passes(
    make_app: AppFactory,
) -> None:
    app = make_app(policy=with_usdc_rule)
    address = app.keys["ops"].address

    first = app.submit("ops", usdc_transfer(app, 600 * USDC_UNITS))
    assert first.decision.rule == "ops-usdc"
    assert_signed_by(first, address)
    assert first.token_amounts == {USDC: 600 * USDC_UNITS}

    second = app.submit("ops", usdc_transfer(app, 600 * USDC_UNITS))
    assert second.state is RequestState.DENIED
    assert_unsigned(second)
    (trace,) = [rule for rule in app.custody.policy.explain(second).rules if rule.rule == "ops-usdc"]
    (velocity,) = [condition for condition in trace.conditions if condition.condition == "token_velocity"]
    assert not velocity.matched
    assert f"1200000000 of token {USDC} would exceed the limit of 1000000000" in velocity.detail

    within = app.submit("ops", usdc_transfer(app, 400 * USDC_UNITS))
    assert_signed_by(within, address)

    app.clock.advance(3601)
    later = app.submit("ops", usdc_transfer(app, 900 * USDC_UNITS))
    assert_signed_by(later, address)


def test_a_stored_request_keeps_its_token_amounts(make_app: AppFactory) -> None:
    app = make_app(policy=with_usdc_rule)
    signed = app.submit("ops", usdc_transfer(app, 5 * USDC_UNITS))

    assert app.get(signed.request_id).token_amounts == {USDC: 5 * USDC_UNITS}
    (stored,) = app.sql("SELECT token_amounts FROM requests WHERE request_id = ?", (signed.request_id,))
    assert stored[0] == f'{{"{USDC}":"5000000"}}'
