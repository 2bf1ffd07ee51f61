"""Peers of the gateway in the bench: bridges a user would write instead of meshgate.

Each runs as a child process (``python -m bench.peers.<module> spec.yaml``) between the
bench's raw publisher and raw consumer, exactly where the gateway process sits, so its
rate and CPU are measured the same way (``bench.gateway_proc``):

- ``handwritten``: a minimal bridge on the same clients as meshgate, per message:
  receive, publish and wait for the broker's confirmation, then ack the source
  (nats-py pull ``fetch`` + JetStream publish/PubAck + ``ack``; aiokafka with manual
  commits; aio-pika with publisher confirms and manual acks; aiomqtt/paho QoS 1 with
  manual PUBACKs). Messages of one fetched batch (or up to the prefetch window) are
  forwarded concurrently.
- ``faststream`` (``faststream_app``): an idiomatic FastStream app (``pip install
  'meshgate[bench]'``): a subscriber on the source broker with ``AckPolicy.ACK``
  whose handler publishes to the target broker(s) and returns; FastStream's defaults
  otherwise.

- ``shovel``: the RabbitMQ shovel (``bench.peers.shovel``), AMQP to AMQP only, with
  ``ack-mode: on-confirm``; it runs inside the broker, so its CPU is the broker's CPU
  during the run minus the broker's CPU for the raw clients (see ``IN_BROKER``).

- ``mosquitto-bridge`` (``bench.peers.mosquitto_bridge``): a second Mosquitto whose
  two bridge connections (QoS 1, persistent sessions) move MQTT to MQTT only; the
  peer process ``exec``s it, so its CPU is the bridging broker's own.

The first two map CloudEvents attributes between the protocols' carriers
(``bench.peers.carry``) as any bridge of CloudEvents must; none validates events
(meshgate does).
"""

from __future__ import annotations

import importlib.util

__all__ = ["PEERS", "available"]

PEERS = {
    "handwritten": "bench.peers.handwritten",
    "faststream": "bench.peers.faststream_app",
    "shovel": "bench.peers.shovel",
    "mosquitto-bridge": "bench.peers.mosquitto_bridge",
}
"""Peer bridge name -> the module run as ``python -m``, in table order."""

IN_BROKER = frozenset({"shovel"})
"""Peers that run inside the RabbitMQ node: their CPU is the node's CPU during the run
minus what the node spends on the raw clients (``bench.brokercpu``), and meshgate's
CPU ratio to them counts what the node spends on meshgate's behalf too."""


def available(name: str, source: str = "", targets: tuple[str, ...] = ()) -> str | None:
    """None when peer ``name`` can bridge ``source`` -> ``targets`` here, else why not."""
    if name == "faststream" and importlib.util.find_spec("faststream") is None:
        return "FastStream is not installed (pip install 'meshgate[bench]')"
    if name == "shovel":
        from bench.peers.shovel import why_not

        return why_not(source, targets)
    if name == "mosquitto-bridge":
        from bench.peers.mosquitto_bridge import why_not as bridge_why_not

        return bridge_why_not(source, targets)
    return None
