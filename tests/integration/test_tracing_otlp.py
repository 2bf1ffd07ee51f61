"""Traces by OTLP/HTTP on real brokers: a receiver on loopback decodes the protobuf
``ExportTraceServiceRequest``s (opentelemetry-proto).

One gateway chains three hops through three brokers, NATS -> Kafka -> RabbitMQ ->
NATS, so that every hop's process span must continue the trace from the native
``traceparent`` header the previous hop's send span wrote; the incoming event's
``traceparent`` extension fixes the trace id and is never rewritten. A message that
is no CloudEvent is dead-lettered: its send span has ERROR status.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats
import pytest
import yaml
from aiohttp import web
from aiokafka import AIOKafkaProducer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from gateway.config import load_config
from gateway.localbrokers import free_port
from gateway.runtime import Gateway
from gateway.tracing import traced
from routing.bindings import Mode
from routing.bindings import nats as nats_binding
from routing.event import CloudEvent

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
ORIGINAL = f"00-{TRACE_ID}-{PARENT_ID}-01"


async def until(check: Callable[[], Any], seconds: float = 30.0) -> Any:
    deadline = time.monotonic() + seconds
    while not (result := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {seconds} s")
        await asyncio.sleep(0.05)
    return result


def attrs(span: Span) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in span.attributes:
        kind = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, kind) if kind else None
    return out


async def test_spans_continue_the_trace_across_three_brokers(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    nats_url: str,
    kafka_bootstrap: str,
    rabbitmq_url: str,
) -> None:
    spans: list[Span] = []
    resources: list[dict[str, Any]] = []

    async def receive(request: web.Request) -> web.Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        for resource_spans in message.resource_spans:
            resource = resource_spans.resource
            resources.append({kv.key: kv.value.string_value for kv in resource.attributes})
            for scope in resource_spans.scope_spans:
                spans.extend(scope.spans)
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "meshgate-trace-test")
    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)

    run = uuid.uuid4().hex[:8]
    topic = f"trc-{run}"
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await producer.partitions_for(topic)  # the mock creates the topic
    finally:
        await producer.stop()
    config = {
        "gateway": {"id": f"trc-{run}", "drain_timeout_seconds": 5},
        "connectors": {
            "edge": {"type": "nats", "servers": [nats_url]},
            "core": {"type": "kafka", "bootstrap_servers": kafka_bootstrap},
            "ops": {"type": "amqp", "url": rabbitmq_url},
        },
        "routes": [
            {
                "name": "first",
                "from": {"connector": "edge", "subject": f"trc.{run}.in"},
                "to": [{"connector": "core", "topic": topic, "key": "k1"}],
            },
            {
                "name": "second",
                "from": {
                    "connector": "core",
                    "topics": [topic],
                    "group_id": f"trc-{run}",
                    "session_timeout_ms": 3000,
                },
                "to": [
                    {
                        "connector": "ops",
                        "exchange": "amq.topic",
                        "routing_key": f"trc.{run}.mid",
                        "mandatory": False,
                    }
                ],
            },
            {
                "name": "third",
                "from": {
                    "connector": "ops",
                    "queue": f"trc-{run}",
                    "declare": True,
                    "arguments": {"x-expires": 60000},
                    "bind": [{"exchange": "amq.topic", "binding_key": f"trc.{run}.mid"}],
                },
                "to": [{"connector": "edge", "subject": f"trc.{run}.out", "jetstream": False}],
            },
            {
                "name": "poison",
                "from": {"connector": "edge", "subject": f"trc.{run}.bad"},
                "to": [{"connector": "edge", "subject": f"trc.{run}.never", "jetstream": False}],
                "dead_letter": {
                    "connector": "edge",
                    "subject": f"trc.{run}.dlq",
                    "jetstream": False,
                },
            },
        ],
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    gateway = Gateway(load_config(path))
    client = await nats.connect(nats_url)
    received: list[Any] = []
    dead: list[Any] = []

    async def out(msg: Any) -> None:
        received.append(msg)

    async def dlq(msg: Any) -> None:
        dead.append(msg)

    await client.subscribe(f"trc.{run}.out", cb=out)
    await client.subscribe(f"trc.{run}.dlq", cb=dlq)
    try:
        async with traced(gateway) as tracing:
            assert tracing is not None and gateway.tracing is tracing
            await gateway.start()
            await until(lambda: all(p.stream is not None for p in gateway.pipelines))
            # Core NATS keeps nothing for a subscription not yet on the server.
            for pipeline in gateway.pipelines:
                subscribed = pipeline.connector.wait_subscribed(pipeline.group.source)
                await asyncio.wait_for(subscribed, 15)
            event = CloudEvent(
                id=f"ev-{run}",
                source="urn:test:tracing",
                type="com.acme.traced",
                datacontenttype="application/json",
                extensions={"traceparent": ORIGINAL},
                data=b'{"n":1}',
            )
            message = nats_binding.to_message(event, Mode.BINARY)
            await client.publish(f"trc.{run}.in", message.data, headers=dict(message.headers or {}))
            await client.publish(f"trc.{run}.bad", b"not a cloudevent")
            await client.flush()
            await until(lambda: received and dead)
            await gateway.stop()
        # traced() exported what was left on exit.
    finally:
        await client.close()
        await runner.cleanup()

    assert resources and resources[0]["service.name"] == "meshgate-trace-test"
    assert resources[0]["service.instance.id"] == f"trc-{run}"
    by_name: dict[str, list[Span]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    process_in = by_name[f"process trc.{run}.in"][0]
    send_kafka = by_name[f"send {topic}"][0]
    process_kafka = by_name[f"process {topic}"][0]
    send_amqp = by_name[f"send amq.topic/trc.{run}.mid"][0]
    process_amqp = by_name[f"process trc.{run}.mid"][0]
    send_out = by_name[f"send trc.{run}.out"][0]

    # Kinds, and one trace: the incoming traceparent's trace id, parent span kept.
    for span in (process_in, process_kafka, process_amqp):
        assert span.kind == Span.SPAN_KIND_CONSUMER
    for span in (send_kafka, send_amqp, send_out):
        assert span.kind == Span.SPAN_KIND_PRODUCER
    chain = [process_in, send_kafka, process_kafka, send_amqp, process_amqp, send_out]
    assert {span.trace_id.hex() for span in chain} == {TRACE_ID}
    assert process_in.parent_span_id.hex() == PARENT_ID
    for parent, child in itertools.pairwise(chain):
        assert child.parent_span_id == parent.span_id, (parent.name, child.name)

    # Attributes (messaging semantic conventions + CloudEvents + route).
    first = attrs(process_in)
    assert first["messaging.system"] == "nats"
    assert first["messaging.operation.type"] == "process"
    assert first["messaging.destination.name"] == f"trc.{run}.in"
    assert first["messaging.message.id"] == f"ev-{run}"
    assert first["cloudevents.event_id"] == f"ev-{run}"
    assert first["cloudevents.event_source"] == "urn:test:tracing"
    assert first["cloudevents.event_type"] == "com.acme.traced"
    assert first["meshgate.route"] == "first"
    assert first["meshgate.outcome"] == "delivered"
    kafka_send = attrs(send_kafka)
    assert kafka_send["messaging.system"] == "kafka"
    assert kafka_send["messaging.operation.type"] == "send"
    assert kafka_send["messaging.operation.name"] == "publish"
    assert kafka_send["messaging.destination.name"] == topic
    assert kafka_send["messaging.kafka.message.key"] == "k1"
    assert kafka_send["cloudevents.event_id"] == f"ev-{run}"
    kafka_process = attrs(process_kafka)
    assert kafka_process["messaging.system"] == "kafka"
    assert kafka_process["messaging.destination.partition.id"].isdigit()
    assert isinstance(kafka_process["messaging.kafka.offset"], int)
    assert kafka_process["meshgate.route"] == "second"
    assert kafka_process["messaging.consumer.group.name"] == f"trc-{run}"
    amqp_send = attrs(send_amqp)
    assert amqp_send["messaging.system"] == "rabbitmq"
    assert amqp_send["messaging.rabbitmq.destination.routing_key"] == f"trc.{run}.mid"
    amqp_process = attrs(process_amqp)
    assert amqp_process["messaging.rabbitmq.destination.routing_key"] == f"trc.{run}.mid"
    assert amqp_process["meshgate.route"] == "third"
    assert amqp_process["messaging.rabbitmq.message.delivery_tag"] >= 1

    # The published message: the extension untouched, the native header the last span.
    headers = received[0].headers
    assert headers["ce-traceparent"] == ORIGINAL
    assert headers["traceparent"] == f"00-{TRACE_ID}-{send_out.span_id.hex()}-01"

    # The dead letter: an ERROR send span under an ERROR process span.
    letter = by_name[f"send trc.{run}.dlq"][0]
    assert letter.kind == Span.SPAN_KIND_PRODUCER
    assert letter.status.code == Status.STATUS_CODE_ERROR
    assert "NotACloudEvent" in letter.status.message
    assert attrs(letter)["meshgate.dead_letter"] is True
    poison = by_name[f"process trc.{run}.bad"][0]
    assert letter.parent_span_id == poison.span_id
    assert poison.status.code == Status.STATUS_CODE_ERROR
    assert attrs(poison)["meshgate.outcome"] == "dead_lettered"
    assert dead[0].headers["traceparent"].split("-")[2] == letter.span_id.hex()


@pytest.mark.parametrize("policy", ["keep", "replace"])
async def test_mqtt5_target_traceparent_policy(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    nats_url: str,
    mqtt_host_port: tuple[str, int],
    policy: str,
) -> None:
    """MQTT 5 has one slot, the ``traceparent`` user property (= the extension):
    ``keep`` leaves an event's own value and fills in only missing ones, ``replace``
    always writes the gateway's send span. Spans go to the console exporter (captured
    by pytest)."""
    import aiomqtt

    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    run = uuid.uuid4().hex[:8]
    host, port = mqtt_host_port
    config = {
        "gateway": {
            "id": f"trm-{run}",
            "drain_timeout_seconds": 5,
            "tracing": {"enabled": True, "exporter": "console", "mqtt_traceparent": policy},
        },
        "connectors": {
            "edge": {"type": "nats", "servers": [nats_url]},
            "plant": {
                "type": "mqtt",
                "url": f"mqtt://{host}:{port}",
                "protocol": 5,
                "client_id": f"trm-{run}",
            },
        },
        "routes": [
            {
                "name": "down",
                "from": {"connector": "edge", "subject": f"trm.{run}.in"},
                "to": [{"connector": "plant", "topic": f"trm/{run}/out", "qos": 1}],
            }
        ],
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    gateway = Gateway(load_config(path))
    client = await nats.connect(nats_url)
    received: dict[str, str] = {}
    try:
        version = aiomqtt.ProtocolVersion.V5
        async with (
            aiomqtt.Client(host, port, protocol=version, timeout=10) as mqtt,
            traced(gateway),
        ):
            await mqtt.subscribe(f"trm/{run}/out", qos=1)
            await gateway.start()
            await until(lambda: all(p.stream is not None for p in gateway.pipelines))
            # Core NATS keeps nothing for a subscription not yet on the server: probe
            # until one comes out on MQTT, so the route is known to be listening.
            probe = nats_binding.to_message(
                CloudEvent(id="probe", source="urn:test:mqtt", type="t"), Mode.BINARY
            )
            async with asyncio.timeout(30):
                while True:
                    await client.publish(
                        f"trm.{run}.in", probe.data, headers=dict(probe.headers or {})
                    )
                    try:
                        async with asyncio.timeout(0.5):
                            await anext(aiter(mqtt.messages))
                        break
                    except TimeoutError:
                        continue
            for name, extensions in (("own", {"traceparent": ORIGINAL}), ("none", {})):
                event = CloudEvent(id=name, source="urn:test:mqtt", type="t", extensions=extensions)
                message = nats_binding.to_message(event, Mode.BINARY)
                await client.publish(
                    f"trm.{run}.in", message.data, headers=dict(message.headers or {})
                )
            await client.flush()
            async with asyncio.timeout(30):
                async for msg in mqtt.messages:
                    props = dict(getattr(msg.properties, "UserProperty", []) or [])
                    if props["id"] == "probe":  # a later probe
                        continue
                    received[props["id"]] = props["traceparent"]
                    if len(received) == 2:
                        break
            await gateway.stop()
    finally:
        await client.close()
    assert received["none"].split("-")[1] != TRACE_ID  # a new trace, the gateway's span
    if policy == "keep":
        assert received["own"] == ORIGINAL
    else:
        trace_id, span_id = received["own"].split("-")[1:3]
        assert trace_id == TRACE_ID and span_id != PARENT_ID
