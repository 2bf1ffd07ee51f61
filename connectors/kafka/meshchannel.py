"""The mesh view's control channel on a Kafka topic, each listener a consumer group of
its own reading from the latest offset (``connectors.meshchannel``)."""

from __future__ import annotations

from typing import Any

from connectors.meshchannel import ChannelSettings, MeshChannel

__all__ = ["KafkaMeshChannel"]


class KafkaMeshChannel(MeshChannel):
    """The control channel on a Kafka topic; each listener is a group of its own that
    starts at the latest offset (old announcements are stale)."""

    address_key = "topic"

    def target(self, address: str, settings: ChannelSettings) -> dict[str, Any]:
        return {"topic": address}

    def source(self, address: str, listener: str, settings: ChannelSettings) -> dict[str, Any]:
        return {
            "topics": [address],
            "group_id": f"meshgate-mesh-{listener}",
            "auto_offset_reset": "latest",
        }
