"""A poison message on real brokers: no stalled route, nothing dropped, a dead-letter workbench.

The reproduction of issue 10: an MQTT 5 (QoS 1) route to a NATS JetStream target,
its dead letter also on NATS. One 2 MiB event (over NATS ``max_payload``) is refused
by the target and by the dead letter; before the local dead-letter store the route
stopped about 96 messages later (MQTT acks are released in order, behind the
poison). Now the poison goes to the local store, every small event after it is
delivered exactly once, and ``meshgate dlq`` lists it and redrives it to an MQTT
topic that accepts it.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import nats
import pytest
from nats.js.api import StreamConfig
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.config import load_config
from gateway.runtime import Gateway
from tests.brokers import MQTT_HOST_PORT, NATS_URL, unique_name
from tests.polling import until

pytestmark = pytest.mark.integration

HOST, PORT = MQTT_HOST_PORT
SMALL = 200
POISON_BYTES = 2 * 1024 * 1024
ROOT = Path(__file__).resolve().parents[2]


def ce_properties(event_id: str) -> Properties:
    """MQTT 5 binary mode: CloudEvents attributes as user properties."""
    properties = Properties(PacketTypes.PUBLISH)
    properties.UserProperty = [
        ("specversion", "1.0"),
        ("id", event_id),
        ("source", "urn:test:poison"),
        ("type", "com.example.reading"),
    ]
    properties.ContentType = "application/octet-stream"
    return properties


def meshgate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


@pytest.mark.timeout(120)
async def test_poison_goes_to_the_local_store_and_is_redriven(
    tmp_path: Path, mqtt_host_port: tuple[str, int], nats_url: str
) -> None:
    run = unique_name("poison")
    nc = await nats.connect(NATS_URL)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=run, subjects=[f"{run}.>"]))
    arrived: Counter[str] = Counter()

    async def on_message(msg: nats.aio.msg.Msg) -> None:  # every publish, duplicates too
        arrived[(msg.headers or {}).get("ce-id", "?")] += 1

    await nc.subscribe(f"{run}.out", cb=on_message)
    config = tmp_path / "gateway.yaml"
    config.write_text(
        textwrap.dedent(f"""
        gateway: {{id: {run}, state_dir: "{tmp_path / "state"}"}}
        connectors:
          plant: {{type: mqtt, url: "mqtt://{HOST}:{PORT}", protocol: 5, client_id: {run}}}
          edge: {{type: nats, servers: ["{NATS_URL}"]}}
        routes:
          - name: telemetry
            from: {{connector: plant, topic: "{run}/in/#", qos: 1}}
            to: [{{connector: edge, subject: "{run}.out"}}]
            dead_letter: {{connector: edge, subject: "{run}.dlq"}}
        """)
    )
    gateway = Gateway(load_config(config))
    await gateway.start()
    stats = gateway.stats["telemetry"]
    try:
        async with aiomqtt.Client(
            HOST, PORT, protocol=aiomqtt.ProtocolVersion.V5, timeout=30
        ) as mqtt:
            # The source subscribes in the background: wait until an event gets through.
            for attempt in range(100):
                await mqtt.publish(
                    f"{run}/in/warm", b"", qos=1, properties=ce_properties(f"warm-{attempt}")
                )
                if await until(lambda: bool(arrived), 0.2):
                    break
            await mqtt.publish(
                f"{run}/in/big", b"x" * POISON_BYTES, qos=1, properties=ce_properties("poison")
            )
            for n in range(SMALL):
                await mqtt.publish(
                    f"{run}/in/small", b"%d" % n, qos=1, properties=ce_properties(f"small-{n}")
                )

            def small() -> Counter[str]:
                return Counter({k: v for k, v in arrived.items() if k.startswith("small-")})

            delivered = await until(lambda: len(small()) >= SMALL and stats.undeliverable == 1, 60)
            assert delivered, f"{len(small())} of {SMALL} delivered, stats {stats}"
            # Every small event exactly once; the poison nowhere on NATS.
            assert sorted(small()) == sorted(f"small-{n}" for n in range(SMALL))
            assert max(small().values()) == 1, "duplicates"
            assert "poison" not in arrived
            assert (stats.dead_lettered, stats.undeliverable) == (0, 1)

            # The workbench sees the poison in the local store (no broker contacted) ...
            listed = meshgate("dlq", "list", str(config), "--local")
            assert listed.returncode == 0, listed.stderr
            (line,) = [
                row for row in listed.stdout.splitlines() if row.split()[:2] == ["1", "local"]
            ]
            assert "local" in line and "PublishRejected" in line and str(POISON_BYTES) in line
            shown = meshgate("dlq", "show", str(config), "1")
            assert "max_payload" in shown.stdout and "failed too" in shown.stdout, shown.stdout
            assert '"id":"poison"' in shown.stdout  # the original headers

            # ... and redrives it, bytes and headers unchanged, where it fits.
            await mqtt.subscribe(f"{run}/redriven", qos=1)
            redrive = await asyncio.to_thread(
                meshgate, "dlq", "redrive", str(config), "1", "--to", f"plant:{run}/redriven"
            )
            assert redrive.returncode == 0, redrive.stderr
            message = await asyncio.wait_for(anext(mqtt.messages), 30)
            assert message.payload == b"x" * POISON_BYTES
            user = dict(message.properties.UserProperty)  # type: ignore[union-attr]
            assert user["id"] == "poison" and user["specversion"] == "1.0"
        assert await gateway.store.entries() == []  # removed once the broker confirmed
        assert "0 dead letters" in meshgate("dlq", "list", str(config), "--local").stdout
    finally:
        await gateway.stop()
        await js.delete_stream(run)
        await nc.close()


def listed_ids(output: str, place: str) -> list[str]:
    """Ids of the ``dlq list`` rows at ``place`` (a destination or ``local``)."""
    return [row.split()[0] for row in output.splitlines()[1:] if row.split()[1:2] == [place]]


async def list_until(
    config: Path, check: Callable[[str], bool], *extra: str, timeout: float = 30
) -> str:
    """``meshgate dlq list`` again until its output passes ``check`` (or the deadline)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        listed = await asyncio.to_thread(
            meshgate, "dlq", "list", str(config), "--wait", "1", *extra
        )
        if check(listed.stdout) or asyncio.get_running_loop().time() > deadline:
            return listed.stdout + listed.stderr
        await asyncio.sleep(0.5)


