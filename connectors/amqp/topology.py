"""Where AMQP 0-9-1 routes read and publish, for static analysis (``connectors.topology``).

An address is ``(exchange, routing_key)``; the default exchange ``""`` routes by queue
name. A source reads its queue: what the default exchange sends there, and what its
``bind:`` entries route to it (topic-exchange binding keys, ``*`` one word, ``#`` zero
or more). Sources consuming one queue share its messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.amqp.config import AmqpOptions, AmqpSource, AmqpTarget
from connectors.topology import ANY, ANY_TEXT, Address, Matcher, Topology, may_equal

__all__ = ["AmqpTopology", "amqp_match"]

_DEFAULT = "(default) "  # how the default exchange is shown before a routing key


def amqp_match(binding_key: str, routing_key: str) -> bool:
    """AMQP topic-exchange match: ``*`` exactly one word, ``#`` zero or more words."""
    pattern = binding_key.split(".")
    words = routing_key.split(".")

    def match(p: int, w: int) -> bool:
        if p == len(pattern):
            return w == len(words)
        if pattern[p] == "#":
            return any(match(p + 1, k) for k in range(w, len(words) + 1))
        if w == len(words):
            return False
        return (pattern[p] == "*" or pattern[p] == words[w]) and match(p + 1, w + 1)

    return match(0, 0)


class AmqpTopology(Topology[AmqpOptions, AmqpSource, AmqpTarget]):
    address_fields = ("exchange", "routing_key")

    def broker_identity(self, options: AmqpOptions) -> Mapping[str, Any]:
        return {"url": options.url}

    def source_reads(self, source: AmqpSource) -> Matcher:
        bindings = [(b.exchange, b.binding_key) for b in source.bind]

        def reads(address: Address) -> bool:
            exchange, routing_key = address
            if exchange == "" and may_equal(source.queue, routing_key):
                return True
            return any(
                (exchange == bound or ANY in exchange)
                and (ANY in routing_key or amqp_match(key, routing_key))
                for bound, key in bindings
            )

        return reads

    def source_text(self, source: AmqpSource) -> str:
        return f"queue {source.queue}"

    def address_text(self, address: Address) -> str:
        exchange, routing_key = address
        return f"{exchange or _DEFAULT.strip()} {routing_key}".replace(ANY, ANY_TEXT)

    def text_reads(self, source_text: str, address_text: str) -> bool:
        # Bindings are not announced: only the default exchange's route by queue name.
        return source_text == f"queue {address_text.removeprefix(_DEFAULT)}"

    def same_messages(self, a: AmqpSource, b: AmqpSource) -> bool:
        return a.queue == b.queue

    def sources_share(self, a: AmqpSource, b: AmqpSource) -> bool:
        return a.queue == b.queue
