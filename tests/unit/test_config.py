"""Config loading: every broken file is rejected with file, line, column and what was expected."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError

GOOD = """\
gateway: {id: edge-1}
connectors:
  mem: {type: memory}
routes:
  - name: r1
    from: {connector: mem, topic: in}
    to:
      - {connector: mem, topic: "out.{type}"}
    dead_letter: {connector: mem, topic: dlq}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gw.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return [str(p).replace(str(path), "gw.yaml") for p in caught.value.problems]


def test_good_config_compiles(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    (route,) = config.table.routes
    assert route.name == "r1"
    assert route.targets[0].templates["topic"].references == ("type",)
    assert route.dead_letter is not None


def test_unknown_key_is_reported_with_line_and_column(tmp_path: Path) -> None:
    text = GOOD.replace("    from:", "    form: {connector: mem, topic: in}\n    from:")
    assert problems(tmp_path, text) == [
        "gw.yaml:6:5: routes[0].form: unknown key; did you mean 'from'?"
    ]


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    text = """\
    gateway: {id: edge-1}
    connectors:
      bad: {type: memory, colour: blue}
      k: {type: kafak}
      mem: {type: memory}
    routes:
      - name: r1
        from: {connector: nowhere, topic: in}
        to:
          - {connector: mem, topic: "out.{Type}"}
        filter: "type LIKE"
    """
    found = problems(tmp_path, text)
    assert found[0] == "gw.yaml:3:23: connectors.bad.colour: unknown key (got 'blue')"
    assert found[1].startswith("gw.yaml:4:7: connectors.k.type: unknown connector type 'kafak'")
    assert "did you mean 'kafka'?" in found[1]
    assert found[2] == (
        "gw.yaml:8:12: routes[0].from.connector: "
        "no connector named 'nowhere' (declared: bad, k, mem)"
    )
    assert found[3].startswith("gw.yaml:10:26: routes[0].to[0].topic: template 'out.{Type}':")
    assert found[4].startswith("gw.yaml:11:5: routes[0].filter: CESQL:")
    assert len(found) == 5


def test_missing_required_keys(tmp_path: Path) -> None:
    text = """\
    gateway: {}
    connectors:
      mem: {type: memory}
    routes:
      - from: {connector: mem}
        to: []
    """
    assert problems(tmp_path, text) == [
        "gw.yaml:1:1: gateway.id: required key is missing",
        "gw.yaml:5:5: routes[0].name: required key is missing",
        "gw.yaml:6:5: routes[0].to: List should have at least 1 item after validation, not 0",
    ]


def test_wrong_type_names_the_value(tmp_path: Path) -> None:
    text = GOOD.replace("    dead_letter:", "    max_in_flight: lots\n    dead_letter:")
    assert problems(tmp_path, text) == [
        "gw.yaml:9:5: routes[0].max_in_flight: Input should be a valid integer, "
        "unable to parse string as an integer (got 'lots')"
    ]


def test_yaml_syntax_error_has_position(tmp_path: Path) -> None:
    assert problems(tmp_path, "gateway: {id: x\nroutes: [") == [
        "gw.yaml:2:7: YAML syntax error: expected ',' or '}', but got ':'"
    ]


def test_duplicate_keys_and_route_names(tmp_path: Path) -> None:
    text = (
        GOOD
        + "  - name: r1\n    from: {connector: mem, topic: x}\n"
        + "    to: [{connector: mem, topic: y}]\n"
    )
    text = text.replace("gateway: {id: edge-1}", "gateway: {id: edge-1}\ngateway: {id: edge-2}")
    found = problems(tmp_path, text)
    assert found == ["gw.yaml:2:1: gateway: duplicate key (YAML would silently keep the last one)"]


def test_duplicate_route_name(tmp_path: Path) -> None:
    text = (
        GOOD
        + "  - name: r1\n    from: {connector: mem, topic: x}\n"
        + "    to: [{connector: mem, topic: y}]\n"
    )
    assert problems(tmp_path, text) == [
        "gw.yaml:10:5: routes[1].name: route name 'r1' is used twice"
    ]


def test_environment_interpolation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESH_TOPIC", "from-env")
    monkeypatch.delenv("MESH_MISSING", raising=False)
    text = GOOD.replace("topic: in}", 'topic: "${MESH_TOPIC}"}').replace(
        "topic: dlq", 'topic: "${MESH_DLQ:-dlq2}"'
    )
    config = load_config(write(tmp_path, text))
    route = config.table.routes[0]
    assert route.source.topic == "from-env"
    assert route.dead_letter is not None and route.dead_letter.options.topic == "dlq2"
    bad = GOOD.replace("topic: in}", 'topic: "${MESH_MISSING}"}')
    assert problems(tmp_path, bad) == [
        "gw.yaml:6:35: routes[0].from.topic: environment variable MESH_MISSING is not set "
        "(use ${MESH_MISSING:-default} for a default)"
    ]


def test_ingress_templates_cannot_use_event_attributes(tmp_path: Path) -> None:
    text = GOOD.replace("    to:", '    ingress: {type: "x.{type}", source: "s"}\n    to:', 1)
    (only,) = problems(tmp_path, text)
    assert only.startswith("gw.yaml:7:5: routes[0].ingress: template 'x.{type}': {type} refers to")


def test_secret_options_can_come_from_files(tmp_path: Path) -> None:
    secret = tmp_path / "nats-password"
    secret.write_text("s3cret\n")
    text = f"""\
    gateway: {{id: g}}
    connectors:
      n: {{type: nats, servers: ["nats://127.0.0.1:4222"], user: gw, password_file: "{secret}"}}
      mem: {{type: memory}}
    routes:
      - name: r
        from: {{connector: mem, topic: in}}
        to: [{{connector: n, subject: out}}]
    """
    config = load_config(write(tmp_path, text))
    _cls, options = config.connectors["n"]
    assert options.password.get_secret_value() == "s3cret"  # type: ignore[attr-defined]
    missing = text.replace(str(secret), str(tmp_path / "nope"))
    (only,) = problems(tmp_path, missing)
    column = textwrap.dedent(missing).splitlines()[2].index("password_file") + 1
    assert only.startswith(
        f"gw.yaml:3:{column}: connectors.n.password_file: cannot read the secret"
    )


def test_egress_rules_are_checked_at_load(tmp_path: Path) -> None:
    text = GOOD.replace(
        '{connector: mem, topic: "out.{type}"}',
        '{connector: mem, topic: "out.{type}", attributes: {remove: [id]}}',
    )
    (only,) = problems(tmp_path, text)
    assert only == (
        "gw.yaml:8:47: routes[0].to[0].attributes: "
        "'id' is a required attribute: it cannot be removed or renamed"
    )


def test_key_template_on_a_source_without_keys(tmp_path: Path) -> None:
    text = GOOD.replace('topic: "out.{type}"', 'topic: "out.{key}"')
    assert problems(tmp_path, text) == [
        "gw.yaml:8:26: routes[0].to[0].topic: template 'out.{key}' uses {key}, but messages "
        "from connector 'mem' (MemoryConnector) have no key"
    ]


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("FOO(type)", "no function FOO in CESQL (at position 0): CESQL v1 has ABS, BOOL,"),
        (
            "STARTSWITH(type, 'x')",
            "no function STARTSWITH in CESQL (at position 0): use `x LIKE 'prefix%'`",
        ),
        ("LOWR(type) = 'a'", "no function LOWR in CESQL (at position 0): did you mean LOWER?"),
        ("LOWER(type, source) = 'a'", "function LOWER takes 1 argument, not 2 (at position 0)"),
        ("SUBSTRING(type) = 'a'", "function SUBSTRING takes 2 or 3 arguments, not 1"),
    ],
)
def test_filter_calling_a_missing_function_is_an_error(
    tmp_path: Path, expression: str, message: str
) -> None:
    # CESQL evaluates these to false with an error: at run time every event would be
    # filtered out and acked. validate must say so.
    text = GOOD.replace("    dead_letter:", f'    filter: "{expression}"\n    dead_letter:')
    (problem,) = problems(tmp_path, text)
    assert problem.startswith("gw.yaml:9:5: routes[0].filter: CESQL: " + message), problem


