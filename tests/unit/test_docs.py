"""The docs that come from the models are current, and the JSON Schema accepts real configs.

- docs/meshgate.schema.json and the option tables in docs/ must equal what
  scripts/gen_docs.py generates from the pydantic models now;
- the schema accepts the README example, the demo's generated config and every
  complete YAML example in docs/ (each of which ``load_config`` accepts too), and
  rejects some broken files.

Validation uses the ``jsonschema`` package when it is installed. It is not a
dependency of meshgate, so otherwise a small validator below checks the keywords
the generated schema uses, and fails on any keyword it does not implement rather
than skipping it.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from gateway.cli import main
from gateway.config import load_config
from gateway.demo import _Brokers, _config_text
from gateway.errors import ConfigError
from gateway.schema import bundled_connector_types, config_schema, option_tables

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "docs" / "meshgate.schema.json"
CONNECTOR_PAGES = ("kafka", "amqp", "mqtt", "nats")
INVALID_MARK = "# invalid on purpose"
REGENERATE = "run: .venv/bin/python scripts/gen_docs.py"


def _gen_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return loaded


# -- generated files are current -------------------------------------------------------


def test_generated_docs_match_the_models() -> None:
    gen_docs = _gen_docs()
    stale = gen_docs.stale_files(gen_docs.expected_files(ROOT), ROOT)
    assert not stale, f"out of date with the models: {[str(p) for p in stale]}; {REGENERATE}"


def test_every_builtin_connector_page_has_the_same_sections() -> None:
    headings = {}
    for name in CONNECTOR_PAGES:
        text = (ROOT / "docs" / "connectors" / f"{name}.md").read_text(encoding="utf-8")
        assert "<!-- options:begin -->" in text and "<!-- options:end -->" in text
        headings[name] = re.findall(r"^## (.+)$", text, flags=re.MULTILINE)
    first = headings[CONNECTOR_PAGES[0]]
    assert len(first) >= 8
    for name, found in headings.items():
        assert found == first, f"docs/connectors/{name}.md sections differ from kafka.md"


def test_secrets_are_shown_as_secret(schema: dict[str, Any]) -> None:
    assert "| `sasl_password` | secret |" in option_tables("kafka")
    assert "| `password` | secret |" in option_tables("mqtt")
    password = schema["$defs"]["KafkaOptions"]["properties"]["sasl_password"]["anyOf"][0]
    assert password == {"format": "password", "type": "string", "writeOnly": True}


# -- the schema's shape ------------------------------------------------------------------


def test_schema_shape(schema: dict[str, Any]) -> None:
    assert isinstance(schema, dict)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(schema["properties"]) == {"gateway", "connectors", "routes"}
    assert schema["required"] == ["gateway", "connectors", "routes"]
    assert "$defs" in schema
    branches = schema["$defs"]["Connector"]["oneOf"]
    types = [branch["allOf"][1]["properties"]["type"]["const"] for branch in branches]
    assert types == bundled_connector_types()
    assert {"kafka", "amqp", "mqtt", "nats"} <= set(types)
    route = schema["$defs"]["RouteSection"]["properties"]
    assert len(route["from"]["anyOf"]) == len(types)
    assert len(route["to"]["items"]["anyOf"]) == len(types)
    assert {"type": "null"} in route["dead_letter"]["anyOf"]


def test_cli_prints_and_writes_the_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schema"]) == 0
    printed = capsys.readouterr().out
    assert json.loads(printed) == config_schema()
    output = tmp_path / "schema.json"
    assert main(["schema", "--output", str(output)]) == 0
    assert output.read_text(encoding="utf-8") == printed


# -- the schema accepts real configs --------------------------------------------------------


def _yaml_blocks(text: str) -> Iterator[str]:
    yield from re.findall(r"^```yaml\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def _complete_configs(text: str) -> list[str]:
    return [block for block in _yaml_blocks(text) if re.search(r"^gateway:", block, re.M)]


def test_schema_accepts_the_readme_example(
    schema: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (example, *_) = _complete_configs((ROOT / "README.md").read_text(encoding="utf-8"))
    assert_valid(schema, yaml.safe_load(example))
    monkeypatch.setenv("RABBIT_PASSWORD", "guest")
    path = tmp_path / "readme.yaml"
    path.write_text(example, encoding="utf-8")
    load_config(path)


@pytest.mark.parametrize("mqtt", [True, False])
@pytest.mark.parametrize("amqp", [True, False])
def test_schema_accepts_the_demo_config(
    schema: dict[str, Any], tmp_path: Path, mqtt: bool, amqp: bool
) -> None:
    brokers = _Brokers(
        kafka="127.0.0.1:39092",
        nats="nats://127.0.0.1:4222",
        mqtt=("127.0.0.1", 1883) if mqtt else None,
        amqp="amqp://guest:guest@127.0.0.1:5672/" if amqp else None,
    )
    text = _config_text(brokers, "a1b2c3")
    assert_valid(schema, yaml.safe_load(text))
    path = tmp_path / "demo.yaml"
    path.write_text(text, encoding="utf-8")
    load_config(path)


def _doc_examples() -> Iterator[Any]:
    for page in sorted((ROOT / "docs").rglob("*.md")):
        for index, block in enumerate(_complete_configs(page.read_text(encoding="utf-8"))):
            name = f"{page.relative_to(ROOT)}#{index + 1}"
            yield pytest.param(block, id=name)


@pytest.mark.parametrize("block", list(_doc_examples()))
def test_doc_examples_are_what_they_claim(
    block: str, schema: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Complete examples in docs/ load (or, marked invalid on purpose, are rejected)."""
    for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", block):
        monkeypatch.setenv(name, "from-the-environment")
    path = tmp_path / "example.yaml"
    path.write_text(block, encoding="utf-8")
    if block.startswith(INVALID_MARK):
        with pytest.raises(ConfigError):
            load_config(path)
        return
    load_config(path)
    assert_valid(schema, yaml.safe_load(block))


