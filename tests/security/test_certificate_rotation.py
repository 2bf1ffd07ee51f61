"""Certificate rotation (docs/security.md "Rotating certificates and keys"): files
replaced at the same path apply to the next connection, reconnects included, without
a restart; a reload with new paths replaces the connector.

A private TLS nats-server is switched from a certificate of the old CA to one of a new
CA (a restart on the same port); the connector's ``ca_file`` meanwhile became a
bundle of both (the doc's no-outage order). The connector must reconnect on its own:
nats-py keeps the TLS context it was given for every reconnect, so without a fresh
context per attempt it would retry the old CA forever (``max_reconnect_attempts: -1``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
from pathlib import Path

import nats
import pytest
import yaml

from connectors.nats import NatsConnector, NatsOptions
from gateway.config import load_config
from gateway.localbrokers import LOOPBACK, nats_server_binary
from gateway.reload import reload_from
from gateway.runtime import Gateway
from tests.brokers import unique_name
from tests.faults.brokers import BrokerProcess
from tests.security.brokers import Pki, make_pki
from tests.security.test_nats_security import encrypted, round_trip

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


class RotatingNats(BrokerProcess):
    """A TLS nats-server whose certificate files can be swapped between restarts."""

    name = "nats-rotating"

    def install(self, pki: Pki) -> None:
        shutil.copy(pki.server_cert, self.workdir / "server.pem")
        shutil.copy(pki.server_key, self.workdir / "server.key")

    def command(self) -> list[str]:
        conf = self.workdir / "nats.conf"
        conf.write_text(
            f"listen: {LOOPBACK}:{self.port}\n"
            "tls {\n"
            f'  cert_file: "{self.workdir / "server.pem"}"\n'
            f'  key_file: "{self.workdir / "server.key"}"\n'
            "  timeout: 2\n"
            "}\n"
        )
        return [str(nats_server_binary()), "-c", str(conf)]


def replace(path: Path, content: bytes) -> None:
    """Atomic replacement: write beside, then rename (what the doc tells operators)."""
    fresh = path.with_suffix(".new")
    fresh.write_bytes(content)
    os.replace(fresh, path)


async def test_a_reconnect_uses_the_rotated_ca_file(pki: Pki, secdir: Path) -> None:
    new = make_pki(secdir / "pki-rotated")
    bundle = secdir / f"{unique_name('bundle')}.pem"
    bundle.write_bytes(pki.ca.read_bytes())
    broker = RotatingNats()
    broker.install(pki)
    with broker:
        options = NatsOptions(
            servers=(f"tls://{LOOPBACK}:{broker.port}",),
            tls={"ca_file": bundle},
            connect_timeout_seconds=1.0,
            reconnect_wait_seconds=0.1,
            reconnect_jitter_seconds=0.0,
        )
        conn = NatsConnector(unique_name("nats-rot"), options)
        await asyncio.wait_for(conn.start(), 10)
        try:
            await round_trip(conn)
            link = conn._link
            generation = link.generation  # bumped by every (re)connection
            replace(bundle, pki.ca.read_bytes() + new.ca.read_bytes())
            broker.stop()
            broker.install(new)
            broker.start()
            deadline = asyncio.get_running_loop().time() + 10
            while not (link.generation > generation and encrypted(conn)):
                assert asyncio.get_running_loop().time() < deadline, "never reconnected"
                await asyncio.sleep(0.1)
            await round_trip(conn)
        finally:
            await asyncio.wait_for(conn.close(), 10)


async def test_a_reload_with_new_paths_replaces_the_connector(
    pki: Pki, secdir: Path, tmp_path: Path
) -> None:
    """The doc's other way: new files under new paths, named in the route file; the
    reload replaces exactly that connector (the old CA file is left as it was)."""
    new = make_pki(secdir / "pki-reloaded")
    run = unique_name("rot")
    broker = RotatingNats()
    broker.install(pki)
    received: list[bytes] = []

    async def collect(msg: nats.aio.msg.Msg) -> None:
        received.append(msg.data)

    def config(ca_file: Path) -> Path:
        path = tmp_path / "gateway.yaml"
        path.write_text(
            yaml.safe_dump(
                {
                    "gateway": {
                        "id": run,
                        "state_dir": str(tmp_path / "state"),
                        "drain_timeout_seconds": 2,
                    },
                    "connectors": {
                        "edge": {
                            "type": "nats",
                            "servers": [f"tls://{LOOPBACK}:{broker.port}"],
                            "tls": {"ca_file": str(ca_file)},
                            "reconnect_wait_seconds": 0.1,
                        }
                    },
                    "routes": [
                        {
                            "name": "relay",
                            "from": {"connector": "edge", "subject": f"{run}.in"},
                            "ingress": {"type": "com.example.raw", "source": "urn:test:rot"},
                            "to": [{"connector": "edge", "subject": f"{run}.out"}],
                        }
                    ],
                }
            )
        )
        return path

    async def flows(ca: Path) -> None:
        """A message published on .in arrives on .out (core NATS: publish until then)."""
        context = ssl.create_default_context(cafile=str(ca))
        client = await nats.connect(f"tls://{LOOPBACK}:{broker.port}", tls=context)
        try:
            before = len(received)
            await client.subscribe(f"{run}.out", cb=collect)
            deadline = asyncio.get_running_loop().time() + 15
            while len(received) == before:
                assert asyncio.get_running_loop().time() < deadline, "nothing was relayed"
                await client.publish(f"{run}.in", b"ping")
                await asyncio.sleep(0.2)
        finally:
            await client.close()

    with broker:
        gateway = Gateway(load_config(config(pki.ca)))
        await gateway.start()
        try:
            await flows(pki.ca)
            first = gateway.connectors["edge"]
            broker.stop()
            broker.install(new)
            broker.start()
            # Bounded: closing the old connector, stuck reconnecting with the old CA,
            # must not wait on nats-py's reconnect loop (it once took 15 s, abandoned).
            async with asyncio.timeout(10):
                assert await reload_from(config(new.ca), gateway)
            assert gateway.connectors["edge"] is not first  # replaced: its options changed
            await flows(new.ca)
        finally:
            await gateway.stop()
