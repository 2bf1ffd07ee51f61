"""Which Kafka offsets are safe to commit when deliveries are acked out of order.

Kafka stores one position per partition and consumer group: committing offset
``n`` says "every record below ``n`` is done". The runtime processes several
deliveries of a partition at once and acks them in any order, so a partition's
commit point is the first offset still unacknowledged (or one past the last
acked record when none is pending) — never simply the highest acked offset.

This module is pure (no client imports) so its rules are unit-testable:

* ``track`` records a delivery in offset order and returns its ``Pending`` token;
* ``ack`` marks a token done; the commit point advances over the acked prefix;
* ``rewind`` forgets tokens at or above an offset (nack with requeue: the
  consumer seeks back, the records come again as new deliveries);
* ``revoke`` forgets whole partitions (rebalance, close): late acks for their
  tokens are ignored, because another consumer redelivers from the last commit.

``in_flight`` counts tokens neither acked nor forgotten; the source waits while
it is at its limit.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["OffsetTracker", "PartitionOffsets", "Pending"]

K = TypeVar("K", bound=Hashable)


@dataclass(slots=True, eq=False)
class Pending:
    """One delivered record awaiting its ack; identity matters, not value."""

    offset: int
    acked: bool = False
    forgotten: bool = False

    @property
    def open(self) -> bool:
        """Neither acked nor forgotten: an ack or nack for it still counts."""
        return not (self.acked or self.forgotten)


@dataclass(slots=True)
class PartitionOffsets:
    """Pending deliveries of one partition, in offset order."""

    pending: deque[Pending] = field(default_factory=deque)
    done_to: int | None = None
    """Next offset to commit: everything below it was acked (None: nothing yet)."""
    committed: int | None = None
    """The offset last committed successfully by this consumer."""

    def advance(self) -> None:
        while self.pending and self.pending[0].acked:
            self.done_to = self.pending.popleft().offset + 1


class OffsetTracker(Generic[K]):
    """Per-partition commit points for out-of-order acks; see the module docstring."""

    def __init__(self) -> None:
        self._partitions: dict[K, PartitionOffsets] = {}
        self.in_flight = 0

    def __contains__(self, partition: K) -> bool:
        return partition in self._partitions

    def track(self, partition: K, offset: int) -> Pending:
        """Record a delivery of ``partition`` at ``offset``.

        Offsets normally increase; one at or below a pending delivery means the
        consumer went back (a seek), so the pending ones from there on are forgotten
        first: they are being delivered again.
        """
        state = self._partitions.get(partition)
        if state is None:  # not setdefault: that would build one per record
            state = self._partitions[partition] = PartitionOffsets()
        if state.pending and offset <= state.pending[-1].offset:
            self.rewind(partition, offset)
        entry = Pending(offset)
        state.pending.append(entry)
        self.in_flight += 1
        return entry

    def ack(self, partition: K, entry: Pending) -> bool:
        """Mark ``entry`` done; False (and nothing changes) if it was already closed."""
        if not entry.open:
            return False
        state = self._partitions.get(partition)
        if state is None:  # pragma: no cover - forgotten entries are never open
            return False
        entry.acked = True
        self.in_flight -= 1
        state.advance()
        return True

    def rewind(self, partition: K, offset: int) -> None:
        """Forget every pending delivery of ``partition`` at or above ``offset``."""
        state = self._partitions.get(partition)
        if state is None:
            return
        while state.pending and state.pending[-1].offset >= offset:
            self._forget(state.pending.pop())

    def revoke(self, partitions: Iterable[K]) -> None:
        """Forget ``partitions`` entirely (rebalance or close)."""
        for partition in partitions:
            state = self._partitions.pop(partition, None)
            if state is not None:
                for entry in state.pending:
                    self._forget(entry)
                state.pending.clear()

    def clear(self) -> None:
        """Forget every partition (close): late acks are ignored from now on."""
        self.revoke(list(self._partitions))

    def due(self, partitions: Iterable[K] | None = None) -> dict[K, int]:
        """Commit points that moved since the last successful commit."""
        chosen = self._partitions if partitions is None else partitions
        offsets: dict[K, int] = {}
        for partition in chosen:
            state = self._partitions.get(partition)
            if state is not None and state.done_to is not None and state.done_to != state.committed:
                offsets[partition] = state.done_to
        return offsets

    def committed(self, offsets: dict[K, int]) -> None:
        """Record a successful commit of ``offsets``."""
        for partition, offset in offsets.items():
            state = self._partitions.get(partition)
            if state is not None:
                state.committed = offset

    def _forget(self, entry: Pending) -> None:
        if entry.open:
            self.in_flight -= 1
        entry.forgotten = True
