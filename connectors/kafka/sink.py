"""Producing side of the Kafka connector: one idempotent ``acks=all`` producer per connector.

``publish`` returns only after every in-sync replica has the record. aiokafka
errors are translated at this boundary from their ``retriable`` class data (see
``aiokafka.errors``), never from message text:

================================================  ==================
timeouts (``KafkaTimeoutError``, request timeout)  ``PublishTimeout``
``retriable`` errors, lost connections             ``ConnectionLost``
record too large, authorization, invalid topic...  ``PublishRejected``
================================================  ==================
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    IncompatibleBrokerVersion,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    ProducerClosed,
    RecordTooLargeError,
    RequestTimedOutError,
    UnsupportedVersionError,
)

from connectors.errors import ConnectionLost, ConnectorError, PublishRejected, PublishTimeout
from connectors.kafka.batches import Batch, BatchPlan, oversize
from connectors.kafka.config import KafkaOptions
from routing.bindings.kafka import KafkaMessage

__all__ = ["Producer", "translate"]

log = logging.getLogger("meshgate.connectors.kafka")

# Refusals of an idempotent producer by brokers without (or without the ACL for)
# InitProducerId; anything else is not about idempotence.
_IDEMPOTENCE_REFUSED = (
    UnsupportedVersionError,
    IncompatibleBrokerVersion,
    ClusterAuthorizationFailedError,
    TimeoutError,
)


def translate(exc: KafkaError, topic: str) -> ConnectorError:
    """The meshgate error for an aiokafka error raised while producing to ``topic``."""
    name = type(exc).__name__
    if isinstance(exc, KafkaTimeoutError | RequestTimedOutError):
        return PublishTimeout(f"kafka: no acknowledgement from the brokers for {topic!r} ({name})")
    if isinstance(exc, KafkaConnectionError | ProducerClosed) or exc.retriable:
        return ConnectionLost(f"kafka: producing to {topic!r} failed: {name}: {exc}")
    if isinstance(exc, RecordTooLargeError | MessageSizeTooLargeError):
        return PublishRejected(f"kafka: record for {topic!r} too large: {exc}")
    return PublishRejected(f"kafka: brokers refused the record for {topic!r}: {name}: {exc}")


class Producer:
    """Owns the AIOKafkaProducer; falls back from idempotence when the brokers refuse it."""

    def __init__(self, options: KafkaOptions, name: str = "kafka") -> None:
        self._options = options
        self._name = name
        self._producer: Any = None
        self.idempotent = options.enable_idempotence
        self._turns = itertools.count()  # partitions in turn for unkeyed batches

    @property
    def client(self) -> Any:
        """aiokafka's cluster client (for metadata checks), or None before ``start``."""
        return None if self._producer is None else self._producer.client

    async def start(self) -> None:
        """Connect; ``ConnectionLost`` when the brokers cannot be reached or refuse us."""
        timeout = self._options.request_timeout_seconds
        wanted = self._options.enable_idempotence
        try:
            self._producer = await self._started(wanted, timeout)
            self.idempotent = wanted
        except _IDEMPOTENCE_REFUSED as exc:
            # A timeout is also what brokers that do not answer at all look like: fall
            # back only once a plain producer does start. Otherwise this attempt failed
            # (ConnectionLost) and the next one, which the core makes when the brokers
            # are down at start, asks for idempotence again.
            self._producer = await self._started(False, timeout)
            self.idempotent = False
            log.warning(
                "kafka brokers refused the idempotent producer (%s); continuing with "
                "enable_idempotence=false: acks=all still holds, but internal retries may "
                "write duplicates",
                type(exc).__name__,
            )

    async def _started(self, idempotent: bool, seconds: float) -> Any:
        producer = AIOKafkaProducer(
            **self._options.producer_kwargs(idempotent=idempotent, connector=self._name)
        )
        try:
            async with asyncio.timeout(seconds):
                await producer.start()
        except BaseException as exc:
            await producer.stop()
            if idempotent and isinstance(exc, _IDEMPOTENCE_REFUSED):
                raise  # start() retries without idempotence
            if isinstance(exc, KafkaError | TimeoutError):
                servers = ", ".join(self._options.bootstrap_servers)
                raise ConnectionLost(
                    f"kafka connector {self._name!r}: cannot start a producer on {servers} "
                    f"({self._options.security_protocol}): {type(exc).__name__}: {exc}"
                ) from exc
            raise
        return producer

    async def send(self, topic: str, message: KafkaMessage) -> None:
        """Produce ``message`` and wait for ``acks=all``; raises ``ConnectorError``."""
        producer = self._producer
        if producer is None:
            raise ConnectionLost("kafka: connector is not started or already closed")
        value = message.value
        if value is None and message.key is None:
            # aiokafka (like the protocol's client contract) refuses a record with neither
            # key nor value: an event without data and without key goes as empty data.
            value = b""
        try:
            async with asyncio.timeout(self._options.request_timeout_seconds + 5):
                await producer.send_and_wait(
                    topic, value=value, key=message.key, headers=list(message.headers)
                )
        except TimeoutError as exc:
            raise PublishTimeout(f"kafka: no acknowledgement for {topic!r} in time") from exc
        except KafkaError as exc:
            raise translate(exc, topic) from exc

    async def send_many(
        self, records: Sequence[tuple[str, KafkaMessage]]
    ) -> list[ConnectorError | None]:
        """Produce every (topic, message), then wait for their ``acks=all``: one outcome
        per record, in order (None: acknowledged).

        The records go in batches the connector builds (``connectors.kafka.batches``):
        a record too large fails alone, as in ``send``; a partition batch the brokers
        refuse fails every record in it (as a batch of the producer's own would).
        """
        producer = self._producer
        if producer is None:
            lost = ConnectionLost("kafka: connector is not started or already closed")
            return [lost] * len(records)
        outcomes: list[ConnectorError | None] = [None] * len(records)
        plan = BatchPlan(producer, self._turns)
        acked: set[int] = set()  # ids of the batches acknowledged
        try:
            async with asyncio.timeout(self._options.request_timeout_seconds + 5):
                await self._plan(producer, plan, records, outcomes)
                await self._submit(producer, plan, outcomes, acked)
        except TimeoutError:
            # Every record not confirmed: also those not yet placed when time ran out
            # (a metadata wait), which are in no batch.
            confirmed = {i for batch in plan.batches if id(batch) in acked for i in batch.items}
            for index, (topic, _message) in enumerate(records):
                if outcomes[index] is None and index not in confirmed:
                    outcomes[index] = PublishTimeout(
                        f"kafka: no acknowledgement for {topic!r} in time"
                    )
        finally:
            plan.close()
        return outcomes

    async def _plan(
        self,
        producer: Any,
        plan: BatchPlan,
        records: Sequence[tuple[str, KafkaMessage]],
        outcomes: list[ConnectorError | None],
    ) -> None:
        """Every record into ``plan``, but those that fail before they are sent."""
        limit = self._options.max_request_size
        topics: dict[str, KafkaError | None] = {}
        for index, (topic, message) in enumerate(records):
            if topic not in topics:  # metadata first, as AIOKafkaProducer.send does
                try:
                    await producer.partitions_for(topic)
                    topics[topic] = None
                except KafkaError as exc:
                    topics[topic] = exc
            refused = topics[topic]
            if refused is not None:
                outcomes[index] = translate(refused, topic)
                continue
            headers = list(message.headers)
            size = oversize(message, headers, limit)
            if size:
                outcomes[index] = translate(
                    MessageSizeTooLargeError(
                        f"The message is {size} bytes when serialized which is larger "
                        "than the maximum request size you have configured with the "
                        "max_request_size configuration"
                    ),
                    topic,
                )
                continue
            plan.add(index, topic, message, headers)
        plan.close()

    async def _submit(
        self,
        producer: Any,
        plan: BatchPlan,
        outcomes: list[ConnectorError | None],
        acked: set[int],
    ) -> None:
        """Each batch to the accumulator, in order per partition (a second batch of a
        partition waits there until the first is drained: one queue per partition, so
        partitions go concurrently), then its acknowledgement."""
        lanes: dict[tuple[str, int], list[Batch]] = {}
        for batch in plan.batches:
            lanes.setdefault((batch.topic, batch.partition), []).append(batch)
        if len(lanes) == 1:
            await self._lane(producer, plan.batches, outcomes, acked)
        else:
            await asyncio.gather(
                *(self._lane(producer, lane, outcomes, acked) for lane in lanes.values())
            )

    @staticmethod
    async def _lane(
        producer: Any,
        lane: list[Batch],
        outcomes: list[ConnectorError | None],
        acked: set[int],
    ) -> None:
        futures: list[tuple[Batch, Any]] = []
        for batch in lane:
            try:
                futures.append(
                    (
                        batch,
                        await producer.send_batch(
                            batch.builder, batch.topic, partition=batch.partition
                        ),
                    )
                )
            except KafkaError as exc:
                _failed(batch, exc, outcomes)
        for batch, future in futures:
            try:
                await future
            except KafkaError as exc:
                _failed(batch, exc, outcomes)
                continue
            acked.add(id(batch))

    async def close(self) -> None:
        """Flush what is queued (waiting for its acks) and disconnect."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()


def _failed(batch: Batch, exc: KafkaError, outcomes: list[ConnectorError | None]) -> None:
    """Every record of ``batch`` failed with ``exc`` (an error of its own each)."""
    for index in batch.items:
        outcomes[index] = translate(exc, batch.topic)
