"""The peer bridges' attribute carriers agree with the project's own bindings."""

from __future__ import annotations

from bench.events import make_event
from bench.peers.carry import from_headers, to_headers
from routing.bindings import Mode, kafka, nats


def test_nats_binary_event_reaches_kafka_as_the_kafka_binding_writes_it() -> None:
    event = make_event(7, 256)
    message = nats.to_message(event, Mode.BINARY)
    ctype, attrs = from_headers("nats", (message.headers or {}).items(), None)
    assert ctype == "application/json" and attrs["id"] == "b7"
    headers = to_headers("kafka", ctype, attrs)
    native = kafka.to_message(event, Mode.BINARY)
    assert sorted((k, v.encode()) for k, v in headers.items()) == sorted(native.headers)
    back = kafka.from_message(
        kafka.KafkaMessage(
            value=message.data, key=None, headers=tuple((k, v.encode()) for k, v in headers.items())
        )
    )
    assert back == event


def test_structured_mode_carries_only_the_content_type() -> None:
    event = make_event(1, 256)
    message = nats.to_message(event, Mode.STRUCTURED)
    ctype, attrs = from_headers("nats", (message.headers or {}).items(), None)
    assert attrs == {} and ctype is not None and ctype.startswith("application/cloudevents")
    assert to_headers("kafka", ctype, attrs) == {"content-type": ctype}
