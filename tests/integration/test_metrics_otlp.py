"""Metrics by OTLP/HTTP when ``OTEL_METRICS_EXPORTER=otlp``: a real receiver on loopback
decodes the protobuf requests (opentelemetry-proto) and finds the counters and the
duration histograms with the values the gateway counted."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiohttp import web
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from connectors.memory import MemoryBroker
from gateway.admin import observed
from gateway.config import load_config
from gateway.localbrokers import free_port
from gateway.runtime import Gateway
from routing.bindings import Mode
from routing.bindings import nats as binding
from routing.event import CloudEvent

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

CONFIG = """
gateway: {id: otlp-gw, drain_timeout_seconds: 5}
connectors:
  mem: {type: memory, namespace: otlp}
routes:
  - name: things
    from: {connector: mem, topic: in}
    to: [{connector: mem, topic: out}]
"""


async def test_metrics_are_pushed_by_otlp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    requests: list[ExportMetricsServiceRequest] = []

    async def receive(request: web.Request) -> web.Response:
        message = ExportMetricsServiceRequest()
        message.ParseFromString(await request.read())
        requests.append(message)
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/metrics", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", f"http://127.0.0.1:{port}/v1/metrics")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "200")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "meshgate-otlp-test")
    path = tmp_path / "g.yaml"
    path.write_text(CONFIG)
    gateway = Gateway(load_config(path))
    broker = MemoryBroker.get("otlp")
    try:
        # No gateway.admin: OTEL_METRICS_EXPORTER alone turns the metrics on.
        async with observed(gateway) as admin:
            assert admin is None and gateway.timed
            await gateway.start()
            for n in range(3):
                event = CloudEvent(id=f"o{n}", source="urn:t", type="t", data=b"{}")
                broker.put("in", binding.to_message(event, Mode.BINARY))

            def points() -> dict[str, list[object]]:
                found: dict[str, list[object]] = {}
                for message in requests:
                    for resource in message.resource_metrics:
                        for scope in resource.scope_metrics:
                            for metric in scope.metrics:
                                kind = metric.WhichOneof("data")
                                found[metric.name] = list(getattr(metric, kind).data_points)
                return found

            def delivered() -> float:
                for point in points().get("meshgate.events", []):
                    labels = {kv.key: kv.value.string_value for kv in point.attributes}  # type: ignore[attr-defined]
                    if labels == {"route": "things", "outcome": "delivered"}:
                        return float(point.as_int)  # type: ignore[attr-defined]
                return 0.0

            deadline = time.monotonic() + 30
            while delivered() < 3:
                assert time.monotonic() < deadline, f"no OTLP export with 3 delivered: {points()}"
                await asyncio.sleep(0.1)
            found = points()
            (histogram,) = found["meshgate.route.duration"]
            assert histogram.count == 3  # type: ignore[attr-defined]
            assert len(histogram.bucket_counts) == len(histogram.explicit_bounds) + 1  # type: ignore[attr-defined]
            for name in (
                "meshgate.connector.up",
                "meshgate.route.in_flight",
                "messaging.client.sent.messages",
                "messaging.client.consumed.messages",
                "messaging.process.duration",
                "messaging.client.operation.duration",
                "meshgate.connector.publish.duration",
            ):
                assert name in found, name
            resource = requests[-1].resource_metrics[0].resource
            attributes = {kv.key: kv.value.string_value for kv in resource.attributes}
            assert attributes["service.name"] == "meshgate-otlp-test"
            assert attributes["service.instance.id"] == "otlp-gw"
            await gateway.stop()
    finally:
        await runner.cleanup()
        MemoryBroker.reset()
