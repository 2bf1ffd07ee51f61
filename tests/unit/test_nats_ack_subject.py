"""JetStream ack subjects are read directly (not through nats-py's ``msg.metadata``)."""

from __future__ import annotations

import nats.errors
import pytest
from nats.aio.msg import Msg

from connectors.nats.source import _ack_coordinates

V1 = "$JS.ACK.ORDERS.gw.3.1042.977.1764150000123456789.12"
V2 = "$JS.ACK.hub.ACCHASH.ORDERS.gw.3.1042.977.1764150000123456789.12.rNd"
V2_NO_TOKEN = "$JS.ACK._.ACCHASH.ORDERS.gw.1.5.5.1764150000123456789.0"


@pytest.mark.parametrize("reply", [V1, V2, V2_NO_TOKEN])
def test_agrees_with_nats_py(reply: str) -> None:
    meta = Msg.Metadata._from_reply(reply)
    assert _ack_coordinates(reply) == (meta.stream, meta.sequence.stream, meta.num_delivered)


@pytest.mark.parametrize(
    "reply",
    ["_INBOX.abc.def", "$JS.ACK.ORDERS.gw.3", "$JS.ACK.ORDERS.gw.x.1042.977.1.12", ""],
)
def test_other_subjects_are_no_jetstream_message(reply: str) -> None:
    with pytest.raises(nats.errors.NotJSMessageError):
        _ack_coordinates(reply)
