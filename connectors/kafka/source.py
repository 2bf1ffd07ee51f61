"""Consuming side of the Kafka connector: one consumer-group member per route source.

A ``SourceSession`` owns an ``AIOKafkaConsumer`` (``enable_auto_commit=False``)
and turns its records into ``Delivery`` objects. Acks only update an
``OffsetTracker``; a background task commits the contiguous acked prefix of each
partition every ``commit_interval_seconds`` (or after ``commit_every`` acks), on
partition revocation and on close. Nothing is committed that was not acked.

Backpressure: records are fetched only while the iterator is pulled, at most
``max_in_flight`` deliveries are out without an ack, and aiokafka prefetches at
most one fetch response per partition (``max_partition_fetch_bytes``). At the
limit, or when nobody pulls for a few seconds, every assigned partition is paused
and the commit loop polls only to keep the group membership (aiokafka leaves the
group after ``max_poll_interval_ms`` without a poll).

A session is a plain async iterator, not a generator: cancelling a pending
``__anext__`` (a timeout) does not end the stream. It keeps itself going across
broker losses (aiokafka reconnects and rejoins the group by itself; a new consumer
per loss would cost the group a rebalance each time), so the connector overrides
``consume``; its waits and health still belong to the core's ``Supervisor`` (one
key per consumer: starting the consumer and fetching are retried under it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterable
from functools import partial
from itertools import repeat
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.errors import ConsumerStoppedError, KafkaError

from connectors.base import Delivery
from connectors.errors import ConnectionLost
from connectors.kafka.config import KafkaOptions, KafkaSource
from connectors.kafka.offsets import OffsetTracker, Pending
from connectors.kafka.records import delivery
from connectors.readiness import Subscription as Ready
from connectors.supervision import Supervisor, SupervisorClosed
from routing.bindings.kafka import KafkaMessage

__all__ = ["SourceSession"]

log = logging.getLogger("meshgate.connectors.kafka")

_POLL_TIMEOUT_MS = 500
_IDLE_S = 5.0  # unpolled this long: the commit loop polls (paused) to keep the membership


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, session: SourceSession) -> None:
        self._session = session

    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        self._session.ready.down()  # a rebalance starts
        await self._session.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[Any]) -> None:
        log.info("%s: assigned %s", self._session.label, sorted(assigned))
        self._session.ready.up()  # a member of the group with its share of partitions


class SourceSession:
    """One consumer-group member reading a ``KafkaSource``: an async iterator of deliveries.

    See the module docstring; the consumer connects on the first ``__anext__``.
    """

    def __init__(
        self,
        name: str,
        options: KafkaOptions,
        source: KafkaSource,
        supervisor: Supervisor,
        on_close: Callable[[SourceSession], None],
        ready: Ready,
    ) -> None:
        self.label = f"{name}:{source.group_id}"
        self._key = f"consumer {self.label}"
        self.ready = ready
        """Up while the consumer is in the group with its partitions assigned."""
        self._options = options
        self._source = source
        self._supervisor = supervisor
        self._tracker: OffsetTracker[Any] = OffsetTracker()
        # Fetched records not yet handed out, each with its TopicPartition and lane
        # (ordering key), which are per partition, not per record.
        self._buffer: deque[tuple[Any, str, Any]] = deque()
        self._lanes: dict[Any, str] = {}  # TopicPartition -> "topic/partition"
        self._consumer: Any = None
        self._capacity = asyncio.Event()
        self._capacity.set()
        self._stopping = asyncio.Event()
        self._commit_now = asyncio.Event()
        self._acks_since_commit = 0
        self._commit_task: asyncio.Task[None] | None = None
        self._close_task: asyncio.Future[None] | None = None
        self._pull = asyncio.Lock()
        self._on_close = on_close
        self._last_poll = 0.0

    # -- the delivery stream ------------------------------------------------

    def __aiter__(self) -> SourceSession:
        return self

    async def __anext__(self) -> Delivery[KafkaMessage]:
        """The next delivery; ``StopAsyncIteration`` once closed.

        Cancelling a pending call (a timeout around it) loses nothing: the session,
        its consumer and its buffer stay, and the next call carries on.
        """
        if self._consumer is None:
            async with self._pull:
                if self._consumer is None and not await self._connect():
                    raise StopAsyncIteration
                if self._commit_task is None:
                    self._commit_task = asyncio.create_task(self._commit_loop(), name=self.label)
        limit = self._source.max_in_flight
        buffer = self._buffer
        while not self._stopping.is_set():
            if self._tracker.in_flight >= limit:
                await self._wait_for_capacity()
                continue
            # A buffered record is handed out without the pull lock: nothing is awaited
            # between taking it and tracking it.
            while buffer:
                partition, lane, record = buffer.popleft()
                if partition in self._consumer.assignment():
                    return self._delivery(partition, lane, record)
            async with self._pull:
                if not buffer:
                    await self._fill()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Stop this source (same as ``close``), as for an async generator."""
        await self.close()

    async def _connect(self) -> bool:
        try:
            consumer = await self._supervisor.retry(
                self._key, self._start_consumer, first_wait=False, stop=self._stopping
            )
        except SupervisorClosed:
            return False
        if self._stopping.is_set():  # closed while connecting
            await consumer.stop()
            return False
        # Subscribing after start() makes the group join run in the background, so
        # join/sync errors surface from getmany() (and are retried there) instead
        # of failing start() and costing the group one more member churn.
        source = self._source
        listener = _Rebalance(self)
        if source.pattern is not None:
            consumer.subscribe(pattern=source.pattern, listener=listener)
        else:
            consumer.subscribe(topics=list(source.topics or ()), listener=listener)
        self._consumer = consumer
        self._last_poll = asyncio.get_running_loop().time()
        log.info("%s: consuming %s", self.label, source.pattern or list(source.topics or ()))
        return True

    async def _start_consumer(self) -> Any:
        """One attempt: a started (connected, not yet subscribed) consumer."""
        source = self._source
        consumer = AIOKafkaConsumer(
            **self._options.client_kwargs(self.label),
            group_id=source.group_id,
            enable_auto_commit=False,
            auto_offset_reset=source.auto_offset_reset.value,
            session_timeout_ms=round(source.session_timeout_seconds * 1000),
            heartbeat_interval_ms=max(100, round(source.session_timeout_seconds * 1000 / 3)),
            fetch_max_wait_ms=round(source.fetch_max_wait_seconds * 1000),
        )
        try:
            await consumer.start()  # connects only: nothing is subscribed yet
        except KafkaError as exc:
            await consumer.stop()
            raise ConnectionLost(f"cannot start consumer: {exc}") from exc
        except BaseException:  # cancelled: no half-started consumer stays behind
            await consumer.stop()
            raise
        return consumer

    async def _fill(self) -> None:
        """Fetch into the buffer (up to the free in-flight slots); returns with it still
        empty once closed or at the in-flight limit, or when nothing came."""
        consumer = self._consumer
        budget = self._source.max_in_flight - self._tracker.in_flight
        if self._stopping.is_set() or budget <= 0:
            return
        if paused := consumer.paused():
            consumer.resume(*paused)
        try:
            # aiokafka reconnects and rejoins by itself: the core paces the polls
            # while it fails and shows the consumer as reconnecting meanwhile.
            batches = await self._supervisor.retry(
                self._key, partial(self._fetch, budget), first_wait=False, stop=self._stopping
            )
        except (ConsumerStoppedError, SupervisorClosed):  # closing: see __anext__'s loop
            return
        self._buffered(batches)

    def _buffered(self, batches: dict[Any, Any]) -> None:
        """Buffer what ``getmany`` returned (TopicPartition -> records), with each
        partition's lane."""
        lanes = self._lanes
        for partition, records in batches.items():
            lane = lanes.get(partition)
            if lane is None:
                lane = lanes[partition] = f"{partition.topic}/{partition.partition}"
            self._buffer.extend(zip(repeat(partition), repeat(lane), records))

    async def _fetch(self, budget: int) -> dict[Any, Any]:
        try:
            batches: dict[Any, Any] = await self._consumer.getmany(
                timeout_ms=_POLL_TIMEOUT_MS, max_records=budget
            )
        except ConsumerStoppedError:
            raise
        except KafkaError as exc:
            raise ConnectionLost(f"fetch failed: {exc}") from exc
        finally:
            self._last_poll = asyncio.get_running_loop().time()
        return batches

    async def _wait_for_capacity(self) -> None:
        """At the in-flight limit: fetch nothing until an ack (or nack) makes room.

        Meanwhile the commit loop keeps the group membership alive (paused polls);
        ``_fill`` resumes the partitions.
        """
        consumer = self._consumer
        consumer.pause(*consumer.assignment())
        await self._capacity.wait()

    def _delivery(self, partition: Any, lane: str, record: Any) -> Delivery[KafkaMessage]:
        entry = self._tracker.track(partition, record.offset)
        if self._tracker.in_flight >= self._source.max_in_flight:
            self._capacity.clear()
        # partial, not closures: one object each per record, and no cells.
        return delivery(
            record,
            lane,
            partial(self._acked, partition, entry),
            partial(self._nacked, partition, entry),
        )

    async def _acked(self, partition: Any, entry: Pending) -> None:
        self._ack(partition, entry)

    async def _nacked(self, partition: Any, entry: Pending, *, requeue: bool) -> None:
        if requeue:
            self._rewind(partition, entry)
        else:
            self._ack(partition, entry)

    # -- acknowledgements -----------------------------------------------------

    def _ack(self, partition: Any, entry: Pending) -> None:
        # nack(requeue=False) also lands here: Kafka cannot drop one record, and the
        # runtime only gives up on a message after it was dead-lettered.
        if not self._tracker.ack(partition, entry):
            log.debug("%s: late ack for %s@%d ignored", self.label, partition, entry.offset)
            return
        self._update_capacity()
        self._acks_since_commit += 1
        if self._acks_since_commit >= self._source.commit_every:
            self._commit_now.set()

    def _rewind(self, partition: Any, entry: Pending) -> None:
        """nack(requeue=True): seek back so this record and every later one come again."""
        consumer = self._consumer
        if not entry.open or consumer is None or partition not in self._tracker:
            return
        self._tracker.rewind(partition, entry.offset)
        self._drop_buffered({partition})
        try:
            consumer.seek(partition, entry.offset)
        except KafkaError as exc:  # revoked meanwhile: the next owner redelivers it
            log.debug("%s: seek %s@%d failed: %s", self.label, partition, entry.offset, exc)
        self._update_capacity()

    def _update_capacity(self) -> None:
        if self._tracker.in_flight < self._source.max_in_flight:
            self._capacity.set()
        else:
            self._capacity.clear()

    def _drop_buffered(self, partitions: set[Any]) -> None:
        # In place: __anext__ holds on to the deque across its waits.
        kept = [item for item in self._buffer if item[0] not in partitions]
        self._buffer.clear()
        self._buffer.extend(kept)

    # -- commits ----------------------------------------------------------------

    async def _commit_loop(self) -> None:
        interval = self._source.commit_interval_seconds
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._commit_now.wait(), interval)
            self._commit_now.clear()
            await self.commit()
            if loop.time() - self._last_poll > _IDLE_S and not self._pull.locked():
                await self._keep_membership()

    async def _keep_membership(self) -> None:
        """Nobody pulls: poll with every partition paused so the group keeps us.

        aiokafka leaves the group when the consumer is not polled for
        ``max_poll_interval_ms``; a paused poll fetches nothing (backpressure holds)
        but counts as one. ``_fill`` resumes the partitions.
        """
        async with self._pull:
            consumer = self._consumer
            consumer.pause(*consumer.assignment())
            try:
                batches = await consumer.getmany(timeout_ms=0)
            except ConsumerStoppedError:
                return
            except KafkaError as exc:
                log.warning("%s: keep-alive poll failed (%s)", self.label, exc)
                return
            finally:
                self._last_poll = asyncio.get_running_loop().time()
            self._buffered(batches)  # only from a race with the pause

    async def commit(self, partitions: Iterable[Any] | None = None) -> None:
        """Commit the acked prefix of ``partitions`` (default: every assigned one)."""
        consumer = self._consumer
        if consumer is None:
            return
        offsets = self._tracker.due(consumer.assignment() if partitions is None else partitions)
        if not offsets:
            return
        self._acks_since_commit = 0
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:
            # Only delays progress: what is not committed is redelivered, never lost.
            log.warning("%s: commit of %s failed: %s", self.label, offsets, exc)
            return
        self._tracker.committed(offsets)
        log.debug("%s: committed %s", self.label, offsets)

    async def on_revoked(self, revoked: set[Any]) -> None:
        """Rebalance: commit what is safe for the lost partitions, then forget them."""
        if not revoked:
            return
        await self.commit(revoked)
        self._tracker.revoke(revoked)
        self._drop_buffered(revoked)
        self._update_capacity()
        log.info("%s: revoked %s", self.label, sorted(revoked))

    # -- shutdown ---------------------------------------------------------------

    async def close(self) -> None:
        """Commit what was acked, leave the group, stop. Idempotent; late acks are ignored."""
        if self._close_task is None:
            self._close_task = asyncio.ensure_future(self._close())
        await asyncio.shield(self._close_task)

    async def _close(self) -> None:
        self._on_close(self)
        self._supervisor.forget(self._key)  # stopped on purpose: not part of the health
        self.ready.down()
        self._stopping.set()
        self._capacity.set()
        if self._commit_task is not None:
            self._commit_task.cancel()
            await asyncio.wait([self._commit_task])
        consumer = self._consumer
        if consumer is None:
            return
        await self.commit()
        self._tracker.clear()
        self._buffer.clear()
        await consumer.stop()
        log.info("%s: consumer closed", self.label)
