"""In-order release of inbound acknowledgements (MQTT 3.1.1 and 5, section 4.6).

A receiver must send PUBACK (QoS 1) and PUBREC (QoS 2) in the order the PUBLISH
packets arrived, but the runtime acks deliveries in whatever order their targets
confirm. ``AckSequencer`` keeps the connection's unacknowledged messages in arrival
order and writes an ack only when every earlier one has been acked as well.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["AckSequencer", "PendingAck"]


class _AckState(enum.Enum):
    PENDING = "pending"
    SETTLED = "settled"
    HELD = "held"


@dataclass(slots=True, eq=False)
class PendingAck:
    """A received QoS 1/2 message whose acknowledgement is not written yet."""

    mid: int
    qos: int
    state: _AckState = _AckState.PENDING


class AckSequencer:
    """Writes acknowledgements in the order the PUBLISHes arrived (MQTT 3.1.1 / 5, 4.6).

    The runtime settles deliveries in any order; an ack is sent once every earlier
    QoS 1/2 message of the connection is acked too. A held entry (nack with requeue)
    is never acked, so what follows it waits for the reconnect that redelivers it.
    """

    def __init__(self, send: Callable[[int, int], None]) -> None:
        self._send = send
        self._queue: deque[PendingAck] = deque()
        self.changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def mids(self) -> list[int]:
        """Packet ids still waiting for their ack, in arrival order."""
        return [entry.mid for entry in self._queue]

    def track(self, mid: int, qos: int) -> PendingAck:
        entry = PendingAck(mid, qos)
        self._queue.append(entry)
        return entry

    def settle(self, entry: PendingAck) -> None:
        """The runtime acked ``entry``: write it and every settled ack behind it."""
        if entry.state is not _AckState.PENDING:
            return
        entry.state = _AckState.SETTLED
        while self._queue and self._queue[0].state is _AckState.SETTLED:
            head = self._queue.popleft()
            self._send(head.mid, head.qos)
        self.changed.set()

    def hold(self, entry: PendingAck) -> bool:
        """Never ack ``entry`` on this connection (the broker redelivers it after reconnect).

        False when ``entry`` was settled already: nothing to redeliver.
        """
        if entry.state is not _AckState.PENDING:
            return False
        entry.state = _AckState.HELD
        self.changed.set()
        return True

    @property
    def head_pending(self) -> bool:
        """An unsettled message is first in line, so earlier acks are still to come."""
        return bool(self._queue) and self._queue[0].state is _AckState.PENDING
