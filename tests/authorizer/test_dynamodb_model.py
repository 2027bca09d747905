"""The gate's trimmed DynamoDB model is botocore's own for GetItem and UpdateItem, its trimmed endpoint
data is botocore's own for DynamoDB, and its client uses both.

Compared with the model of the botocore installed here, through botocore's
own model classes and serializer: a botocore upgrade that changes either
operation fails these tests until `python -m deploy.dynamodb_model` is run.
"""

import json
import os

import pytest
from botocore.loaders import Loader
from botocore.model import ServiceModel
from botocore.regions import EndpointResolver
from botocore.serialize import create_serializer

from authorizer import dynamodb
from authorizer.gate import SPEND_CONDITION, SPEND_NAMES, SPEND_UPDATE
from authorizer.mirror import balance_key, route_key
from deploy.dynamodb_model import (
    ENDPOINTS_PATH,
    OPERATIONS,
    installed_endpoints,
    installed_model,
    model_path,
    rendered,
    trimmed,
    trimmed_endpoints,
)

TRIMMED_FILE = model_path(installed_model())


@pytest.fixture(scope="module")
def models() -> tuple[ServiceModel, ServiceModel]:
    """(botocore's installed model, the gate's file), both as botocore reads them."""
    return ServiceModel(installed_model(), "dynamodb"), ServiceModel(json.loads(TRIMMED_FILE.read_text()), "dynamodb")


def described(shape, seen=()) -> dict | str | None:
    """Everything botocore knows of a shape but its documentation, recursively (cycles by name)."""
    if shape is None:
        return None
    if shape.name in seen:
        return f"<{shape.name}>"
    seen = (*seen, shape.name)
    description = {
        "name": shape.name,
        "type": shape.type_name,
        "metadata": {k: v for k, v in shape.metadata.items() if k != "documentation"},
        "serialization": shape.serialization,
        "enum": getattr(shape, "enum", None),  # StringShape only
    }
    if shape.type_name == "structure":
        description["required"] = shape.required_members
        description["members"] = {name: described(member, seen) for name, member in shape.members.items()}
    elif shape.type_name == "list":
        description["member"] = described(shape.member, seen)
    elif shape.type_name == "map":
        description["key"], description["value"] = described(shape.key, seen), described(shape.value, seen)
    return description


def operation(model: ServiceModel, name: str) -> dict:
    op = model.operation_model(name)
    return {
        "http": op.http,
        "input": described(op.input_shape),
        "output": described(op.output_shape),
        "errors": sorted(json.dumps(described(shape), sort_keys=True) for shape in op.error_shapes),
        "context": (op.context_parameters, op.static_context_parameters, op.operation_context_parameters),
        "auth": (op.auth, op.auth_type, op.endpoint_discovery, op.is_endpoint_discovery_operation),
        "flags": (op.deprecated, op.has_event_stream_input, op.has_event_stream_output, op.request_compression),
    }


def test_the_file_is_what_the_script_derives_from_the_installed_botocore():
    assert TRIMMED_FILE.read_text() == rendered(trimmed(installed_model()))
    assert TRIMMED_FILE.parent.parent == dynamodb.DATA_PATH / "dynamodb"


@pytest.mark.parametrize("name", OPERATIONS)
def test_each_operation_is_botocores_in_everything_but_its_documentation(models, name):
    full, ours = models
    assert operation(ours, name) == operation(full, name)


def test_the_service_metadata_is_botocores_and_nothing_else_is_left(models):
    full, ours = models
    assert ours.metadata == full.metadata
    assert (ours.protocol, ours.signature_version, ours.api_version) == (
        full.protocol,
        full.signature_version,
        full.api_version,
    )
    assert ours.client_context_parameters == full.client_context_parameters
    assert ours.operation_names == sorted(OPERATIONS)
    assert set(ours.shape_names) < set(full.shape_names)
    assert "documentation" not in TRIMMED_FILE.read_text()


GATE_REQUESTS = {
    "GetItem": {
        "TableName": "creditportal-dev-mirror",
        "Key": route_key("wthr000001"),
        "ProjectionExpression": "#product",
        "ExpressionAttributeNames": {"#product": "product"},
    },
    "UpdateItem": {
        "TableName": "creditportal-dev-mirror",
        "Key": balance_key("cus_alice", "weather"),
        "UpdateExpression": SPEND_UPDATE,
        "ConditionExpression": SPEND_CONDITION,
        "ExpressionAttributeNames": {**SPEND_NAMES, "#cid": "cli_alice"},
        "ExpressionAttributeValues": {":true": {"BOOL": True}, ":ver": {"N": "3"}},
        "ReturnValues": "ALL_NEW",
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    },
}


