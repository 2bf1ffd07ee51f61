"""Metrics without brokers: the duration histogram, the admin config, and every exposed
metric name (the list docs/observability.md documents) through the in-memory connector."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from connectors.memory import MemoryBroker
from gateway.admin import _safe, readiness
from gateway.cli import _with_admin
from gateway.config import load_config, parse_listen
from gateway.errors import ConfigError
from gateway.runtime import Gateway
from gateway.stats import DURATION_BOUNDS, DurationHistogram
from gateway.telemetry import Telemetry
from routing.bindings import Mode
from routing.bindings import nats as binding
from routing.event import CloudEvent

EXPOSED = {
    "target_info": "gauge",
    "meshgate_events": "counter",
    "meshgate_route_retries": "counter",
    "meshgate_route_in_flight": "gauge",
    "meshgate_route_duration_seconds": "histogram",
    "meshgate_connector_up": "gauge",
    "meshgate_connector_reconnects": "counter",
    "meshgate_connector_dropped": "counter",
    "meshgate_connector_publish_duration_seconds": "histogram",
    "messaging_client_sent_messages": "counter",
    "messaging_client_consumed_messages": "counter",
    "messaging_process_duration_seconds": "histogram",
    "messaging_client_operation_duration_seconds": "histogram",
}
"""Family names as prometheus_client's parser reports them (counters without _total)."""

CONFIG = """
gateway: {id: tel-gw, drain_timeout_seconds: 5, admin: {listen: "127.0.0.1:0"}}
connectors:
  mem: {type: memory}
routes:
  - name: things
    from: {connector: mem, topic: in}
    filter: "type = 'com.acme.thing'"
    to: [{connector: mem, topic: out}]
"""


def test_histogram_buckets_and_quantiles() -> None:
    histogram = DurationHistogram()
    assert histogram.quantile(0.5) is None
    for value in (0.0004, 0.0005, 0.0007, 0.003, 20.0):
        histogram.observe(value)
    assert histogram.count == 5
    assert sum(histogram.counts) == 5
    # Upper bounds are inclusive, as in OpenTelemetry and Prometheus.
    assert histogram.counts[0] == 2  # <= 0.0005
    assert histogram.counts[1] == 1  # (0.0005, 0.001]
    assert histogram.counts[DURATION_BOUNDS.index(0.005)] == 1
    assert histogram.counts[-1] == 1  # overflow
    assert histogram.total == pytest.approx(20.0046)
    assert histogram.minimum == 0.0004 and histogram.maximum == 20.0
    p50 = histogram.quantile(0.5)
    assert p50 is not None and 0.0005 < p50 <= 0.001
    assert histogram.quantile(1.0) == 20.0
    assert histogram.quantile(0.0) == 0.0004


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        (":9464", ("127.0.0.1", 9464)),
        ("9464", ("127.0.0.1", 9464)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
        ("[::1]:9464", ("::1", 9464)),
        ("localhost:0", ("localhost", 0)),
    ],
)
def test_listen_forms(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["", "host:", "host:port", "1.2.3.4:70000", "host:-1"])
def test_listen_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(text)


