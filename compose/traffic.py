"""Traffic for the compose stack: the producers the gateway's routes read from.

- a CloudEvents-native shop publishing binary-mode orders to JetStream
  (``shop.orders.<region>``); every 20th is malformed on purpose (``ce-time`` is not a
  timestamp), so the dead-letter path shows on the dashboard;
- a legacy MQTT device publishing plain JSON to ``plant/<line>/telemetry`` (QoS 1),
  which the telemetry route wraps into CloudEvents.

Runs in the meshgate image (nats-py, aiomqtt and meshgate's bindings are installed
there): ``python traffic.py --nats nats://nats:4222 --mqtt mosquitto:1883``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time

import aiomqtt
import nats

from routing.bindings import Mode
from routing.bindings import nats as nats_binding
from routing.event import CloudEvent

REGIONS = ("eu", "us", "ap")


def order(n: int) -> tuple[str, bytes, dict[str, str]]:
    region = REGIONS[n % len(REGIONS)]
    event = CloudEvent(
        id=f"order-{int(time.time())}-{n}",
        source=f"urn:shop:{region}",
        type="com.acme.order.created",
        subject=f"order/{n}",
        time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        datacontenttype="application/json",
        data=json.dumps({"order": n, "amount": 10 + n % 90}).encode(),
    )
    message = nats_binding.to_message(event, Mode.BINARY)
    headers = dict(message.headers or {})
    if n % 20 == 0:
        headers["ce-time"] = "yesterday"  # malformed: goes to the dead letter
    return f"shop.orders.{region}", message.data, headers


async def shop(url: str, rate: float, count: int | None) -> None:
    while True:  # the broker or the stream may not be there yet: retry
        try:
            client = await nats.connect(url, max_reconnect_attempts=-1)
            break
        except Exception as exc:  # any connect failure: wait and try again
            print(f"traffic: NATS {url}: {exc}; retrying", flush=True)
            await asyncio.sleep(2)
    js = client.jetstream()
    try:
        n = 0
        while count is None or n < count:
            subject, data, headers = order(n + 1)
            try:
                await js.publish(subject, data, headers=headers, timeout=5)
                n += 1
            except Exception as exc:  # no stream yet (the gateway creates it): retry
                print(f"traffic: publish to {subject}: {exc}", flush=True)
                await asyncio.sleep(1)
            await asyncio.sleep(1 / rate)
    finally:
        await client.close()


async def device(host: str, port: int, rate: float, count: int | None) -> None:
    n = 0
    while count is None or n < count:
        try:
            async with aiomqtt.Client(host, port, identifier="compose-traffic-device") as client:
                while count is None or n < count:
                    line = ("line1", "line2")[n % 2]
                    payload = json.dumps({"line": line, "temp": 20 + (n % 50) / 10})
                    await client.publish(f"plant/{line}/telemetry", payload, qos=1)
                    n += 1
                    await asyncio.sleep(1 / rate)
        except aiomqtt.MqttError as exc:
            print(f"traffic: MQTT {host}:{port}: {exc}; retrying", flush=True)
            await asyncio.sleep(2)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    parser.add_argument("--mqtt", default="127.0.0.1:1883", help="HOST:PORT")
    parser.add_argument("--rate", type=float, default=20.0, help="messages/s per producer")
    parser.add_argument("--count", type=int, default=None, help="stop after N per producer")
    args = parser.parse_args()
    host, _, port = args.mqtt.rpartition(":")
    await asyncio.gather(
        shop(args.nats, args.rate, args.count),
        device(host, int(port), args.rate, args.count),
    )


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
