"""Fixtures for the authorizer alone: no Django, a real moto server over HTTP."""

import os

import pytest

from authorizer.mirror import TABLE_DEFINITION
from tests.authorizer.support import RequestCounter, balance_item, full_dynamodb_client, route_item


@pytest.fixture
def dynamodb(aws):
    """A botocore DynamoDB client of our own on the emptied moto server, with the mirror table."""
    client = full_dynamodb_client()
    client.create_table(TableName=os.environ["MIRROR_TABLE"], **TABLE_DEFINITION)
    return client


@pytest.fixture
def mirror_items(dynamodb):
    """Put items into the mirror table; read one back."""

    class Items:
        table = os.environ["MIRROR_TABLE"]

        def put(self, *items: dict) -> None:
            for item in items:
                dynamodb.put_item(TableName=self.table, Item=item)

        def get(self, key: dict) -> dict | None:
            return dynamodb.get_item(TableName=self.table, Key=key, ConsistentRead=True).get("Item")

        def used(self, customer: str, product: str) -> int:
            from authorizer.mirror import balance_key

            return int(self.get(balance_key(customer, product))["used"]["N"])

    return Items()


@pytest.fixture
def requests_sent(authorizer):
    """The DynamoDB operations the authorizer sends, in order."""
    return RequestCounter(authorizer.runtime().gate.client).operations


@pytest.fixture
def alice_weather(mirror_items):
    """alice (cus_alice, credential cli_alice v1) with 10 weather credits at 1 each; API wthr000001 serves weather."""
    mirror_items.put(
        route_item("wthr000001", "weather"),
        route_item("maps000001", "maps"),
        balance_item(customer="cus_alice", product="weather", granted=10, creds={"cli_alice": 1}),
    )
    return mirror_items
