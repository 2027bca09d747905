"""authorizer.record.Record: what the gate's value classes kept of `@dataclass(frozen=True)`."""

import pytest

from authorizer.gate import Route, Spend
from authorizer.handler import Decision
from authorizer.routes import EMPTY, Call
from authorizer.tokens import AccessToken


def test_records_are_equal_and_hash_alike_by_their_fields_and_class():
    token = AccessToken("cus_a", "cli_a", 1, frozenset({"weather"}), 99)
    assert token == AccessToken("cus_a", "cli_a", 1, frozenset({"weather"}), 99)
    assert hash(token) == hash(AccessToken("cus_a", "cli_a", 1, frozenset({"weather"}), 99))
    assert token != AccessToken("cus_a", "cli_a", 2, frozenset({"weather"}), 99)
    assert Route("weather") == Route("weather", EMPTY) != Route(None)
    assert Call("GET", ()) != Route("GET", EMPTY)  # another class, even with fields alike
    assert {Call("GET", ((2, "jobs"),)): 1}[Call("GET", ((2, "jobs"),))] == 1


def test_a_record_is_frozen():
    spend = Spend(allowed=True, remaining=3, cost=1)
    with pytest.raises(AttributeError, match="frozen"):
        spend.remaining = 4  # type: ignore[misc]
    with pytest.raises(AttributeError, match="frozen"):
        del spend.cost
    with pytest.raises(AttributeError):
        spend.other = 1  # type: ignore[attr-defined]  # no such field
    assert spend.remaining == 3


def test_a_records_repr_names_its_fields_and_each_gets_its_own_default_dict():
    assert repr(Spend(allowed=False, reason="no_credits")) == (
        "Spend(allowed=False, cost=None, reason='no_credits', remaining=None)"
    )
    first, second = Decision(allow=False), Decision(allow=False)
    assert first.context == {} and first.context is not second.context
    assert first == second and first.principal_id == "unknown" and not first.unauthorized
