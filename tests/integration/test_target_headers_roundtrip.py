"""A target's ``headers:`` through a real broker and back through meshgate's own decoder.

Regressions (issue 13, finding 3): a Kafka target with ``headers: {Content-Type:
text/plain}`` wrote a record the Kafka decoder rejected ("appears twice with
different values"); an MQTT 5 target with ``headers: {source: x}`` wrote a message
the MQTT decoder rejected. The config refuses both names now
(tests/unit/test_target_header_clash.py); here the targets are built without the
config, as a plugin or a direct caller would, and what arrives must still decode to
the event that was sent, with the non-clashing headers beside it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from connectors.kafka import KafkaConnector, KafkaOptions, KafkaSource, KafkaTarget
from connectors.mqtt import MqttConnector, MqttOptions, MqttSource, MqttTarget
from routing.bindings import Mode
from routing.event import CloudEvent
from tests.brokers import unique_name

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

WAIT = 20.0

EVENT = CloudEvent(
    id="hdr-1",
    source="urn:meshgate:headers",
    type="com.example.headers",
    subject="s1",
    datacontenttype="application/json",
    data=b'{"n":1}',
)


async def receive_one(connector: Any, source: Any) -> Any:
    stream = aiter(connector.consume(source))
    delivery = await asyncio.wait_for(anext(stream), WAIT)
    await delivery.ack()
    return delivery


@pytest.mark.parametrize("mode", [Mode.BINARY, Mode.STRUCTURED])
async def test_kafka_content_type_header_round_trip(kafka_bootstrap: str, mode: Mode) -> None:
    topic = unique_name("hdr")
    options = KafkaOptions(type="kafka", bootstrap_servers=kafka_bootstrap)
    connector = KafkaConnector("k", options)
    target = KafkaTarget(
        connector="k",
        topic=topic,
        mode=mode,
        headers={"Content-Type": "text/plain", "x-request-id": "r-1"},
    )
    source = KafkaSource.model_validate(
        {"connector": "k", "topics": [topic], "group_id": unique_name("g")}
    )
    await connector.start()
    try:
        await connector.publish(target, EVENT)  # read from the earliest offset below
        delivery = await receive_one(connector, source)
    finally:
        await connector.close()
    assert connector.decode(delivery) == EVENT
    assert delivery.headers["x-request-id"] == "r-1"
    content_types = [n for n, _ in delivery.message.headers if n.lower() == "content-type"]
    assert len(content_types) == 1, delivery.message.headers


@pytest.mark.parametrize("mode", [Mode.BINARY, Mode.STRUCTURED])
async def test_mqtt5_attribute_named_user_property_round_trip(
    mqtt_host_port: tuple[str, int], mode: Mode
) -> None:
    host, port = mqtt_host_port
    topic = f"meshgate-test/{unique_name('hdr')}"
    options = MqttOptions(
        type="mqtt", url=f"mqtt://{host}:{port}", protocol=5, client_id=unique_name("hdr")
    )
    connector = MqttConnector("m", options)
    # Retained (and expiring): the message waits for the subscription, no race.
    target = MqttTarget(
        connector="m",
        topic=topic,
        mode=mode,
        retain=True,
        message_expiry=30,
        headers={"source": "x", "x-request-id": "r-1"},
    )
    source = MqttSource(connector="m", topic=topic)
    await connector.start()
    try:
        await connector.publish(target, EVENT)
        delivery = await receive_one(connector, source)
    finally:
        await connector.close()
    assert connector.decode(delivery) == EVENT
    assert delivery.headers["x-request-id"] == "r-1"
    sources = [v for n, v in delivery.message.user_properties if n == "source"]
    assert sources == ([] if mode is Mode.STRUCTURED else ["urn:meshgate:headers"])