def test_admin_config_is_strict(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text(
        CONFIG.replace('admin: {listen: "127.0.0.1:0"}', 'admin: {listen: "x:y", tls: true}')
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert "gateway.admin.listen" in text and "gateway.admin.tls: unknown key" in text


def test_cli_admin_overrides_listen_and_keeps_the_token_file(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text(
        CONFIG.replace(
            'admin: {listen: "127.0.0.1:0"}', 'admin: {listen: ":1", token_file: /run/tok}'
        )
    )
    config = _with_admin(load_config(path), "0.0.0.0:9464")
    assert config.gateway.admin is not None
    assert config.gateway.admin.address() == ("0.0.0.0", 9464)
    assert str(config.gateway.admin.token_file) == "/run/tok"
    bare = tmp_path / "bare.yaml"
    bare.write_text(CONFIG.replace(', admin: {listen: "127.0.0.1:0"}', ""))
    added = _with_admin(load_config(bare), ":9000").gateway.admin
    assert added is not None and added.address() == ("127.0.0.1", 9000)
    assert load_config(bare).gateway.admin is None


def test_options_are_served_without_credentials() -> None:
    safe = _safe(
        {
            "url": "amqp://guest:hunter2@rabbit:5672/",
            "servers": ["nats://tok3n@nats:4222", "nats://plain:4222"],
            "password": "hunter2",
            "sasl_plain_password": "x",
            "token": None,
            "prefetch": 100,
        }
    )
    assert safe == {
        "url": "amqp://guest:***@rabbit:5672/",
        "servers": ["nats://***@nats:4222", "nats://plain:4222"],
        "password": "***",
        "sasl_plain_password": "***",
        "token": None,
        "prefetch": 100,
    }


async def test_every_metric_is_exposed_with_its_documented_name(tmp_path: Path) -> None:
    MemoryBroker.reset()
    path = tmp_path / "g.yaml"
    path.write_text(CONFIG)
    gateway = Gateway(load_config(path))
    telemetry = Telemetry(gateway, otlp=False)
    assert gateway.timed
    broker = MemoryBroker.get("default")
    await gateway.start()
    try:
        for n in range(5):
            kind = "com.acme.thing" if n < 4 else "com.acme.other"
            event = CloudEvent(id=f"e{n}", source="urn:t", type=kind, data=b"{}")
            broker.put("in", binding.to_message(event, Mode.BINARY))
        deadline = time.monotonic() + 10
        while gateway.stats["things"].received < 5 or gateway.stats["things"].in_flight:
            assert time.monotonic() < deadline, "events were not processed"
            await asyncio.sleep(0.01)
        ready, body = readiness(gateway)
        assert ready, body
        assert body["connectors"]["mem"]["dropped"] == 0
        text = telemetry.prometheus_text().decode()
    finally:
        await gateway.stop()
        telemetry.shutdown()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert {name: family.type for name, family in families.items()} == EXPOSED
    events = {
        sample.labels["outcome"]: sample.value for sample in families["meshgate_events"].samples
    }
    assert events == {
        "received": 5,
        "delivered": 4,
        "filtered": 1,
        "dead_lettered": 0,
        "undeliverable": 0,
        "failed": 0,
        "loop_dropped": 0,
    }
    counts = {
        sample.name: sample.value
        for sample in families["meshgate_route_duration_seconds"].samples
        if sample.name.endswith("_count")
    }
    assert counts == {"meshgate_route_duration_seconds_count": 4}
    assert len(broker.drain("out")) == 4


async def test_event_stream_shows_data_only_when_asked_and_ends_with_the_server(
    tmp_path: Path,
) -> None:
    """``show_data: true`` adds the data; stopping the server ends an open stream."""
    import aiohttp

    from gateway.admin import AdminServer

    MemoryBroker.reset()
    path = tmp_path / "g.yaml"
    path.write_text(
        CONFIG.replace('listen: "127.0.0.1:0"', 'listen: "127.0.0.1:0", show_data: true')
    )
    gateway = Gateway(load_config(path))
    assert gateway.config.gateway.admin is not None
    admin = AdminServer(gateway, Telemetry(gateway, otlp=False), gateway.config.gateway.admin)
    await admin.start()
    await gateway.start()
    broker = MemoryBroker.get("default")
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(admin.url + "/api/events") as stream,
        ):
            event = CloudEvent(id="d1", source="urn:t", type="com.acme.thing", data=b"hi")
            broker.put("in", binding.to_message(event, Mode.BINARY))
            line = b""
            async with asyncio.timeout(10):
                while not line.startswith(b"data: "):
                    line = await stream.content.readline()
            assert b'"data":"hi"' in line and b'"outcome":"delivered"' in line
            started = time.monotonic()
            await admin.stop()
            assert time.monotonic() - started < 5  # the open stream did not hold it
            assert gateway.recorder is None and gateway.follower is None
    finally:
        await admin.stop()
        await gateway.stop()
