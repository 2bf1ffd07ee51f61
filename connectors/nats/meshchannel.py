"""The mesh view's control channel on a core NATS subject (``connectors.meshchannel``)."""

from __future__ import annotations

from typing import Any

from connectors.meshchannel import ChannelSettings, MeshChannel

__all__ = ["NatsMeshChannel"]


class NatsMeshChannel(MeshChannel):
    """The control channel on a core NATS subject (at most once: announcements repeat)."""

    address_key = "subject"
    wildcards = "*> "

    def target(self, address: str, settings: ChannelSettings) -> dict[str, Any]:
        return {"subject": address, "jetstream": False}

    def source(self, address: str, listener: str, settings: ChannelSettings) -> dict[str, Any]:
        return {"subject": address}
