"""``Delivery.nack`` is keyword-only (``nack(requeue=True)``): a bare ``nack(True)`` says
nothing at the call site, so it is refused (issue 13, finding 7)."""

from __future__ import annotations

import uuid

import pytest

from connectors.base import MessageSpec, dry_run_delivery
from connectors.memory import MemoryBroker, MemoryConnector, MemoryOptions, MemorySource
from routing.bindings import nats as binding


async def test_a_positional_requeue_is_refused_and_the_keyword_requeues() -> None:
    namespace = f"nack-{uuid.uuid4().hex[:8]}"
    broker = MemoryBroker.get(namespace)
    broker.put("in", binding.NatsMessage(b"m", None))
    connector = MemoryConnector("mem", MemoryOptions(type="memory", namespace=namespace))
    await connector.start()
    stream = aiter(connector.consume(MemorySource(connector="mem", topic="in")))
    delivery = await anext(stream)
    with pytest.raises(TypeError):
        await delivery.nack(True)  # positional: what mypy flags and Python refuses
    await delivery.nack(requeue=True)
    again = await anext(stream)  # requeued: delivered again
    assert again.payload == b"m" and broker.nacked
    await again.ack()
    await connector.close()
    await stream.aclose()


async def test_a_dry_run_delivery_takes_the_keyword_too() -> None:
    delivery = dry_run_delivery(MessageSpec(b""), None, "a")
    await delivery.nack(requeue=False)  # settles nothing, raises nothing
