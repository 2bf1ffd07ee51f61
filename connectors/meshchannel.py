"""Optional contract hook: how a connector type carries the mesh view's control channel.

``gateway.mesh`` names a connector; every gateway announces itself on one address of
it and listens there (``gateway.meshview``, docs/mesh.md#the-mesh-view). The core knows
no protocol: it asks the connector class's ``mesh_channel`` (``Connector.mesh_channel``,
a ``MeshChannel`` or None) which ``gateway.mesh`` key holds the address, which
characters would make it a wildcard, and the ``to:``/``from:`` bodies to publish and
listen with. A type without the hook cannot carry the channel: ``meshgate validate``
says so at ``gateway.mesh.connector``.

Pure: builds config bodies, the core validates them with the connector's own models.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal

__all__ = ["ADDRESS_KEYS", "ChannelSettings", "MeshChannel"]

ADDRESS_KEYS: Final = ("subject", "topic", "routing_key")
"""The ``gateway.mesh`` keys a channel's address may live in."""


@dataclass(frozen=True, slots=True)
class ChannelSettings:
    """The rest of ``gateway.mesh`` a channel may read."""

    exchange: str
    """``gateway.mesh.exchange`` (AMQP: the topic exchange announcements go through)."""
    expire_seconds: float
    """Peers silent this long are forgotten: a listener's queue may expire after it."""


class MeshChannel(abc.ABC):
    """Where one connector type announces and listens (see the module doc).

    Announcements go out at most once where the protocol allows it (they repeat every
    interval); each listener reads alone (no queue, share or consumer group shared
    with another gateway), so every gateway hears every announcement.
    """

    address_key: ClassVar[Literal["subject", "topic", "routing_key"]]
    """The ``gateway.mesh`` key holding the address (one of ``ADDRESS_KEYS``)."""
    wildcards: ClassVar[str] = ""
    """Characters the address may not hold (they would make it a subscription pattern)."""

    @abc.abstractmethod
    def target(self, address: str, settings: ChannelSettings) -> dict[str, Any]:
        """The ``to:`` body (without ``connector``) announcements are published with."""

    @abc.abstractmethod
    def source(self, address: str, listener: str, settings: ChannelSettings) -> dict[str, Any]:
        """The ``from:`` body (without ``connector``) of one listener; ``listener`` is
        unique per gateway process (a group, durable or queue name)."""
