"""``meshgate asyncapi``: the document is valid AsyncAPI 3.0 and says what the routes do.

Validation uses the official AsyncAPI 3.0.0 JSON Schema (vendored in tests/schemas/,
see its README), plus the checks a JSON Schema cannot express and an AsyncAPI parser
makes: every ``$ref`` resolves, an operation's messages belong to its channel, and a
channel's parameters are exactly the ``{...}`` expressions of its address.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from gateway.asyncapi import build_document, document_text, load_mesh
from gateway.cli import main
from tests.deploy.schemas import assert_valid_asyncapi, asyncapi_validator, resolve_ref

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "asyncapi" / "readme-example.yaml"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    return asyncapi_validator()


REGENERATE = (
    "regenerate: RABBIT_PASSWORD=guest .venv/bin/python -m tests.unit.test_asyncapi "
    "(writes the README example's document to docs/asyncapi/readme-example.yaml)"
)


def readme_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks: list[str] = re.findall(r"^```yaml\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    return next(b for b in blocks if re.search(r"^gateway:", b, re.MULTILINE))


def readme_document(directory: Path) -> str:
    path = directory / "gateway.yaml"
    path.write_text(readme_example(), encoding="utf-8")
    return document_text(build_document(load_mesh([str(path)])))


@pytest.fixture
def readme_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RABBIT_PASSWORD", "s3cr3t-pw")
    path = tmp_path / "gateway.yaml"
    path.write_text(readme_example(), encoding="utf-8")
    return path


def test_readme_example_is_valid_asyncapi(
    validator: jsonschema.Draft7Validator, readme_file: Path
) -> None:
    document = build_document(load_mesh([str(readme_file)]))
    assert_valid_asyncapi(validator, document)
    assert document["asyncapi"] == "3.0.0"
    assert {s["protocol"] for s in document["servers"].values()} == {
        "kafka",
        "amqp",
        "mqtt",
        "nats",
    }
    assert "s3cr3t-pw" not in json.dumps(document)
    receive = document["operations"]["edge-1-telemetry-receive"]
    assert receive["action"] == "receive"
    assert "type LIKE 'com.acme.%'" in receive["description"]
    assert receive["bindings"]["mqtt"]["qos"] == 1
    source = resolve_ref(document, receive["channel"]["$ref"])
    assert source["address"] == "plant/{topic_1}/telemetry/{topic_3_rest}"
    sends = [o for o in document["operations"].values() if o["action"] == "send"]
    assert len(sends) == 4  # three targets and the dead letter
    addresses = {resolve_ref(document, o["channel"]["$ref"])["address"] for o in sends}
    assert addresses == {"telemetry", "telemetry.{topic_1}", "{topic_1}", "telemetry.dlq"}
    kafka_binary = document["components"]["messages"]["kafka-binary"]
    assert {"ce_id", "ce_source", "ce_specversion", "ce_type"} <= set(
        kafka_binary["headers"]["required"]
    )
    nats_binary = document["components"]["messages"]["nats-binary"]
    assert "ce-datacontenttype" in nats_binary["headers"]["properties"]


def test_committed_document_is_current(readme_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RABBIT_PASSWORD", "guest")
    fresh = readme_document(readme_file.parent)
    assert COMMITTED.exists(), REGENERATE
    assert COMMITTED.read_text(encoding="utf-8") == fresh, REGENERATE


GATEWAY_A = """\
gateway: {id: factory-a}
connectors:
  plant: {type: mqtt, url: "mqtt://plant-user:mqtt-secret@mqtt.plant:1883", protocol: 4}
  mesh:  {type: nats, servers: ["nats://n4ts-t0ken-value@nats.mesh:4222"]}
  core:  {type: kafka, bootstrap_servers: ["k1:9092", "k2:9092"],
          security_protocol: SASL_SSL, sasl_mechanism: SCRAM-SHA-512,
          sasl_username: gw, sasl_password: kafka-secret}
routes:
  - name: telemetry
    from: {connector: plant, topic: "site/+/temp", qos: 0}
    ingress: {type: com.acme.temp, source: "mqtt://plant/{topic}"}
    to:
      - {connector: mesh, subject: "mesh.{type}.{topic[1]}"}
    dead_letter: {connector: core, topic: dead.letters, mode: structured}
  - name: commands
    from: {connector: core, topics: [commands, commands.urgent], group_id: cmd}
    filters: [{prefix: {type: com.acme.cmd.}}]
    to:
      - {connector: plant, topic: "site/{subject}/cmd"}
"""

GATEWAY_B = """\
gateway: {id: hq}
connectors:
  mesh: {type: nats, servers: ["nats://nats.mesh:4222"]}
  ops:  {type: amqp, url: "amqps://ops:amqp-secret@rabbit.hq/prod"}
routes:
  - name: from-mesh
    from: {connector: mesh, subject: "mesh.>", queue_group: hq}
    filter: "source LIKE 'mqtt://%'"
    to:
      - {connector: ops, exchange: events, routing_key: "{type}", mode: structured,
         declare_exchange: {type: topic}}
  - name: audit
    from: {connector: mesh, subject: "audit.*", jetstream: {stream: AUDIT, durable: hq}}
    to:
      - {connector: ops, exchange: "", routing_key: audit}
  - name: replies
    from: {connector: ops, queue: replies, bind: [{exchange: events, binding_key: "reply.#"}]}
    to:
      - {connector: mesh, subject: "mesh.replies", jetstream: true}
