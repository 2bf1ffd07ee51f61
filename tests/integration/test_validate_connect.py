"""`meshgate validate --connect`: connectors reachable, and the streams, queues, exchanges
and topics the routes need exist on the live brokers (nothing is created)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main
from tests.brokers import unique_name


def test_validate_connect_reports_each_missing_resource(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    kafka_bootstrap: str,
    rabbitmq_url: str,
    nats_url: str,
) -> None:
    queue, exchange, subject = unique_name("q"), unique_name("ex"), unique_name("nostream")
    topic = unique_name("topic")
    path = tmp_path / "c.yaml"
    path.write_text(
        f"""\
gateway: {{id: g}}
connectors:
  k: {{type: kafka, bootstrap_servers: "{kafka_bootstrap}", enable_idempotence: false}}
  a: {{type: amqp, url: "{rabbitmq_url}"}}
  n: {{type: nats, servers: ["{nats_url}"]}}
  down: {{type: nats, servers: ["nats://127.0.0.1:1"]}}
routes:
  - name: r1
    from: {{connector: a, queue: {queue}}}
    to:
      - {{connector: a, exchange: {exchange}, routing_key: x}}
      - {{connector: a, exchange: amq.topic, routing_key: x}}
      - {{connector: n, subject: "{subject}.{{topic[0]}}"}}
      - {{connector: k, topic: {topic}}}
  - name: r2
    from: {{connector: down, subject: "x.>"}}
    to: [{{connector: n, subject: y, jetstream: false}}]
"""
    )
    code = main(["validate", str(path), "--connect", "--timeout", "3"])
    out = capsys.readouterr()
    lines = [line.strip() for line in out.out.splitlines()]
    assert code == 1, out
    assert any(
        line.startswith("connector a (")
        and line.endswith(f"queue '{queue}' (a route source; declare: false) does not exist")
        for line in lines
    ), lines
    assert any(line.endswith(f"exchange '{exchange}' (a target) does not exist") for line in lines)
    assert not any(line.startswith("connector a (") and "amq.topic" in line for line in lines)
    assert any(
        line.endswith(
            f"target subject '{subject}.{{topic[0]}}': no JetStream stream captures it "
            "(create one: docs/connectors/nats.md#a-stream-for-a-jetstream-target, "
            "or set jetstream: false)"
        )
        for line in lines
    ), lines
    assert any(line.startswith("connector down (") and "cannot connect" in line for line in lines)
    assert any(
        line.startswith("connector k (") and f"target topic '{topic}' does not exist" in line
        for line in lines
    ), lines
    assert out.err.rstrip().endswith("problem(s) with the live brokers")
