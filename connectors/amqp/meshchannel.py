"""The mesh view's control channel on a routing key of a topic exchange, each listener
with a queue of its own (``connectors.meshchannel``)."""

from __future__ import annotations

from typing import Any

from connectors.meshchannel import ChannelSettings, MeshChannel

__all__ = ["AmqpMeshChannel"]


class AmqpMeshChannel(MeshChannel):
    """The control channel through a topic exchange (``gateway.mesh.exchange``) with a
    routing key; each listener declares a queue of its own that RabbitMQ deletes once
    unused for a while (``x-expires``)."""

    address_key = "routing_key"
    wildcards = "*#"

    def target(self, address: str, settings: ChannelSettings) -> dict[str, Any]:
        return {"exchange": settings.exchange, "routing_key": address, "persistent": False}

    def source(self, address: str, listener: str, settings: ChannelSettings) -> dict[str, Any]:
        return {
            "queue": f"meshgate-mesh-{listener}",
            "declare": True,
            "arguments": {"x-expires": int(max(60.0, 3 * settings.expire_seconds) * 1000)},
            "bind": [{"exchange": settings.exchange, "binding_key": address}],
        }