@pytest.mark.parametrize("name", OPERATIONS)
def test_botocore_serializes_the_gates_requests_the_same_from_both_models(models, name):
    serializer = create_serializer("json", include_validation=True)
    sent = [serializer.serialize_to_request(GATE_REQUESTS[name], model.operation_model(name)) for model in models]
    assert sent[0] == sent[1]
    assert sent[1]["headers"]["X-Amz-Target"] == f"DynamoDB_20120810.{name}"


def test_the_endpoint_file_is_what_the_script_derives_from_the_installed_botocore():
    assert ENDPOINTS_PATH.read_text() == rendered(trimmed_endpoints(installed_endpoints()))
    assert ENDPOINTS_PATH.parent == dynamodb.DATA_PATH


def resolved(resolver: EndpointResolver, method: str, *args, **kwargs) -> object:
    """What botocore's resolver answers: its result, or the error it raises."""
    try:
        return getattr(resolver, method)(*args, **kwargs)
    except Exception as e:  # an unsupported variant raises: the same error must come from both
        return (type(e).__name__, str(e))


def test_the_endpoint_data_resolves_dynamodb_as_botocores_does_in_every_partition_and_region():
    full, ours = installed_endpoints(), json.loads(ENDPOINTS_PATH.read_text())
    assert [{k: v for k, v in p.items() if k != "services"} for p in ours["partitions"]] == [
        {k: v for k, v in p.items() if k != "services"} for p in full["partitions"]
    ]
    assert all(set(p["services"]) == {"dynamodb"} for p in ours["partitions"])
    botocores, gates = EndpointResolver(full), EndpointResolver(ours)
    assert gates.get_available_partitions() == botocores.get_available_partitions()
    regions = {r for p in full["partitions"] for r in p["regions"]} | {"local", "us-east-1-fips", "eu-nowhere-9"}
    variants = [{}, {"use_fips_endpoint": True}, {"use_dualstack_endpoint": True}]
    for partition in botocores.get_available_partitions():
        assert gates.get_available_endpoints("dynamodb", partition) == botocores.get_available_endpoints(
            "dynamodb", partition
        )
    for region in sorted(regions):
        assert resolved(gates, "get_partition_for_region", region) == resolved(
            botocores, "get_partition_for_region", region
        )
        for variant in variants:
            asked = ("construct_endpoint", "dynamodb", region)
            assert resolved(gates, *asked, **variant) == resolved(botocores, *asked, **variant), (region, variant)


def test_the_gates_client_loads_the_trimmed_model_and_botocores_endpoint_rules():
    client = dynamodb.client()
    assert client.meta.service_model.operation_names == ["GetItem", "UpdateItem"]
    assert not hasattr(client, "put_item")
    session_loader = dynamodb.DynamoDBLoader(extra_search_paths=[str(dynamodb.DATA_PATH)])
    _, model_file = session_loader.load_data_with_path("dynamodb/2012-08-10/service-2")
    _, rules_file = session_loader.load_data_with_path("dynamodb/2012-08-10/endpoint-rule-set-1")
    assert model_file == str(TRIMMED_FILE.with_suffix(""))
    assert session_loader.is_builtin_path(rules_file)
    _, endpoints_file = session_loader.load_data_with_path("endpoints")
    assert endpoints_file == str(ENDPOINTS_PATH.with_suffix(""))
    _, partitions_file = session_loader.load_data_with_path("partitions")
    assert session_loader.is_builtin_path(partitions_file)  # botocore's endpoint rules decide, as for any client


def test_the_loader_knows_dynamodb_as_botocores_does_and_no_other_service():
    ours = dynamodb.DynamoDBLoader(extra_search_paths=[str(dynamodb.DATA_PATH)])
    botocores = Loader(extra_search_paths=[str(dynamodb.DATA_PATH)])
    for type_name in ("service-2", "endpoint-rule-set-1"):
        assert ours.list_available_services(type_name) == ["dynamodb"]
        assert "dynamodb" in botocores.list_available_services(type_name)
        assert ours.determine_latest_version("dynamodb", type_name) == botocores.determine_latest_version(
            "dynamodb", type_name
        )
    assert ours.load_service_model("dynamodb", "endpoint-rule-set-1") == botocores.load_service_model(
        "dynamodb", "endpoint-rule-set-1"
    )


def test_aws_data_path_still_applies_after_the_trimmed_model(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_DATA_PATH", f"{tmp_path}{os.pathsep}~/models")
    import botocore.session

    paths = dynamodb.search_paths(botocore.session.Session())
    assert paths == [str(dynamodb.DATA_PATH), str(tmp_path), os.path.expanduser("~/models")]
