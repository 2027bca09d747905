"""Shared set-up of the gate benchmarks: a moto server in its own process, the mirror
table with one route and one (very large) balance, a token, and the authorizer's environment.
Django-free, like the authorizer."""

import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from authorizer import mirror
from tests.authorizer.support import balance_item, called, gate_environ, key_event, load_event, mint, route_item

TABLE = "creditportal-bench"
API_ID = "wthr000001"
CUSTOMER, CLIENT, PRODUCT = "cus_bench", "cli_bench", "weather"
# The product's route prices (bench/_instant_dynamodb.py answers the same): the sample events'
# routes (GET /request, GET /forecast) match none of them, so they cost the default.
ROUTE_PRICES = {
    "POST /jobs": 10,
    "GET /jobs/{id}": 1,
    "DELETE /jobs/{id}": 1,
    "GET /health": 0,
    "ANY /files/{proxy+}": 3,
    "GET /files/public/{name}": 1,
}
BASE_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "MIRROR_TABLE": TABLE,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto() -> tuple[subprocess.Popen, str]:
    """`python -m moto.server` in its own process (so it does not compete for our GIL): (process, url)."""
    return _serve([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p"])


def start_instant_dynamodb() -> tuple[subprocess.Popen, str]:
    """bench/_instant_dynamodb.py, a DynamoDB endpoint that answers at once, in its own process: (process, url)."""
    return _serve([sys.executable, str(Path(__file__).with_name("_instant_dynamodb.py"))])


def _serve(command: list[str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([*command, str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return process, url
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{' '.join(command)} did not start")


def environ(endpoint: str, **extra) -> dict[str, str]:
    return BASE_ENV | {"AWS_ENDPOINT_URL": endpoint} | gate_environ() | extra


def prepare_table(client) -> None:
    client.create_table(TableName=TABLE, **mirror.TABLE_DEFINITION)
    client.put_item(TableName=TABLE, Item=route_item(API_ID, PRODUCT, routes=ROUTE_PRICES))
    costs = tuple(ROUTE_PRICES.values())
    for customer in (CUSTOMER, "cus_raw"):
        client.put_item(
            TableName=TABLE,
            Item=balance_item(customer=customer, product=PRODUCT, granted=10**12, creds={CLIENT: 1}, route_costs=costs),
        )


# An API key of the bench customer's (its item: bench/_instant_dynamodb.py answers it).
API_KEY, KEY_ID = "cpk_" + "b" * 43, "key_bench"


def key_request_event(kind: str = "rest_request") -> dict:
    """A call carrying the bench's API key as `x-api-key`."""
    return key_event(kind, API_KEY, api_id=API_ID)


def token() -> str:
    return mint(sub=CUSTOMER, client_id=CLIENT, ver=1, scope=PRODUCT, lifetime=3600)


def event(kind: str = "rest_request") -> dict:
    return load_event(kind, token=token(), api_id=API_ID)


def priced_event(kind: str = "rest_request") -> dict:
    """A call to a priced route: POST /jobs (10 credits)."""
    return called(kind, "POST", "/jobs", "/jobs", token=token(), api_id=API_ID)


def raw_priced_params(customer: str = "cus_raw", cost: int = 10) -> dict:
    """One raw conditional UpdateItem of a priced route's shape, as the gate sends it (on another item)."""
    from authorizer.gate import ROUTE_NAMES, ROUTE_SPEND_CONDITION, ROUTE_SPEND_UPDATE

    return {
        "TableName": TABLE,
        "Key": mirror.balance_key(customer, PRODUCT),
        "UpdateExpression": ROUTE_SPEND_UPDATE,
        "ConditionExpression": ROUTE_SPEND_CONDITION,
        "ExpressionAttributeNames": {**ROUTE_NAMES, "#cid": CLIENT, "#ceilings": mirror.CEILINGS, "#c": str(cost)},
        "ExpressionAttributeValues": {
            ":true": {"BOOL": True},
            ":ver": {"N": "1"},
            ":cost": {"N": str(cost)},
            **raw_stamp_values(),
        },
        "ReturnValues": "ALL_NEW",
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


def raw_stamp_values() -> dict:
    """The spend's stamp values (authorizer/gate.py, "A lost answer"), a stamp as long as the gate's."""
    from authorizer.gate import NO_STAMP

    return {":stamp": {"S": f"{int(time.time() * 1000):013d} {'0' * 16}"}, ":none": {"S": NO_STAMP}}


def raw_update_params(customer: str = "cus_raw") -> dict:
    """One raw conditional UpdateItem, the same the gate sends (on another item)."""
    from authorizer.gate import SPEND_CONDITION, SPEND_NAMES, SPEND_UPDATE

    return {
        "TableName": TABLE,
        "Key": mirror.balance_key(customer, PRODUCT),
        "UpdateExpression": SPEND_UPDATE,
        "ConditionExpression": SPEND_CONDITION,
        "ExpressionAttributeNames": {**SPEND_NAMES, "#cid": CLIENT},
        "ExpressionAttributeValues": {":true": {"BOOL": True}, ":ver": {"N": "1"}, **raw_stamp_values()},
        "ReturnValues": "ALL_NEW",
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]
