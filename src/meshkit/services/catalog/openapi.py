"""The catalog's OpenAPI 3.1 document, generated from its declared endpoints and the SDK's models.

The result is committed as ``catalog_sdk/openapi.json`` (a test fails when it
drifts). Regenerate after changing an endpoint or a model::

    python -m meshkit.services.catalog.openapi > src/meshkit/services/catalog_sdk/openapi.json
    python -m meshkit.services.catalog.openapi --write      # the same, into the installed SDK package
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from meshkit.services.catalog import sdkdoc
from meshkit.services.catalog.transport.routes import API_VERSION, ENDPOINTS, Endpoint

_REF = "#/components/schemas/{model}"

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["reason", "message"],
            "properties": {
                "reason": {"type": "string", "description": "stable machine-readable cause, e.g. duplicate_sku"},
                "message": {"type": "string", "description": "what went wrong and what to do"},
                "details": {"description": "per-field problems (422: list of {loc, message, type}) or context"},
            },
        }
    },
}


def document() -> dict[str, Any]:
    """The OpenAPI document as a dict."""
    models = _models()
    _, defs = models_json_schema([(m, "validation") for m in models], ref_template=_REF)
    schemas = dict(defs.get("$defs", {}))
    schemas["Error"] = _ERROR
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in ENDPOINTS:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "meshkit catalog",
            "version": API_VERSION,
            "description": (
                "Products of the shop. Optimistic concurrency: every product has a version, "
                "returned as its ETag; PATCH and DELETE take If-Match (or a version field) "
                "and answer 412 version_mismatch when it is stale."
            ),
        },
        "paths": paths,
        "components": {"schemas": schemas},
    }


def render() -> bytes:
    """The document as the bytes committed in the SDK (sorted keys, 2-space indent, final newline)."""
    return orjson.dumps(document(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def sdk_path() -> Path:
    """Where the committed document lives: ``catalog_sdk/openapi.json``."""
    return sdkdoc.sdk_file("openapi.json")


def _models() -> list[type[BaseModel]]:
    seen: dict[str, type[BaseModel]] = {}
    for e in ENDPOINTS:
        for m in (e.body, e.response):
            if m is not None:
                seen[m.__name__] = m
    return [seen[k] for k in sorted(seen)]


def _operation(e: Endpoint) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": f"{e.handler}_product" if "{id}" in e.path else f"{e.handler}_products",
                          "summary": e.summary, "parameters": []}
    if "{id}" in e.path:
        op["parameters"].append({"name": "id", "in": "path", "required": True, "schema": {"type": "string"}})
    if e.query is not None:
        schema = e.query.model_json_schema(ref_template=_REF)
        for name, prop in schema["properties"].items():
            op["parameters"].append(
                {"name": name, "in": "query", "required": name in schema.get("required", []), "schema": prop}
            )
    for name, description in e.headers.items():
        op["parameters"].append(
            {"name": name, "in": "header", "required": False, "description": description, "schema": {"type": "string"}}
        )
    if e.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": _REF.format(model=e.body.__name__)}}},
        }
    success: dict[str, Any] = {"description": e.summary}
    if e.response is not None:
        success["content"] = {"application/json": {"schema": {"$ref": _REF.format(model=e.response.__name__)}}}
    if e.response_headers:
        success["headers"] = {
            name: {"description": d, "schema": {"type": "string"}} for name, d in e.response_headers.items()
        }
    responses: dict[str, Any] = {str(e.status): success}
    for status, description in e.errors.items():
        if status < 400:
            responses[str(status)] = {"description": description}
        else:
            responses[str(status)] = {
                "description": description,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
    op["responses"] = responses
    return op


def main(argv: list[str] | None = None) -> int:
    """Print the document, or with ``--write`` store it in the SDK package."""
    return sdkdoc.cli(argv, render, "openapi.json")


if __name__ == "__main__":
    raise SystemExit(main())
