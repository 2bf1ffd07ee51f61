"""The mesh view's control channel on an MQTT topic at QoS 0 (``connectors.meshchannel``)."""

from __future__ import annotations

from typing import Any

from connectors.meshchannel import ChannelSettings, MeshChannel

__all__ = ["MqttMeshChannel"]


class MqttMeshChannel(MeshChannel):
    """The control channel on an MQTT topic at QoS 0 (announcements repeat)."""

    address_key = "topic"
    wildcards = "+#"

    def target(self, address: str, settings: ChannelSettings) -> dict[str, Any]:
        return {"topic": address, "qos": 0}

    def source(self, address: str, listener: str, settings: ChannelSettings) -> dict[str, Any]:
        return {"topic": address, "qos": 0}
