"""A spend whose answer is lost after DynamoDB applied it: charged once, and the call allowed.

The gate's requests go through tests/authorizer/lossy_door.py's `LossyDoor` to the session's moto
server; the door forwards a spend (moto applies it) and then loses the answer: the connection
closed without a byte, the answer held past the read timeout, or a 500. The gate sends the same
stamped spend again (authorizer/gate.py, "A lost answer"): the item shows it landed, so the call is
allowed and `used` rose by its cost exactly once. Without the stamp the gate denied such a call as
an internal error while the customer paid for it (found by bench/chaos_load.py: used 51, 48 allowed).
"""

import pytest

from authorizer import mirror
from authorizer.gate import LANDING_MARGIN_MS
from tests.authorizer.lossy_door import HOW, LossyDoor
from tests.authorizer.support import EVENT_KINDS, balance_item, called, route_item
from tests.authorizer.test_handler import alice_token, answer, expected_allow, expected_deny


@pytest.fixture
def door(aws, authorizer, monkeypatch):
    """The authorizer's DynamoDB endpoint is a LossyDoor to moto (read timeout 0.5 s)."""
    lossy = LossyDoor(aws, hold=1.0)
    monkeypatch.setenv("AWS_ENDPOINT_URL", lossy.url)
    monkeypatch.setenv("AUTHORIZER_DYNAMODB_TIMEOUT", "0.5")
    authorizer.reset()
    yield lossy
    lossy.close()


def spends(door: LossyDoor) -> int:
    return door.operations.count("UpdateItem")


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_a_spend_whose_answer_is_lost_is_charged_once_and_allowed(authorizer, alice_weather, door, kind, how):
    assert answer(authorizer, kind, alice_token()) == expected_allow(kind, remaining=9)  # route cached
    assert (alice_weather.used("cus_alice", "weather"), spends(door)) == (1, 1)

    door.lose("UpdateItem", how)
    assert answer(authorizer, kind, alice_token()) == expected_allow(kind, remaining=8)
    assert door.lost == ["UpdateItem"]
    assert spends(door) == 3  # the spend, and the same spend again after its answer was lost
    assert alice_weather.used("cus_alice", "weather") == 2  # charged once

    # The next call is a new spend, charged as usual.
    assert answer(authorizer, kind, alice_token()) == expected_allow(kind, remaining=7)
    assert (alice_weather.used("cus_alice", "weather"), spends(door)) == (3, 4)


def test_a_priced_route_whose_answer_is_lost_is_charged_its_cost_once(authorizer, mirror_items, door):
    mirror_items.put(
        route_item("wthr000001", "weather", routes={"POST /jobs": 10}),
        balance_item(customer="cus_alice", product="weather", granted=25, creds={"cli_alice": 1}, route_costs=(10,)),
    )
    event = called("rest_request", "POST", "/jobs", "/jobs", token=alice_token())
    door.lose("UpdateItem", "drop")
    got = authorizer.lambda_handler(event, None)
    assert got["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert (got["context"]["cost"], got["context"]["remaining"]) == (10, 15)
    assert mirror_items.used("cus_alice", "weather") == 10
    # 15 left: one more job, then refused; nothing was spent twice.
    assert authorizer.lambda_handler(event, None)["context"]["remaining"] == 5
    assert authorizer.lambda_handler(event, None)["context"] == {"reason": "credits_exhausted"}
    assert mirror_items.used("cus_alice", "weather") == 20


def test_a_lost_answer_on_the_last_credit_is_allowed_not_refused(authorizer, mirror_items, door):
    """The retry's condition fails twice over (its stamp is there, and no credit is left): the stamp decides."""
    mirror_items.put(
        route_item("wthr000001", "weather"),
        balance_item(customer="cus_alice", product="weather", granted=1, creds={"cli_alice": 1}),
    )
    door.lose("UpdateItem", "drop")
    assert answer(authorizer, "rest_request", alice_token()) == expected_allow("rest_request", remaining=0)
    assert answer(authorizer, "rest_request", alice_token()) == expected_deny("rest_request", "credits_exhausted")
    assert mirror_items.used("cus_alice", "weather") == 1


@pytest.mark.parametrize("others", [3, 4])
def test_spends_landing_before_the_retry_never_make_it_charge_twice(authorizer, alice_weather, door, aws, others):
    """Other calls of the same balance land between the lost answer and its retry. Up to three, the
    stamp is still in the item's four slots: allowed, charged once. Four push it out: the gate cannot
    tell whether it landed and denies (it was charged: the documented limit), never spending again."""
    assert answer(authorizer, "rest_request", alice_token()) == expected_allow("rest_request", remaining=9)

    def other_calls_land():
        for _ in range(others):
            assert (
                answer(authorizer, "rest_token", alice_token())["policyDocument"]["Statement"][0]["Effect"] == "Allow"
            )

    door.lose("UpdateItem", "drop", between=other_calls_land)
    got = answer(authorizer, "rest_request", alice_token())
    used = alice_weather.used("cus_alice", "weather")
    if others < len(mirror.SPENT):
        assert got == expected_allow("rest_request", remaining=10 - 2 - others)
    else:
        assert got == expected_deny("rest_request", "internal_error")
    assert used == 1 + others + 1  # the first call, the others, and the lost one: once


def test_four_old_stamps_do_not_make_a_retry_unknown(authorizer, alice_weather, door):
    """Four spends older than the landing margin in the slots: the stamp pushed the oldest out, the retry finds it."""
    old = f"{1_000_000_000_000:013d} {'0' * 16}"
    item = alice_weather.get(mirror.balance_key("cus_alice", "weather"))
    alice_weather.put(item | {slot: {"S": old} for slot in mirror.SPENT})
    assert int(old.split()[0]) < 10**12 + LANDING_MARGIN_MS
    door.lose("UpdateItem", "5xx")
    assert answer(authorizer, "rest_request", alice_token()) == expected_allow("rest_request", remaining=9)
    assert alice_weather.used("cus_alice", "weather") == 1
