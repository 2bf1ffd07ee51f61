"""``meshgate dlq``: the dead-letter workbench (list, show, redrive, purge).

Dead letters live in two places:

* the **local store** (``gateway.dlstore``): messages that neither a target nor the
  route's dead letter accepted; ids are the store's entry numbers (``12``);
* the **dead-letter destinations** routes declare (``dead_letter:``) on brokers: each
  entry is a dead-letter CloudEvent (``routing.deadletter``); ids are
  ``<connector>:<dead-letter event id>``. They are read back through the connector's
  ``read_back`` hook (a Kafka consumer group, a JetStream durable, a queue) with
  manual acks: what is redriven or purged is acked, everything else is released
  unacknowledged (requeued) when the command ends. Destinations whose broker keeps
  nothing to read back (MQTT, core NATS, an exchange without a known queue) or whose
  address is a template are reported as such.

A redrive republishes the **original** message, bytes and headers unchanged
(``RawPublisher.publish_raw``), to the address it was first received on, or to
``--to CONNECTOR:ADDRESS``; an entry is removed (or its dead letter acked) only once
the broker confirmed the republish.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any

import orjson

from connectors.base import Connector, Delivery, RawMessage, RawPublisher
from connectors.errors import ConnectorError
from gateway.config import GatewayConfig
from gateway.dlstore import DeadLetterStore, StoredLetter
from routing.deadletter import DEAD_LETTER_TYPE
from routing.errors import InvalidEvent, MeshgateError
from routing.event import CloudEvent

__all__ = ["Letter", "Workbench", "WorkbenchError"]

AnyConnector = Connector[Any, Any, Any]

LOCAL = "local"
FIRST_MESSAGE_SECONDS = 10.0
"""How long a destination may take to subscribe and hand over its first message."""


class WorkbenchError(MeshgateError):
    """A ``meshgate dlq`` request that cannot be carried out (unknown id, bad --to...)."""


@dataclass
class Letter:
    """One dead letter, wherever it is kept, with the original message it stands for."""

    id: str
    place: str
    """``local``, or the dead-letter destination (``connector:address``)."""
    route: str
    reason: str
    error: str
    time: str | None
    source_connector: str
    """Where the original came from: a redrive without ``--to`` goes back there."""
    original: RawMessage
    entry: StoredLetter | None = None
    delivery: Delivery | None = None
    """The unsettled broker delivery of a dead letter read back."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.original.payload)


def _local_letter(entry: StoredLetter) -> Letter:
    stamp = datetime.datetime.fromtimestamp(entry.stored_at, datetime.UTC)
    return Letter(
        id=str(entry.id),
        place=LOCAL,
        route=entry.route,
        reason=entry.reason,
        error=entry.error,
        time=stamp.isoformat(timespec="seconds").replace("+00:00", "Z"),
        source_connector=entry.connector,
        original=RawMessage(
            address=entry.address,
            payload=entry.payload,
            headers=entry.headers,
            content_type=entry.content_type,
            key=entry.key,
            coordinates=entry.coordinates,
        ),
        entry=entry,
        extra={
            "target": entry.target,
            "attempts": entry.attempts,
            "event_id": entry.event_id,
            "native_id": entry.native_id,
        },
    )


def _json_object(text: object) -> dict[str, Any]:
    try:
        value = orjson.loads(str(text))
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _broker_letter(place: str, connector: str, event: CloudEvent, delivery: Delivery) -> Letter:
    ext = event.extensions
    headers = {str(k): str(v) for k, v in _json_object(ext.get("dlheaders", "{}")).items()}
    coordinates = _json_object(ext.get("dlcoordinates", "{}"))
    content_type = event.datacontenttype
    if content_type == "application/octet-stream" and not any(
        name.lower() == "content-type" for name in headers
    ):
        content_type = None  # the dead letter's default, not the original's
    key = coordinates.get("key")
    return Letter(
        id=f"{connector}:{event.id}",
        place=place,
        route=str(ext.get("dlroute", "?")),
        reason=str(ext.get("dlreason", "?")),
        error=str(ext.get("dlerror", "")),
        time=event.time,
        source_connector=str(ext.get("dlconnector", "")),
        original=RawMessage(
            address="" if ext.get("dladdress") == "-" else str(ext.get("dladdress", "")),
            payload=event.data or b"",
            headers=headers,
            content_type=content_type,
            key=None if key is None else str(key),
            coordinates=coordinates,
        ),
        delivery=delivery,
        extra={"target": ext.get("dltarget"), "attempts": ext.get("dlattempts")},
    )


