"""Every response the tests see is checked against the committed OpenAPI document."""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from syncd.api.app import openapi_document

URN = "urn:syncd:openapi"


@cache
def _registry() -> tuple[dict[str, Any], Registry[Any]]:
    document = json.loads(
        json.dumps(openapi_document()).replace('"#/components/', f'"{URN}#/components/')
    )
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    return document, Registry().with_resource(URN, resource)


def _template(document: dict[str, Any], path: str) -> str:
    for template in document["paths"]:
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path):
            return str(template)
    raise AssertionError(f"{path} is not in the OpenAPI document")


def check(method: str, path: str, status: int, content_type: str, body: bytes) -> None:
    """Fail when (status, content type, body) is not what the document says `method path`
    answers."""
    document, registry = _registry()
    template = _template(document, path.split("?", 1)[0])
    operation = document["paths"][template].get(method.lower())
    assert operation is not None, f"{method} {template} is not in the OpenAPI document"
    responses = operation["responses"]
    response = responses.get(str(status))
    assert response is not None, f"{method} {path} answered {status}, not documented"
    if "$ref" in response:
        name = response["$ref"].rsplit("/", 1)[-1]
        response = document["components"]["responses"][name]
    content = response.get("content")
    if not content:
        return
    media = content_type.split(";")[0].strip()
    assert media in content, (
        f"{method} {path} {status}: {media} is not documented ({list(content)})"
    )
    schema = content[media].get("schema", {})
    if (media == "application/json" or media.endswith("+json")) and schema:
        Draft202012Validator(schema, registry=registry).validate(json.loads(body))
