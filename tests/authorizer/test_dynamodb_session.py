"""The gate's botocore session registers only the built-in handlers that can run for DynamoDB:
every event a DynamoDB client emits finds the same handlers, in the same order, as in botocore's own session.
"""

import os

import botocore.handlers
import botocore.session
from botocore.hooks import HierarchicalEmitter

from authorizer import dynamodb
from authorizer.mirror import balance_key, route_key


class RecordingEmitter(HierarchicalEmitter):
    """botocore's emitter (given to a Session through its `event_hooks` parameter) that notes each event emitted."""

    def __init__(self) -> None:
        super().__init__()
        self.emitted: list[str] = []  # shared by the copies a client makes (HierarchicalEmitter.__copy__)

    def _emit(self, event_name, kwargs, stop_on_response=False):
        self.emitted.append(event_name)
        return super()._emit(event_name, kwargs, stop_on_response)


def handlers_for(session, event_name: str) -> list:
    aliaser = session.get_component("event_emitter")
    return list(aliaser._emitter._handlers.prefix_search(aliaser._alias_event_name(event_name)))


def test_every_event_of_a_dynamodb_client_finds_botocores_handlers(mirror_items):
    """A client of botocore's full session sends both operations and renders a docstring; every event it emitted."""
    recorder = RecordingEmitter()
    full = botocore.session.Session(event_hooks=recorder)
    full.register_component("data_loader", dynamodb_loader(full))
    client = full.create_client("dynamodb", region_name="us-east-1")
    table = os.environ["MIRROR_TABLE"]
    client.get_item(TableName=table, Key=route_key("wthr000001"))
    client.update_item(
        TableName=table,
        Key=balance_key("cus_a", "weather"),
        UpdateExpression="ADD used :one",
        ExpressionAttributeValues={":one": {"N": "1"}},
    )
    assert "response = client.get_item(" in str(client.get_item.__doc__)
    emitted = set(recorder.emitted)
    assert {"before-call.dynamodb.GetItem", "before-send.dynamodb.UpdateItem"} <= emitted
    assert any(name.startswith("docs.") for name in emitted)

    ours = dynamodb.session()
    differing = [name for name in sorted(emitted) if handlers_for(ours, name) != handlers_for(full, name)]
    assert differing == []
    assert sum(1 for name in emitted if handlers_for(full, name)) > 5  # some do have handlers to compare


def dynamodb_loader(session):
    return dynamodb.DynamoDBLoader(extra_search_paths=dynamodb.search_paths(session))


def test_the_handlers_left_out_are_other_services_ones_and_the_rest_are_kept_in_order():
    ours = dynamodb.session()
    full = botocore.session.Session()
    for spec in botocore.handlers.BUILTIN_HANDLERS:
        name = spec[0]
        if dynamodb.handler_fires_for(name, "dynamodb"):
            assert spec[1] in handlers_for(ours, name), name
        else:
            assert spec[1] not in handlers_for(ours, name), name
            assert spec[1] in handlers_for(full, name), name
    kept = [spec for spec in botocore.handlers.BUILTIN_HANDLERS if dynamodb.handler_fires_for(spec[0], "dynamodb")]
    assert 0 < len(kept) < len(botocore.handlers.BUILTIN_HANDLERS) / 4


def test_which_event_names_can_be_dynamodbs():
    fires = dynamodb.handler_fires_for
    assert fires("choose-service-name", "dynamodb")
    assert fires("before-call.dynamodb.GetItem", "dynamodb") and fires("before-call.*", "dynamodb")
    assert not fires("before-call.s3.PutObject", "dynamodb")
    assert not fires("creating-client-class.dynamodb-streams", "dynamodb")
    assert fires("docs.request-params", "dynamodb") and fires("docs.*.dynamodb.GetItem.complete-section", "dynamodb")
    assert not fires("docs.*.s3.CopyObject.complete-section", "dynamodb")