def test_docs_have_complete_examples() -> None:
    assert len(list(_doc_examples())) >= 5


BROKEN = {
    "unknown top-level key": {
        "gateway": {"id": "g"},
        "connectors": {"c": {"type": "nats"}},
        "routes": [
            {
                "name": "r",
                "from": {"connector": "c", "subject": "a"},
                "to": [{"connector": "c", "subject": "b"}],
            }
        ],
        "extra": 1,
    },
    "unknown connector type": {
        "gateway": {"id": "g"},
        "connectors": {"c": {"type": "kafak", "bootstrap_servers": "h:1"}},
        "routes": [
            {
                "name": "r",
                "from": {"connector": "c", "topics": ["t"], "group_id": "g"},
                "to": [{"connector": "c", "topic": "u"}],
            }
        ],
    },
    "option of another type": {
        "gateway": {"id": "g"},
        "connectors": {"c": {"type": "nats", "bootstrap_servers": "h:1"}},
        "routes": [
            {
                "name": "r",
                "from": {"connector": "c", "subject": "a"},
                "to": [{"connector": "c", "subject": "b"}],
            }
        ],
    },
    "route without targets": {
        "gateway": {"id": "g"},
        "connectors": {"c": {"type": "nats"}},
        "routes": [{"name": "r", "from": {"connector": "c", "subject": "a"}, "to": []}],
    },
    "wrong value type": {
        "gateway": {"id": "g"},
        "connectors": {"c": {"type": "nats"}},
        "routes": [
            {
                "name": "r",
                "from": {"connector": "c", "subject": "a"},
                "to": [{"connector": "c", "subject": "b"}],
                "max_in_flight": "lots",
            }
        ],
    },
    "filter with two dialects": {
        "gateway": {"id": "g"},
        "connectors": {"c": {"type": "nats"}},
        "routes": [
            {
                "name": "r",
                "from": {"connector": "c", "subject": "a"},
                "to": [{"connector": "c", "subject": "b"}],
                "filters": {"exact": {"type": "x"}, "prefix": {"type": "y"}},
            }
        ],
    },
}


@pytest.mark.parametrize("document", list(BROKEN.values()), ids=list(BROKEN))
def test_schema_rejects_broken_files(schema: dict[str, Any], document: Any) -> None:
    assert _errors(schema, document), "the schema accepted a broken file"


# -- validation ------------------------------------------------------------------------------


def assert_valid(schema: dict[str, Any], document: Any) -> None:
    errors = _errors(schema, document)
    assert not errors, "\n".join(errors[:20])


def _errors(schema: dict[str, Any], document: Any) -> list[str]:
    try:
        import jsonschema  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        return _Validator(schema).errors(document, schema, "")
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]


_ANNOTATIONS = frozenset(
    {
        "$schema",
        "$comment",
        "$defs",
        "title",
        "description",
        "default",
        "examples",
        "format",
        "writeOnly",
        "readOnly",
        "deprecated",
    }
)
_TYPES: Mapping[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, float) and math.isfinite(v) and v.is_integer())
    ),
}


