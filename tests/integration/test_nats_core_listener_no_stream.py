"""A JetStream target whose subject no stream captures, while a core NATS subscriber
listens on it: the server hands the publish to the subscriber (no "no responders"), so
it would time out; the connector asks the stream-names API and refuses it clearly."""

from __future__ import annotations

import nats
import pytest

from connectors.errors import PublishRejected
from connectors.nats import NatsConnector, NatsOptions, NatsTarget
from connectors.testing import sample_event
from tests.brokers import NATS_URL, require_port, unique_name


async def test_core_listener_without_stream_is_a_clear_rejection() -> None:
    require_port("NATS", 4222)
    subject = f"{unique_name('nostream')}.x"
    listener = await nats.connect(NATS_URL)
    await listener.subscribe(subject)  # takes the publish and never answers
    await listener.flush()
    conn = NatsConnector(
        unique_name("nats-conn"), NatsOptions(servers=(NATS_URL,), publish_timeout=0.5)
    )
    await conn.start()
    try:
        with pytest.raises(PublishRejected, match="no JetStream stream captures subject") as err:
            await conn.publish(NatsTarget(connector="nats", subject=subject), sample_event())
        assert "a core NATS subscriber took the publish" in str(err.value)
    finally:
        await conn.close()
        await listener.close()
