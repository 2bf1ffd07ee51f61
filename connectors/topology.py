"""Optional contract hook: where a connector's routes read and publish, for static analysis.

``meshgate validate`` and ``analyse`` warn about routes that form cycles through the
brokers, routes the mesh path rule makes unreachable, and gateways that read one
source twice (``gateway.analysis``, ``gateway.meshcheck``); the mesh view links the
routes peers announce (``gateway.meshview``). None of them knows a protocol: they ask
the connector class's ``topology`` (``Connector.topology``, a ``Topology`` instance,
or None). A connector type without one is left out of those checks, and the
analysis says so in a note ("no cycle analysis for connector type X: it does not
declare broker_identity") instead of staying silent.

Everything here is pure (config only, no broker). An *address* is a tuple of texts,
the target fields that say where a message goes (``(topic,)``, ``(exchange,
routing_key)``); ``ANY`` stands in it for each ``{...}`` template placeholder, so a
warning means "can form a cycle", not "will".
"""

from __future__ import annotations

import abc
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Final, Generic, TypeVar

if TYPE_CHECKING:
    from connectors.base import ConnectorOptions, SourceOptions, TargetOptions

__all__ = ["ANY", "ANY_TEXT", "Address", "Matcher", "Topology", "match_levels", "may_equal"]

ANY: Final = "\x00"
"""Stands for a template placeholder in an address part: any text."""
ANY_TEXT: Final = "{...}"
"""How ``ANY`` is shown (and how the mesh view's announcements carry it)."""

Address = tuple[str, ...]
Matcher = Callable[[Address], bool]

OptionsT = TypeVar("OptionsT", bound="ConnectorOptions")
SourceT = TypeVar("SourceT", bound="SourceOptions")
TargetT = TypeVar("TargetT", bound="TargetOptions")


class Topology(abc.ABC, Generic[OptionsT, SourceT, TargetT]):
    """Where one connector type's sources read and targets publish (see the module doc).

    ``address_fields`` names the target fields that make an address, in order (e.g.
    ``("exchange", "routing_key")``); override ``target_address`` instead where an
    address is not just those fields.
    """

    address_fields: ClassVar[tuple[str, ...]]

    @abc.abstractmethod
    def broker_identity(self, options: OptionsT) -> Mapping[str, Any]:
        """The options that name the broker (URLs, servers, namespace). Connectors of
        one type with equal identities reach one broker, whichever file declares them.
        May hold credentials: the core redacts every URL it shows."""

    def target_address(self, target: TargetT, field: Callable[[str], str]) -> Address:
        """Where ``target`` publishes; ``field(name)`` is the text of its field ``name``
        with ``ANY`` for each template placeholder. Default: the ``address_fields``."""
        return tuple(field(name) for name in self.address_fields)

    @abc.abstractmethod
    def source_reads(self, source: SourceT) -> Matcher:
        """A test of whether ``source`` can receive what is published at an address
        (built once per source; an ``ANY`` part may be anything)."""

    @abc.abstractmethod
    def source_text(self, source: SourceT) -> str:
        """What ``source`` reads, as text (topics, queue, subject filter): shown in the
        broker graph and announced to the mesh view."""

    def address_text(self, address: Address) -> str:
        """An address as text, ``{...}`` for each placeholder (also announced)."""
        return " ".join(address).replace(ANY, ANY_TEXT)

    def text_reads(self, source_text: str, address_text: str) -> bool:
        """Whether a source announced as ``source_text`` reads ``address_text`` (the mesh
        view sees peers' texts only). The default: the same text."""
        return source_text == address_text

    def same_messages(self, a: SourceT, b: SourceT) -> bool:
        """Whether two sources on one broker read the same messages."""
        return self.source_text(a) == self.source_text(b)

    def sources_share(self, a: SourceT, b: SourceT) -> bool:
        """Whether two sources split those messages between them (a consumer group, a
        shared queue): otherwise two gateways both get every message. Default: no."""
        return False


def may_equal(literal: str, part: str) -> bool:
    """Whether an address ``part`` (``ANY`` for a placeholder) can be exactly ``literal``."""
    if ANY not in part:
        return part == literal
    regex = ".*".join(re.escape(piece) for piece in part.split(ANY))
    return re.fullmatch(regex, literal, re.DOTALL) is not None


def match_levels(
    pattern: list[str],
    levels: list[str],
    one: str,
    rest: str,
    rest_may_be_empty: bool,
    any_marker: str | None = None,
) -> bool:
    """Level-wise wildcard match (MQTT topics, NATS subjects): ``one`` matches one
    level, ``rest`` the remaining levels at the end (also none if
    ``rest_may_be_empty``). A level holding ``any_marker`` (a template placeholder, for
    static analysis) matches any pattern level."""
    for i, part in enumerate(pattern):
        if part == rest:
            remaining = len(levels) - i
            return remaining >= (0 if rest_may_be_empty else 1)
        if i >= len(levels):
            return False
        placeholder = any_marker is not None and any_marker in levels[i]
        if part not in (one, levels[i]) and not placeholder:
            return False
    return len(pattern) == len(levels)
