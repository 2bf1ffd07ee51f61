"""Tracing on/off and where the gateway's trace context goes (gateway.tracing).

Off: no ``Tracing`` at all (the runtime checks ``gateway.tracing is None`` only).
On: spans recorded in memory; the memory connector (NATS binding) gets the native
``traceparent`` header and keeps the event's extension; MQTT follows
``mqtt_traceparent`` (keep / replace).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from connectors.memory import MemoryBroker
from connectors.mqtt.config import MqttTarget
from gateway.config import TracingSection, load_config
from gateway.runtime import Gateway
from gateway.tracing import Tracing, traced, tracing_for
from routing.bindings import Mode
from routing.bindings import nats as binding
from routing.event import CloudEvent

ORIGINAL = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

CONFIG = """
gateway: {{id: trace-unit, drain_timeout_seconds: 5{tracing}}}
connectors:
  mem: {{type: memory, namespace: {namespace}}}
routes:
  - name: things
    from: {{connector: mem, topic: in}}
    to: [{{connector: mem, topic: out}}]
"""


def gateway(tmp_path: Path, namespace: str, tracing: str = "") -> Gateway:
    path = tmp_path / "g.yaml"
    path.write_text(CONFIG.format(tracing=tracing, namespace=namespace))
    return Gateway(load_config(path))


async def delivered(gw: Gateway, count: int, seconds: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while gw.stats["things"].delivered < count:
        assert asyncio.get_running_loop().time() < deadline, "not delivered in time"
        await asyncio.sleep(0.01)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED", "OTEL_SERVICE_NAME"):
        monkeypatch.delenv(name, raising=False)


def test_off_by_default(tmp_path: Path) -> None:
    assert tracing_for(gateway(tmp_path, "t-off")) is None
    assert gateway(tmp_path, "t-off").tracing is None


def test_on_by_config_or_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    on = tracing_for(gateway(tmp_path, "t-on", ", tracing: {enabled: true, exporter: console}"))
    assert isinstance(on, Tracing)
    on.shutdown()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    by_env = tracing_for(gateway(tmp_path, "t-env"))
    assert isinstance(by_env, Tracing)
    by_env.shutdown()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert tracing_for(gateway(tmp_path, "t-none")) is None
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")  # not installed: warned, off
    assert tracing_for(gateway(tmp_path, "t-unknown")) is None
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert tracing_for(gateway(tmp_path, "t-disabled")) is None


def recording(gw: Gateway, **section: Any) -> tuple[Tracing, InMemorySpanExporter]:
    tracing = Tracing(gw, [], TracingSection.model_validate(section))
    exporter = InMemorySpanExporter()
    tracing.provider.add_span_processor(SimpleSpanProcessor(exporter))
    return tracing, exporter


async def test_memory_route_traced_with_native_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = gateway(tmp_path, "t-mem")
    tracing, exporter = recording(gw)
    monkeypatch.setattr("gateway.tracing.tracing_for", lambda _gw: tracing)
    broker = MemoryBroker.get("t-mem")
    async with traced(gw):
        await gw.start()
        event = CloudEvent(
            id="e1", source="urn:t", type="t", data=b"{}", extensions={"traceparent": ORIGINAL}
        )
        broker.put("in", binding.to_message(event, Mode.BINARY))
        await delivered(gw, 1)
        await gw.stop()
    spans = {span.name: span for span in exporter.get_finished_spans()}
    process, send = spans["process in"], spans["send out"]
    assert process.kind is SpanKind.CONSUMER and send.kind is SpanKind.PRODUCER
    assert process.context is not None and send.context is not None
    assert process.context.trace_id == int(ORIGINAL.split("-")[1], 16)
    assert process.parent is not None and process.parent.span_id == int(ORIGINAL.split("-")[2], 16)
    assert send.parent is not None and send.parent.span_id == process.context.span_id
    assert send.status.status_code is StatusCode.UNSET
    headers = broker.drain("out")[0].headers or {}
    assert headers["ce-traceparent"] == ORIGINAL  # the extension: never rewritten
    assert headers["traceparent"].split("-")[2] == f"{send.context.span_id:016x}"


@pytest.mark.parametrize(
    ("policy", "has_own", "expect_gateway"),
    [("keep", True, False), ("keep", False, True), ("replace", True, True)],
)
def test_mqtt_traceparent_policy(
    tmp_path: Path, policy: str, has_own: bool, expect_gateway: bool
) -> None:
    tracing, _ = recording(gateway(tmp_path, f"t-mqtt-{policy}"), mqtt_traceparent=policy)
    extensions = {"traceparent": ORIGINAL} if has_own else {}
    event = CloudEvent(id="e", source="urn:t", type="t", extensions=extensions)
    target = MqttTarget.model_validate({"connector": "m", "topic": "a/b"})
    span = tracing.tracer.start_span("send a/b")
    options, carried = tracing._carry(span, True, target, event)  # MQTT: in the event
    span.end()
    assert options is target  # MQTT: no extra user property (one slot: the attribute)
    value = carried.extensions.get("traceparent")
    assert isinstance(value, str)
    if expect_gateway:
        assert value.split("-")[2] == f"{span.get_span_context().span_id:016x}"
    else:
        assert value == ORIGINAL
    tracing.shutdown()


async def test_unsampled_events_still_carry_a_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_always_off")
    gw = gateway(tmp_path, "t-unsampled")
    tracing, exporter = recording(gw)
    monkeypatch.setattr("gateway.tracing.tracing_for", lambda _gw: tracing)
    broker = MemoryBroker.get("t-unsampled")
    async with traced(gw):
        await gw.start()
        broker.put("in", binding.to_message(CloudEvent(id="u", source="urn:t", type="t")))
        await delivered(gw, 1)
        await gw.stop()
    assert exporter.get_finished_spans() == ()
    headers = broker.drain("out")[0].headers or {}
    flags = int(headers["traceparent"].rsplit("-", 1)[1], 16)
    assert flags & 1 == 0  # not sampled: downstream will not sample it either