@pytest.mark.timeout(180)
async def test_broker_dead_letters_are_read_back_redriven_and_requeued(
    tmp_path: Path, nats_url: str, kafka_bootstrap: str
) -> None:
    """Dead letters on JetStream and Kafka: listed, one redriven (acked), the others
    requeued for the next reader, then purged."""
    run = unique_name("dlqread")
    nc = await nats.connect(NATS_URL)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=run, subjects=[f"{run}.>"]))
    config = tmp_path / "gateway.yaml"
    config.write_text(
        textwrap.dedent(f"""
        gateway: {{id: {run}, state_dir: "{tmp_path / "state"}"}}
        connectors:
          edge: {{type: nats, servers: ["{NATS_URL}"]}}
          core: {{type: kafka, bootstrap_servers: "{kafka_bootstrap}"}}
        routes:
          - name: to-nats
            from: {{connector: edge, subject: "{run}.in.nats", jetstream: {{durable: a}}}}
            to: [{{connector: edge, subject: "{run}.out"}}]
            dead_letter: {{connector: edge, subject: "{run}.dlq"}}
          - name: to-kafka
            from: {{connector: edge, subject: "{run}.in.kafka", jetstream: {{durable: b}}}}
            to: [{{connector: edge, subject: "{run}.out"}}]
            dead_letter: {{connector: core, topic: "{run}-dlq"}}
        """)
    )
    for n in range(3):  # not CloudEvents, and no ingress rules: dead letters
        await js.publish(f"{run}.in.nats", b"legacy-nats-%d" % n, headers={"x-n": str(n)})
        await js.publish(f"{run}.in.kafka", b"legacy-kafka-%d" % n)
    gateway = Gateway(load_config(config))
    await gateway.start()
    try:
        stats = gateway.stats
        assert await until(
            lambda: stats["to-nats"].dead_lettered == 3 and stats["to-kafka"].dead_lettered == 3,
            60,
        ), stats
    finally:
        await gateway.stop()
    try:
        listed = await asyncio.to_thread(meshgate, "dlq", "list", str(config), "--wait", "1")
        assert listed.returncode == 0, listed.stderr
        on_nats = listed_ids(listed.stdout, f"edge:{run}.dlq")
        on_kafka = listed_ids(listed.stdout, f"core:{run}-dlq")
        assert (len(on_nats), len(on_kafka)) == (3, 3), listed.stdout + listed.stderr
        assert "NotACloudEvent" in listed.stdout

        shown = await asyncio.to_thread(meshgate, "dlq", "show", str(config), on_nats[0])
        assert shown.returncode == 0, shown.stderr
        assert "legacy-nats-" in shown.stdout and '"x-n":' in shown.stdout

        redriven = await nc.subscribe(f"{run}.redriven")
        result = await asyncio.to_thread(
            meshgate, "dlq", "redrive", str(config), on_nats[1], "--to", f"edge:{run}.redriven"
        )
        assert result.returncode == 0, result.stderr
        message = await redriven.next_msg(timeout=10)
        assert message.data.startswith(b"legacy-nats-") and "x-n" in (message.headers or {})

        # The redriven one was acked; the two others were requeued for the next reader
        # (a requeued JetStream message may take the read-back durable's ack_wait).
        left = sorted(set(on_nats) - {on_nats[1]})
        again = await list_until(
            config,
            lambda out: sorted(listed_ids(out, f"edge:{run}.dlq")) == left,
            "--route",
            "to-nats",  # Kafka is not read: its group join costs seconds per listing
        )
        assert sorted(listed_ids(again, f"edge:{run}.dlq")) == left, again

        purged = await asyncio.to_thread(
            meshgate, "dlq", "purge", str(config), "--all", "--route", "to-kafka"
        )
        assert "purged 3 dead letters" in purged.stdout, purged.stdout + purged.stderr
        final = await list_until(config, lambda out: len(listed_ids(out, f"edge:{run}.dlq")) == 2)
        assert listed_ids(final, f"core:{run}-dlq") == [], final
    finally:
        await js.delete_stream(run)
        await nc.close()
