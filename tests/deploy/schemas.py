"""The vendored JSON Schemas (tests/schemas/) and the checks the deployment tests share."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


def asyncapi_validator() -> jsonschema.Draft7Validator:
    schema = json.loads((SCHEMAS / "asyncapi-3.0.0.json").read_text(encoding="utf-8"))
    return jsonschema.Draft7Validator(schema)


def compose_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def schema_errors(validator: Any, document: Any) -> str:
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    return "\n".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in errors[:10]
    )


def assert_valid_asyncapi(validator: jsonschema.Draft7Validator, document: Any) -> None:
    """The schema, plus what an AsyncAPI parser checks and a JSON Schema cannot."""
    errors = schema_errors(validator, document)
    assert not errors, errors
    for ref in _refs(document):
        resolve_ref(document, ref)
    for key, operation in document["operations"].items():
        channel_ref = operation["channel"]["$ref"]
        for message in operation["messages"]:
            assert message["$ref"].startswith(channel_ref + "/messages/"), (key, message)
    for key, channel in document["channels"].items():
        expressions = set(re.findall(r"\{([^{}]+)\}", channel["address"] or ""))
        assert expressions == set(channel.get("parameters", {})), key


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def resolve_ref(document: Any, ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"unresolved $ref {ref}"
        node = node[part]
    return node
