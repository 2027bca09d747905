"""The OpenAPI schema: the committed docs/openapi.yaml is what the views generate (CI fails when a door
changes and the file does not: `make schema`), it is valid OpenAPI without a warning, it is served at
/api/schema/, it names every DRF door, and /api/docs/ shows each operation without any script.
What the live API answers against it is tests/test_openapi_live.py's."""

import io
import re
from pathlib import Path

import yaml
from django.core.management import call_command
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.views import APIView

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "docs" / "openapi.yaml"


def generated(tmp_path) -> str:
    out = tmp_path / "openapi.yaml"
    # --validate: against the OpenAPI 3 JSON schema; --fail-on-warn: a view drf-spectacular cannot read fails too.
    call_command("spectacular", "--file", str(out), "--validate", "--fail-on-warn", stdout=io.StringIO())
    return out.read_text()


def test_the_committed_schema_is_the_one_the_views_generate(tmp_path, db):
    assert generated(tmp_path) == COMMITTED.read_text(), (
        "docs/openapi.yaml is not what the API's views describe: run `make schema` and commit it"
    )


def _drf_paths(patterns, prefix: str = "") -> set[str]:
    paths = set()
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            paths |= _drf_paths(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern) and issubclass(getattr(pattern.callback, "cls", object), APIView):
            paths.add("/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", prefix + str(pattern.pattern)))
    return paths


def test_every_drf_door_is_described():
    schema = yaml.safe_load(COMMITTED.read_text())
    doors = _drf_paths(get_resolver().url_patterns)

    assert {"/api/token/", "/api/balance/", "/api/keys/", "/api/keys/{key_id}/", "/api/purchases/zapier/"} <= doors
    # The schema itself is not a door of the API; the Shopify door, a plain Django view, is described by hand.
    assert doors - {"/api/schema/"} | {"/api/purchases/shopify/"} == set(schema["paths"])
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            assert operation.get("summary"), f"{method.upper()} {path} has no summary"
            assert any(code.startswith("4") for code in operation["responses"]), f"{method.upper()} {path}: no 4xx"


def test_the_schema_is_served(client, db):
    as_yaml = client.get("/api/schema/")
    as_json = client.get("/api/schema/?format=json")

    assert as_yaml.status_code == as_json.status_code == 200
    assert as_yaml["Content-Type"].startswith("application/vnd.oai.openapi")
    assert yaml.safe_load(as_yaml.content) == as_json.json() == yaml.safe_load(COMMITTED.read_text())


def test_the_docs_page_shows_every_operation_without_scripts(client, db):
    response = client.get("/api/docs/")

    assert response.status_code == 200
    page = response.content.decode()
    schema = yaml.safe_load(COMMITTED.read_text())
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            assert f"<code>{method.upper()} {path}</code>" in page
            assert f'id="{operation["operationId"]}"' in page
    assert "<script" not in page
    assert "'unsafe-inline'" not in response["Content-Security-Policy"]
    assert "accessToken" in page and "clientCredentials" in page
