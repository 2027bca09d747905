"""The API, described: the OpenAPI schema (drf-spectacular) at `/api/schema/`, its docs page at `/api/docs/`.

Every DRF door is in it (the token endpoint, the balance API, API keys, the store's webhooks);
the views say what they answer with `extend_schema`, and the doors' authentication classes are
described here (`OpenApiAuthenticationExtension`), once. The committed `docs/openapi.yaml` is this
schema as generated (`make schema`); tests/test_openapi.py fails when they differ, and
tests/test_openapi_live.py has schemathesis call the live API and check every answer against it.

The docs page is rendered here from the schema, without JavaScript: the site's Content-Security-Policy
allows no inline or outside scripts, which Swagger UI and Redoc need.
"""

import json
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_safe
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.utils import OpenApiResponse

# --- What the doors answer when they refuse -------------------------------------------------

DETAIL = {
    "type": "object",
    "properties": {"detail": {"type": "string", "description": "What is wrong, in the API's words."}},
    "required": ["detail"],
}
FIELD_ERRORS = {
    "type": "object",
    "description": (
        "Field errors: each field named, with its messages (`non_field_errors` for the body as a whole; a "
        "list's by item index); or `detail` when the body could not be read at all."
    ),
    "additionalProperties": {
        "oneOf": [
            {"type": "array", "items": {"type": "string"}},
            {"type": "string"},
            {
                "type": "object",
                "description": "A list's errors, by the index of each item that is wrong.",
                "additionalProperties": {"type": "array", "items": {"type": "string"}},
            },
        ]
    },
}
OAUTH_ERROR = {
    "type": "object",
    "description": "An RFC 6749 section 5.2 error.",
    "properties": {
        "error": {
            "type": "string",
            "enum": ["invalid_request", "invalid_client", "invalid_grant", "unsupported_grant_type", "invalid_scope"],
        },
        "error_description": {"type": "string"},
    },
    "required": ["error", "error_description"],
}


def detail(description: str) -> OpenApiResponse:
    return OpenApiResponse(response=DETAIL, description=description)


def field_errors(description: str = "Bad input: nothing was written.") -> OpenApiResponse:
    return OpenApiResponse(response=FIELD_ERRORS, description=description)


UNAUTHENTICATED = detail("No valid access token (missing, expired, forged, revoked, or its customer suspended).")


# --- The doors' authentication ------------------------------------------------------------------


class AccessTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.AccessTokenAuthentication"
    name = "accessToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "An access token from POST /api/token/ (valid 5 minutes). API keys do not open these doors.",
        }


class ClientCredentialsScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.ClientCredentialsAuthentication"
    name = "clientCredentials"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "basic",
            "description": "client_id and client_secret with HTTP Basic, or as client_id and client_secret in the body.",
        }


class ZapierSecretScheme(OpenApiAuthenticationExtension):
    target_class = "ledger.authentication.ZapierWebhookAuthentication"
    name = "zapierSecret"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {"type": "http", "scheme": "bearer", "description": "The shared ZAPIER_WEBHOOK_SECRET."}


# --- The Shopify door (a plain Django view: it reads the raw body, whose HMAC it checks) ----------

_ID = {"type": "string"}
_SHOPIFY_ANSWERS = {
    "order": {
        "type": "object",
        "properties": {
            "topic": {"type": "string", "enum": ["orders/paid"]},
            "order_id": _ID,
            "lines": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "line_id": _ID,
                        "status": {"type": "string", "enum": ["applied", "unmatched", "no_email", "other"]},
                        "credits": {"type": "integer"},
                        "recorded_before": {"type": "boolean"},
                    },
                    "required": ["line_id", "status", "credits", "recorded_before"],
                },
            },
            "webhook_id": {"type": "string"},
            "redelivery": {"type": "boolean"},
        },
        "required": ["topic", "order_id", "lines", "webhook_id", "redelivery"],
    },
    "refund": {
        "type": "object",
        "properties": {
            "topic": {"type": "string", "enum": ["refunds/create", "orders/cancelled"]},
            "refund_id": _ID,
            "order_id": _ID,
            "duplicate": {"type": "boolean"},
            "credits_taken": {"type": "integer"},
            "credits_spent": {"type": "integer"},
            "webhook_id": {"type": "string"},
            "redelivery": {"type": "boolean"},
        },
        "required": ["topic", "refund_id", "order_id", "duplicate", "credits_taken", "credits_spent"],
    },
    "ignored": {
        "type": "object",
        "properties": {"topic": {"type": "string"}, "ignored": {"type": "boolean", "enum": [True]}},
        "required": ["topic", "ignored"],
    },
}