def parse_destination(text: str) -> tuple[str, str]:
    """``CONNECTOR:ADDRESS`` of ``--to``."""
    connector, sep, address = text.partition(":")
    if not sep or not connector or not address:
        raise WorkbenchError(f"--to {text!r}: expected CONNECTOR:ADDRESS, e.g. core:orders.retry")
    return connector, address


class Workbench:
    """The dead letters of one config: ``async with Workbench(config) as bench: ...``."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        brokers: bool = True,
        idle_seconds: float = 2.0,
        limit: int = 1000,
        route: str | None = None,
        connectors: Sequence[str] | None = None,
    ) -> None:
        self.config = config
        self.brokers = brokers
        # Read only the destinations of this route / on these connectors (None: all).
        self.route = route
        self.connectors = None if connectors is None else set(connectors)
        self.idle_seconds = idle_seconds
        self.limit = limit
        self.store = DeadLetterStore(
            config.gateway.resolved_state_dir(), config.gateway.dead_letter_store.max_bytes
        )
        self.notes: list[str] = []
        """What could not be read back, and why (printed by ``list``)."""
        self._connectors: dict[str, AnyConnector] = {}
        self._streams: list[Any] = []
        self._foreign: list[Delivery] = []
        self._beat: asyncio.Task[None] | None = None
        self._letters: list[Letter] | None = None

    async def __aenter__(self) -> Workbench:
        await self.store.open()
        self._beat = asyncio.create_task(self._heartbeats())
        return self

    async def _heartbeats(self) -> None:
        """Tell the brokers the dead letters read back are still being worked on, so they
        are not redelivered (JetStream +WPI) while the command holds them."""
        while True:
            await asyncio.sleep(1.0)
            held = [each.delivery for each in self._letters or () if each.delivery is not None]
            for delivery in held:
                if delivery.in_progress is not None:
                    with contextlib.suppress(ConnectorError):
                        await delivery.in_progress()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat
        # Whatever was read back and not settled goes back to its destination: after
        # the subscriptions ended, or a still-open JetStream pull request would take
        # the requeued messages straight back (invisible until their ack_wait).
        for stream in self._streams:
            with contextlib.suppress(Exception):
                await stream.aclose()
        unsettled = [each.delivery for each in self._letters or () if each.delivery is not None]
        for delivery in unsettled + self._foreign:
            with contextlib.suppress(ConnectorError):
                await delivery.nack(requeue=True)
        for connector in self._connectors.values():
            with contextlib.suppress(Exception):
                await connector.close()
        await self.store.close()

    async def _connector(self, name: str) -> AnyConnector:
        connector = self._connectors.get(name)
        if connector is None:
            entry = self.config.connectors.get(name)
            if entry is None:
                known = ", ".join(sorted(self.config.connectors))
                raise WorkbenchError(f"no connector {name!r} in {self.config.file} ({known})")
            cls, options = entry
            connector = cls(name, options)
            await connector.start()
            self._connectors[name] = connector
        return connector

    # -- reading --------------------------------------------------------------------

    async def letters(self, route: str | None = None) -> list[Letter]:
        """Local entries first (oldest first), then each destination's dead letters."""
        if self._letters is None:
            found = [_local_letter(entry) for entry in await self.store.entries()]
            if self.brokers:
                found += await self._read_destinations()
            self._letters = found
        return [each for each in self._letters if route is None or each.route == route]

    async def find(self, ids: Sequence[str]) -> list[Letter]:
        by_id = {letter.id: letter for letter in await self.letters()}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise WorkbenchError(
                f"no dead letter with id {', '.join(missing)} (see `meshgate dlq list`)"
            )
        return [by_id[i] for i in ids]

    def _destinations(self) -> dict[tuple[str, str], Any]:
        """Static dead-letter targets of the config, one per (connector, options)."""
        found: dict[tuple[str, str], Any] = {}
        for route in self.config.table.routes:
            target = route.dead_letter
            if target is None or self.route not in (None, route.name):
                continue
            if self.connectors is not None and target.connector not in self.connectors:
                continue
            where = target.describe()
            if target.templates:
                self.notes.append(
                    f"{where} (route {route.name}): a templated address cannot be read back"
                )
                continue
            found.setdefault((target.connector, target.options.model_dump_json()), target.options)
        return found

    async def _read_destinations(self) -> list[Letter]:
        # A consumer group / durable name: stable, so repeated reads resume.
        reader = "meshgate-dlq-" + self.config.gateway.id.replace(".", "_")
        letters: list[Letter] = []
        for (name, _), options in self._destinations().items():
            cls = self.config.connectors[name][0]
            place = f"{name}:{_address(options)}"
            source = cls.read_back(options, reader)
            if source is None:
                self.notes.append(f"{place}: {cls.__name__} cannot read this destination back")
                continue
            try:
                connector = await self._connector(name)
                letters += await self._drain(place, connector, source)
            except ConnectorError as exc:
                self.notes.append(f"{place}: not read: {exc}")
        return letters

    async def _drain(self, place: str, connector: AnyConnector, source: Any) -> list[Letter]:
        """Take what the destination holds until it is idle (or ``limit``), unsettled."""
        stream = aiter(connector.consume(source))
        self._streams.append(stream)
        letters: list[Letter] = []
        # The first message may wait for the subscription itself (a consumer group
        # join takes seconds); after it, ``idle_seconds`` of silence means drained.
        wait = max(self.idle_seconds, FIRST_MESSAGE_SECONDS)
        seen: set[str] = set()
        while len(letters) < self.limit:
            try:
                delivery = await asyncio.wait_for(anext(stream), wait)
            except (TimeoutError, StopAsyncIteration):
                break
            wait = self.idle_seconds
            try:
                event = connector.decode(delivery)
            except InvalidEvent:
                event = None
            if event is None or event.type != DEAD_LETTER_TYPE:
                # Left alone (released at the end: a nack now would hand it straight back).
                self.notes.append(f"{place}: a message that is not a dead letter was left there")
                self._foreign.append(delivery)
                continue
            letter = _broker_letter(place, connector.name, event, delivery)
            if letter.id in seen:  # redelivered while held: the first copy stands
                self._foreign.append(delivery)
                continue
            seen.add(letter.id)
            letters.append(letter)
        return letters

    # -- acting ---------------------------------------------------------------------

    async def redrive(
        self, letters: Sequence[Letter], to: str | None = None
    ) -> list[tuple[Letter, str | None]]:
        """Republish each original; returns (letter, error text or None) per letter."""
        results: list[tuple[Letter, str | None]] = []
        for letter in letters:
            if to is not None:
                name, address = parse_destination(to)
                message = replace(letter.original, address=address, coordinates={})
            else:
                name, message = letter.source_connector, letter.original
            try:
                connector = await self._connector(name)
                if not isinstance(connector, RawPublisher):
                    raise WorkbenchError(
                        f"connector {name!r} ({type(connector).__name__}) cannot republish "
                        "raw messages"
                    )
                await connector.publish_raw(message)
            except (ConnectorError, WorkbenchError, ValueError) as exc:
                # ValueError: e.g. a header text the protocol cannot encode.
                results.append((letter, f"{type(exc).__name__}: {exc}"))
                continue
            await self._settle(letter)
            results.append((letter, None))
        return results

    async def purge(self, letters: Sequence[Letter]) -> int:
        for letter in letters:
            await self._settle(letter)
        return len(letters)

    async def _settle(self, letter: Letter) -> None:
        if letter.entry is not None:
            await self.store.remove([letter.entry.id])
        elif letter.delivery is not None:
            delivery, letter.delivery = letter.delivery, None
            await delivery.ack()


def _address(options: Any) -> str:
    fields = options.model_dump(mode="json", exclude={"connector"}, exclude_defaults=True)
    for name in ("topic", "subject", "routing_key", "queue"):
        if fields.get(name):
            return str(fields[name])
    return str(fields)
