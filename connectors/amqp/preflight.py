"""``meshgate validate --connect`` for AMQP: do the queues and exchanges the routes need exist?

Each check is a passive declare on a scratch channel (RabbitMQ closes a channel whose
passive declare fails, so every check gets its own); nothing is created.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import aiormq

from connectors.amqp.config import AmqpSource, AmqpTarget
from connectors.amqp.link import Link

__all__ = ["preflight"]

_TEMPLATE = re.compile(r"\{[^{}]*\}")


async def _exists(link: Link, kind: str, name: str) -> bool:
    connection = await link.connection()
    channel = connection.channel(publisher_confirms=False)
    await channel.initialize()
    try:
        if kind == "queue":
            await channel.declare_queue(name, passive=True)
        else:
            await channel.get_exchange(name, ensure=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return False
    finally:
        if not channel.is_closed:
            await channel.close()
    return True


async def preflight(
    link: Link, sources: Sequence[AmqpSource], targets: Sequence[AmqpTarget]
) -> list[str]:
    queues, exchanges = _expected(sources, targets)
    problems: list[str] = []
    for name, what in queues.items():
        if not await _exists(link, "queue", name):
            problems.append(f"{what} does not exist")
    for name, what in exchanges.items():
        if not await _exists(link, "exchange", name):
            problems.append(f"{what} does not exist")
    return problems


def _expected(
    sources: Sequence[AmqpSource], targets: Sequence[AmqpTarget]
) -> tuple[dict[str, str], dict[str, str]]:
    """The queues and exchanges the routes need but do not declare, by name -> what
    needs them (templated names are known only per message: skipped)."""
    queues: dict[str, str] = {}
    exchanges: dict[str, str] = {}
    for source in sources:
        if not source.declare:
            queues.setdefault(
                source.queue, f"queue {source.queue!r} (a route source; declare: false)"
            )
        for binding in source.bind:
            if binding.exchange:
                exchanges.setdefault(
                    binding.exchange,
                    f"exchange {binding.exchange!r} (bound by queue {source.queue!r})",
                )
    for target in targets:
        if _TEMPLATE.search(target.exchange):
            continue
        if target.exchange and target.declare_exchange is None:
            exchanges.setdefault(target.exchange, f"exchange {target.exchange!r} (a target)")
        if not target.exchange and not _TEMPLATE.search(target.routing_key):
            # The default exchange drops what no queue of that name takes.
            queues.setdefault(
                target.routing_key,
                f"queue {target.routing_key!r} (a target on the default exchange)",
            )
    return queues, exchanges
