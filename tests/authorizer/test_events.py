"""The event views: where the token is and which API was called, for each of the three kinds."""

import pytest

from authorizer.events import (
    BadEvent,
    HttpApiEvent,
    RequestEvent,
    TokenEvent,
    api_id_from_arn,
    bearer_token,
    event_view,
)
from tests.authorizer.support import EVENT_KINDS, load_event


@pytest.mark.parametrize(
    "kind, view",
    [("rest_token", TokenEvent), ("rest_request", RequestEvent), ("http_api_v2", HttpApiEvent)],
)
def test_each_sample_event_gives_its_token_and_api_id(kind, view):
    event = event_view(load_event(kind, token="tok.en.value", api_id="wthr000001"))
    assert type(event) is view
    assert event.api_id == "wthr000001"
    assert event.token(header="Authorization", scheme_required=True) == "tok.en.value"
    assert event.http_api is (kind == "http_api_v2")


@pytest.mark.parametrize(
    "arn, api_id",
    [
        ("arn:aws:execute-api:us-east-1:123456789012:abcdef123/test/GET/request", "abcdef123"),
        ("arn:aws:execute-api:eu-west-1:123456789012:x1y2z3/$default/POST/a/b/c", "x1y2z3"),
        ("arn:aws:execute-api:us-east-1:123456789012:abcdef123/*/*", "abcdef123"),
        ("arn:aws:lambda:us-east-1:123456789012:function:f", None),
        ("arn:aws:execute-api:us-east-1:123456789012", None),
        ("", None),
    ],
)
def test_the_api_id_comes_from_the_arn(arn, api_id):
    assert api_id_from_arn(arn) == api_id


def test_an_http_api_event_that_contradicts_itself_routes_nowhere():
    event = load_event("http_api_v2", token="t")
    event["requestContext"]["apiId"] = "another01"
    assert event_view(event).api_id is None


@pytest.mark.parametrize(
    "value, required, token",
    [
        ("Bearer abc.def.ghi", True, "abc.def.ghi"),
        ("bearer abc.def.ghi", True, "abc.def.ghi"),
        ("BEARER abc.def.ghi", True, "abc.def.ghi"),
        ("  Bearer abc.def.ghi  ", True, "abc.def.ghi"),
        ("abc.def.ghi", True, None),
        ("abc.def.ghi", False, "abc.def.ghi"),
        ("Basic dXNlcjpwYXNz", True, None),
        ("Bearer", True, None),
        ("Bearer ", True, None),
        ("Bearer a b", True, None),
        ("Bearer  abc", True, None),
        ("", False, None),
        (None, False, None),
    ],
)
def test_bearer_tokens_are_read_strictly(value, required, token):
    assert bearer_token(value, scheme_required=required) == token


def test_request_headers_are_found_whatever_their_case_and_must_agree():
    event = RequestEvent(
        {
            "type": "REQUEST",
            "methodArn": "",
            "headers": {"x-Credits-TOKEN": "a"},
            "multiValueHeaders": {"X-Credits-Token": ["a"]},
        }
    )
    assert event.header("X-CREDITS-token") == "a"
    event.raw["multiValueHeaders"]["X-Credits-Token"].append("b")
    assert event.header("x-credits-token") is None


def test_unknown_events_are_refused():
    for raw in [None, [], {}, {"type": "REQUEST"}, {"type": "REQUEST", "version": "1.0"}]:
        with pytest.raises(BadEvent):
            event_view(raw)


@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_without_the_header_there_is_no_token(kind):
    assert event_view(load_event(kind, token=None)).token(header="Authorization", scheme_required=True) is None