def test_missing_function_inside_subscriptions_api_filters(tmp_path: Path) -> None:
    text = GOOD.replace(
        "    dead_letter:",
        "    filters: [{any: [{sql: \"CONCATT(type, 'x') = 'y'\"}]}]\n    dead_letter:",
    )
    (problem,) = problems(tmp_path, text)
    assert "routes[0].filters: CESQL: no function CONCATT" in problem
    assert "did you mean CONCAT?" in problem


def test_comparing_two_attributes_warns_to_quote_the_value(tmp_path: Path) -> None:
    from gateway.analysis import analyse

    text = GOOD.replace("    dead_letter:", '    filter: "severity = high"\n    dead_letter:')
    (warning,) = [str(f) for f in analyse(load_config(write(tmp_path, text)))]
    assert warning == (
        "warning: route r1: filter: `severity = high` compares two attributes; if 'high' is "
        "a value, quote it: severity = 'high'"
    )


def test_unknown_keys_suggest_the_key_meant(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
        gateway: {id: edge-1}
        conectors:
          mem: {type: memory}
        routes:
          - name: r1
            fromm: {connector: mem, topic: in}
            to: [{connector: mem, topic: out}]
        """,
    )
    assert "gw.yaml:2:1: conectors: unknown key; did you mean 'connectors'?" in found
    assert "gw.yaml:6:5: routes[0].fromm: unknown key; did you mean 'from'?" in found
    found = problems(
        tmp_path,
        """\
        gateway: {id: edge-1}
        connectors:
          n: {type: nats, servrs: ["nats://127.0.0.1:4222"]}
          m: {type: mqtt, url: "mqtt://127.0.0.1:1883"}
        routes:
          - name: r1
            from: {connector: m, topic: in, qso: 1}
            to: [{connector: n, subject: out}]
        """,
    )
    assert "gw.yaml:3:19: connectors.n.servrs: unknown key; did you mean 'servers'?" in found
    assert any("routes[0].from.qso: unknown key; did you mean 'qos'?" in p for p in found), found


@pytest.mark.parametrize(("written", "meant"), [("MQTT", "mqtt"), ("rabbitmq", "amqp")])
def test_connector_type_suggestions(tmp_path: Path, written: str, meant: str) -> None:
    (problem,) = problems(tmp_path, GOOD.replace("type: memory", f"type: {written}"))
    assert problem.endswith(f"did you mean {meant!r}?"), problem


def test_billion_laughs_is_refused_quickly(tmp_path: Path) -> None:
    import time

    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]" for n in range(1, 10)]
    started = time.monotonic()
    (problem,) = problems(tmp_path, "\n".join(lines) + "\n")
    # ~0.2 s here; expanding all 10**9 values would take hours (a loose bound, so a
    # busy CI machine cannot fail it).
    assert time.monotonic() - started < 5.0
    assert "more than 50000 values once YAML aliases are expanded" in problem