def _same(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


class _Validator:
    """JSON Schema 2020-12, limited to the keywords the generated schema uses."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root

    def resolve(self, ref: str) -> Any:
        assert ref.startswith("#/"), f"only local references are supported: {ref}"
        node: Any = self.root
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def errors(self, value: Any, schema: Any, at: str) -> list[str]:
        if schema is True or schema == {}:
            return []
        if schema is False:
            return [f"{at}: no value allowed"]
        out: list[str] = []
        for keyword, rule in schema.items():
            if keyword in _ANNOTATIONS:
                continue
            check = getattr(self, "k_" + keyword.lstrip("$"), None)
            if check is None:
                raise AssertionError(f"the test validator does not implement {keyword!r}")
            out += check(value, rule, at, schema)
        return out

    def k_ref(self, value: Any, rule: str, at: str, _s: Any) -> list[str]:
        return self.errors(value, self.resolve(rule), at)

    def k_type(self, value: Any, rule: Any, at: str, _s: Any) -> list[str]:
        kinds = [rule] if isinstance(rule, str) else rule
        if any(_TYPES[kind](value) for kind in kinds):
            return []
        return [f"{at}: expected {rule}, got {value!r}"]

    def k_enum(self, value: Any, rule: list[Any], at: str, _s: Any) -> list[str]:
        return [] if any(_same(value, x) for x in rule) else [f"{at}: {value!r} not in {rule}"]

    def k_const(self, value: Any, rule: Any, at: str, _s: Any) -> list[str]:
        return [] if _same(value, rule) else [f"{at}: {value!r} is not {rule!r}"]

    def k_allOf(self, value: Any, rule: list[Any], at: str, _s: Any) -> list[str]:
        return [e for branch in rule for e in self.errors(value, branch, at)]

    def k_anyOf(self, value: Any, rule: list[Any], at: str, _s: Any) -> list[str]:
        found = [self.errors(value, branch, at) for branch in rule]
        if any(not errors for errors in found):
            return []
        best = min(found, key=len)
        return [f"{at}: matches no anyOf branch; closest: {best[:3]}"]

    def k_oneOf(self, value: Any, rule: list[Any], at: str, _s: Any) -> list[str]:
        found = [self.errors(value, branch, at) for branch in rule]
        matching = sum(1 for errors in found if not errors)
        if matching == 1:
            return []
        if matching > 1:
            return [f"{at}: matches {matching} oneOf branches"]
        return [f"{at}: matches no oneOf branch; closest: {min(found, key=len)[:3]}"]

    def k_not(self, value: Any, rule: Any, at: str, _s: Any) -> list[str]:
        return [f"{at}: must not match {rule}"] if not self.errors(value, rule, at) else []

    def k_properties(self, value: Any, rule: dict[str, Any], at: str, _s: Any) -> list[str]:
        if not isinstance(value, dict):
            return []
        return [
            e
            for key, sub in rule.items()
            if key in value
            for e in self.errors(value[key], sub, f"{at}.{key}")
        ]

    def k_required(self, value: Any, rule: list[str], at: str, _s: Any) -> list[str]:
        if not isinstance(value, dict):
            return []
        return [f"{at}: required key {key!r} missing" for key in rule if key not in value]

    def k_additionalProperties(self, value: Any, rule: Any, at: str, s: Any) -> list[str]:
        if not isinstance(value, dict):
            return []
        extra = [key for key in value if key not in s.get("properties", {})]
        if rule is False:
            return [f"{at}: unknown key {key!r}" for key in extra]
        return [e for key in extra for e in self.errors(value[key], rule, f"{at}.{key}")]

    def k_propertyNames(self, value: Any, rule: Any, at: str, _s: Any) -> list[str]:
        if not isinstance(value, dict):
            return []
        return [e for key in value for e in self.errors(key, rule, f"{at}.{key} (name)")]

    def k_minProperties(self, value: Any, rule: int, at: str, _s: Any) -> list[str]:
        short = isinstance(value, dict) and len(value) < rule
        return [f"{at}: needs at least {rule} keys"] if short else []

    def k_items(self, value: Any, rule: Any, at: str, _s: Any) -> list[str]:
        if not isinstance(value, list):
            return []
        return [e for i, item in enumerate(value) for e in self.errors(item, rule, f"{at}[{i}]")]

    def k_minItems(self, value: Any, rule: int, at: str, _s: Any) -> list[str]:
        short = isinstance(value, list) and len(value) < rule
        return [f"{at}: needs at least {rule} items"] if short else []

    def k_maxItems(self, value: Any, rule: int, at: str, _s: Any) -> list[str]:
        long = isinstance(value, list) and len(value) > rule
        return [f"{at}: at most {rule} items"] if long else []

    def k_minLength(self, value: Any, rule: int, at: str, _s: Any) -> list[str]:
        short = isinstance(value, str) and len(value) < rule
        return [f"{at}: shorter than {rule}"] if short else []

    def k_maxLength(self, value: Any, rule: int, at: str, _s: Any) -> list[str]:
        long = isinstance(value, str) and len(value) > rule
        return [f"{at}: longer than {rule}"] if long else []

    def k_pattern(self, value: Any, rule: str, at: str, _s: Any) -> list[str]:
        bad = isinstance(value, str) and re.search(rule, value) is None
        return [f"{at}: {value!r} does not match {rule}"] if bad else []

    def _compare(self, value: Any, ok: bool, text: str, at: str) -> list[str]:
        number = _TYPES["number"](value)
        return [f"{at}: {value!r} {text}"] if number and not ok else []

    def k_minimum(self, value: Any, rule: float, at: str, _s: Any) -> list[str]:
        return self._compare(value, _TYPES["number"](value) and value >= rule, f"< {rule}", at)

    def k_maximum(self, value: Any, rule: float, at: str, _s: Any) -> list[str]:
        return self._compare(value, _TYPES["number"](value) and value <= rule, f"> {rule}", at)

    def k_exclusiveMinimum(self, value: Any, rule: float, at: str, _s: Any) -> list[str]:
        return self._compare(value, _TYPES["number"](value) and value > rule, f"<= {rule}", at)

    def k_exclusiveMaximum(self, value: Any, rule: float, at: str, _s: Any) -> list[str]:
        return self._compare(value, _TYPES["number"](value) and value < rule, f">= {rule}", at)
