"""Record batches built by the connector itself (aiokafka's ``create_batch``/``send_batch``).

``Producer.send_many`` places each record on a partition and appends it to a
``BatchBuilder`` of that partition; a full builder is closed and another started.
The builders go to the producer's accumulator as they are (``send_batch``), which
skips its per-record work (a future, a size check and a partitioner call each) while
acks=all, idempotence (sequence numbers are set when a batch is drained), retries
and compression stay the producer's.

Placement is the producer's own for keyed records: aiokafka's ``DefaultPartitioner``
(murmur2 of the key over every partition of the topic), so a key lands where
``send`` puts it. Records without a key have no placement to keep: they stick to
one partition per topic and call and move to another when its builder is full
(as Kafka's sticky partitioner, KIP-480). The partitions are taken in turn across
calls rather than at random: the accumulator queues one batch per partition, so
concurrent calls on different partitions share the next produce request instead of
waiting for each other's batches to be drained.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from routing.bindings.kafka import KafkaMessage

__all__ = ["Batch", "BatchPlan", "oversize"]

_PARTITIONER = DefaultPartitioner()
"""The producer's partitioner: producer_kwargs never sets another one."""


def oversize(message: KafkaMessage, headers: list[tuple[str, bytes]], limit: int) -> int:
    """The record's size when it exceeds ``limit`` (max_request_size), else 0; the
    estimate ``AIOKafkaProducer.send`` checks before it takes a record."""
    size: int = DefaultRecordBatchBuilder.estimate_size_in_bytes(
        message.key, message.value, headers
    )
    return size if size > limit else 0


@dataclass(slots=True)
class Batch:
    """One builder for one partition and the indexes of the records in it."""

    topic: str
    partition: int
    builder: Any
    items: list[int] = field(default_factory=list)


class BatchPlan:
    """Builders per partition for one ``send_many`` call, in the order they filled."""

    def __init__(self, producer: Any, turns: Iterator[int]) -> None:
        self._producer = producer
        self._turns = turns  # the producer's: unkeyed records rotate across calls
        self._cluster = producer.client.cluster
        self._open: dict[tuple[str, int], Batch] = {}
        self._sticky: dict[str, int] = {}
        self._partitions: dict[str, tuple[list[int], list[int]]] = {}
        self.batches: list[Batch] = []

    def add(self, index: int, topic: str, message: KafkaMessage, headers: list[Any]) -> None:
        """Append record ``index`` to a builder of its partition (metadata for ``topic``
        must be known: ``AIOKafkaProducer.partitions_for`` first)."""
        key = message.key
        if key is not None:
            known = self._partitions.get(topic)
            if known is None:  # as AIOKafkaProducer._partition lists them
                known = self._partitions[topic] = (
                    list(self._cluster.partitions_for_topic(topic)),
                    list(self._cluster.available_partitions_for_topic(topic)),
                )
            partition = _PARTITIONER(key, *known)
            self._append(index, topic, partition, message, headers, roll=False)
            return
        partition = self._sticky.get(topic)
        if partition is None:
            partition = self._sticky[topic] = self._pick(topic, None)
        if not self._append(index, topic, partition, message, headers, roll=True):
            # Full: unkeyed records move on to another partition, as Kafka's do.
            partition = self._sticky[topic] = self._pick(topic, partition)
            self._append(index, topic, partition, message, headers, roll=False)

    def _append(
        self,
        index: int,
        topic: str,
        partition: int,
        message: KafkaMessage,
        headers: list[Any],
        *,
        roll: bool,
    ) -> bool:
        """Into the open builder of (topic, partition); a new one when it is full,
        unless ``roll`` (then False: the caller places the record elsewhere)."""
        tp = (topic, partition)
        batch = self._open.get(tp)
        if batch is not None and self._into(batch, message, headers):
            batch.items.append(index)
            return True
        if batch is not None:
            batch.builder.close()
            del self._open[tp]
            if roll:
                return False
        batch = Batch(topic, partition, self._producer.create_batch())
        self._open[tp] = batch
        self.batches.append(batch)
        # The first record of a builder always fits (an oversize one goes alone).
        self._into(batch, message, headers)
        batch.items.append(index)
        return True

    @staticmethod
    def _into(batch: Batch, message: KafkaMessage, headers: list[Any]) -> bool:
        value = message.value
        if value is None and message.key is None:
            value = b""  # as Producer.send: a record needs a key or a value
        metadata = batch.builder.append(
            timestamp=None, key=message.key, value=value, headers=headers
        )
        return metadata is not None

    def _pick(self, topic: str, leaving: int | None) -> int:
        """The next available partition in turn (any when none is), another than
        ``leaving`` when there is a choice."""
        choices = sorted(self._cluster.available_partitions_for_topic(topic)) or sorted(
            self._cluster.partitions_for_topic(topic)
        )
        if leaving in choices and len(choices) > 1:
            choices.remove(leaving)
        return int(choices[next(self._turns) % len(choices)])

    def close(self) -> None:
        """Close every builder: nothing else is appended to them (``send`` would
        otherwise add its records to a submitted builder left open)."""
        for batch in self._open.values():
            batch.builder.close()
        self._open.clear()