"""


@pytest.fixture
def mesh_files(tmp_path: Path) -> list[str]:
    paths = []
    for name, text in (("a.yaml", GATEWAY_A), ("b.yaml", GATEWAY_B)):
        (tmp_path / name).write_text(text, encoding="utf-8")
        paths.append(str(tmp_path / name))
    return paths


def test_mesh_of_two_gateways(validator: jsonschema.Draft7Validator, mesh_files: list[str]) -> None:
    document = build_document(load_mesh(mesh_files))
    assert_valid_asyncapi(validator, document)
    text = json.dumps(document)
    for secret in ("mqtt-secret", "kafka-secret", "amqp-secret", "n4ts-t0ken-value"):
        assert secret not in text
    assert document["info"]["title"] == "meshgate mesh: factory-a, hq"
    # Both gateways use the same NATS server: one server object names both.
    nats = [s for s in document["servers"].values() if s["protocol"] == "nats"]
    assert len(nats) == 1
    assert "factory-a" in nats[0]["description"] and "hq" in nats[0]["description"]
    servers = {s["protocol"]: s for s in document["servers"].values()}
    schemes = document["components"]["securitySchemes"]
    assert {"kafka-scramSha512", "mqtt-userPassword", "nats-token", "amqp-userPassword"} == set(
        schemes
    )
    assert servers["kafka-secure"]["security"] == [
        {"$ref": "#/components/securitySchemes/kafka-scramSha512"}
    ]
    assert "plant-user" not in text and "gw" not in json.dumps(schemes)
    assert servers["kafka-secure"]["host"] == "k1:9092"
    assert servers["amqps"]["pathname"] == "/prod"
    assert servers["mqtt"]["protocolVersion"] == "3.1.1"
    ops = document["operations"]
    # Two Kafka topics: one receive operation each.
    assert {"factory-a-commands-receive-0", "factory-a-commands-receive-1"} <= set(ops)
    assert "prefix" in ops["factory-a-commands-receive-0"]["description"]
    assert ops["factory-a-commands-receive-0"]["bindings"]["kafka"]["groupId"]["enum"] == ["cmd"]
    assert ops["hq-from-mesh-receive"]["bindings"]["nats"]["queue"] == "hq"
    assert "Core NATS: at most once" in ops["hq-from-mesh-receive"]["description"]
    assert "JetStream pull consumer `hq`" in ops["hq-audit-receive"]["description"]
    # MQTT 3.1.1 carries structured events only.
    channel = resolve_ref(document, ops["factory-a-telemetry-receive"]["channel"]["$ref"])
    assert "mqtt-binary" not in channel["messages"]
    dead = ops["factory-a-telemetry-dead-letter"]
    assert dead["action"] == "send" and dead["messages"][0]["$ref"].endswith("kafka-structured")
    amqp = resolve_ref(document, ops["hq-from-mesh-send-0"]["channel"]["$ref"])
    assert amqp["bindings"]["amqp"]["exchange"] == {
        "name": "events",
        "type": "topic",
        "durable": True,
        "vhost": "prod",
    }


def test_cli_writes_yaml_and_json(
    mesh_files: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["asyncapi", *mesh_files]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    output = tmp_path / "mesh.json"
    assert main(["asyncapi", *mesh_files, "--json", "--output", str(output)]) == 0
    assert json.loads(output.read_text(encoding="utf-8")) == printed
    assert main(["asyncapi", str(tmp_path / "missing.yaml")]) == 2


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert re.fullmatch(r"meshgate \S+\n", capsys.readouterr().out)


if __name__ == "__main__":  # regenerate the committed document
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        COMMITTED.parent.mkdir(parents=True, exist_ok=True)
        COMMITTED.write_text(readme_document(Path(directory)), encoding="utf-8")
    print(f"wrote {COMMITTED.relative_to(ROOT)}")


def test_gateways_meet_on_one_channel(
    validator: jsonschema.Draft7Validator, tmp_path: Path
) -> None:
    """What one gateway sends and another receives is one channel on one server."""
    (tmp_path / "a.yaml").write_text(
        """\
gateway: {id: a}
connectors:
  bus: {type: nats, servers: ["nats://127.0.0.1:4222"]}
  log: {type: kafka, bootstrap_servers: "kafka.internal:9092"}
routes:
  - name: out
    from: {connector: bus, subject: "in.>"}
    to: [{connector: log, topic: shared}]
""",
        encoding="utf-8",
    )
    (tmp_path / "b.yaml").write_text(
        """\
gateway: {id: b}
connectors:
  events: {type: kafka, bootstrap_servers: ["kafka.internal:9092"], client_id: b}
  bus: {type: nats, servers: ["nats://127.0.0.1:4222"]}
routes:
  - name: back
    from: {connector: events, topics: [shared], group_id: b}
    to: [{connector: bus, subject: "out.{type}", jetstream: false}]
""",
        encoding="utf-8",
    )
    document = build_document(load_mesh([str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")]))
    assert_valid_asyncapi(validator, document)
    assert len(document["servers"]) == 2  # one Kafka, one NATS
    users = {
        (op["x-meshgate-gateway"], op["action"])
        for op in document["operations"].values()
        if resolve_ref(document, op["channel"]["$ref"])["address"] == "shared"
    }
    assert users == {("a", "send"), ("b", "receive")}
    shared = [c for c in document["channels"].values() if c["address"] == "shared"]
    assert len(shared) == 1
    assert shared[0]["bindings"]["kafka"]["topic"] == "shared"