def _header(name: str, description: str, *, required: bool = False) -> dict[str, Any]:
    return {
        "in": "header",
        "name": name,
        "required": required,
        "schema": {"type": "string"},
        "description": description,
    }


def _detail(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": DETAIL}}}


SHOPIFY_DOOR = {
    "post": {
        "operationId": "purchases_shopify",
        "summary": "Shopify's own webhooks: orders/paid, refunds/create, orders/cancelled",
        "description": (
            "Signed by Shopify: X-Shopify-Hmac-Sha256 is the base64 HMAC-SHA256 of the raw body under "
            "SHOPIFY_WEBHOOK_SECRET. X-Shopify-Topic picks the handling; other topics are answered and "
            "ignored. A redelivery (an X-Shopify-Webhook-Id seen before) changes nothing. The body is "
            "Shopify's Order resource (orders/paid, orders/cancelled) or Refund resource (refunds/create)."
        ),
        "tags": ["webhooks"],
        "security": [{"shopifyHmac": []}],
        "parameters": [
            _header("X-Shopify-Topic", "orders/paid, refunds/create or orders/cancelled; others are ignored."),
            _header("X-Shopify-Webhook-Id", "The delivery's id: a redelivery is recognised by it."),
            _header("X-Shopify-Shop-Domain", "The shop, recorded with the delivery."),
        ],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object", "description": "Order or Refund."}}},
        },
        "responses": {
            "200": {
                "description": "Handled, a redelivery, or a topic not handled here.",
                "content": {"application/json": {"schema": {"oneOf": list(_SHOPIFY_ANSWERS.values())}}},
            },
            "400": _detail("Not the resource its topic names (or not JSON): nothing written."),
            "401": _detail("X-Shopify-Hmac-Sha256 missing or wrong: nothing read."),
            "409": _detail("A line the Zapier door recorded with other content."),
            "413": _detail("A body over SHOPIFY_WEBHOOK_MAX_BYTES."),
            "503": _detail(
                "The gate's balances could not be read (a refund needs them), or a concurrent write broke the "
                "transaction off twice: nothing written; Shopify retries."
            ),
        },
    }
}


def add_shopify_door(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: the Shopify door, which is no DRF view, described by hand."""
    result["paths"]["/api/purchases/shopify/"] = SHOPIFY_DOOR
    result["paths"] = dict(sorted(result["paths"].items()))
    result.setdefault("components", {}).setdefault("securitySchemes", {})["shopifyHmac"] = {
        "type": "apiKey",
        "in": "header",
        "name": "X-Shopify-Hmac-Sha256",
        "description": "The base64 HMAC-SHA256 of the raw body under SHOPIFY_WEBHOOK_SECRET.",
    }
    return result


# --- The docs page ------------------------------------------------------------------------------

METHODS = ("get", "post", "put", "patch", "delete")


def _resolve(schema: dict[str, Any], node: Any) -> Any:
    """`node` with its `$ref`s (to components) replaced by what they name, for the page to show."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/"):
            target: Any = schema
            for part in ref.removeprefix("#/").split("/"):
                target = target[part]
            return _resolve(schema, target)
        return {k: _resolve(schema, v) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(schema, v) for v in node]
    return node


def _answer_schema(answer: dict[str, Any]) -> Any:
    """The schema of an answer's (first) content type."""
    content: dict[str, dict[str, Any]] = answer.get("content", {})
    for media in content.values():
        return media.get("schema")
    return None


def _operations(schema: dict[str, Any]) -> list[dict[str, Any]]:
    operations = []
    for path, item in schema.get("paths", {}).items():
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            body = operation.get("requestBody", {}).get("content", {})
            operations.append(
                {
                    "id": operation.get("operationId", f"{method}-{path}"),
                    "method": method.upper(),
                    "path": path,
                    "summary": operation.get("summary", ""),
                    "description": operation.get("description", ""),
                    "security": [name for option in operation.get("security", []) for name in option],
                    "parameters": operation.get("parameters", []),
                    "body": [
                        (media, json.dumps(_resolve(schema, content.get("schema", {})), indent=2))
                        for media, content in body.items()
                    ],
                    "responses": [
                        (
                            status,
                            answer.get("description", ""),
                            json.dumps(_resolve(schema, _answer_schema(answer)), indent=2)
                            if answer.get("content")
                            else "",
                        )
                        for status, answer in operation.get("responses", {}).items()
                    ],
                }
            )
    return operations


@require_safe
@cache_control(public=True, max_age=300)
def docs(request: HttpRequest) -> HttpResponse:
    """`GET /api/docs/`: every operation of the schema, its input and its answers, as one page."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return render(
        request,
        "api/docs.html",
        {
            "info": schema["info"],
            "operations": _operations(schema),
            "schemes": schema.get("components", {}).get("securitySchemes", {}),
        },
    )
