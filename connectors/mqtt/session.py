"""One MQTT connection driven by asyncio: a small adapter over a paho-mqtt client.

paho does the protocol (packets, MQTT 5 properties, keep-alive); ``Session`` drives
its socket from the event loop (``add_reader``/``add_writer``, as aiomqtt does),
turns its callbacks into futures, and adds what meshgate needs and aiomqtt does not
expose (docs/decisions/0001-mqtt-deferred-puback.md):

- inbound QoS 1/2 messages are acknowledged only when the runtime acks them, and
  then in the order the PUBLISHes arrived (``connectors.mqtt.acks``, MQTT 4.6);
- publishes complete with the PUBACK/PUBREC/PUBCOMP reason code, so MQTT 5
  refusals (>= 0x80) become ``PublishRejected``;
- QoS 1/2 deliveries in flight are bounded by the broker's flow control (MQTT 5
  Receive Maximum = ``receive_maximum``) and, as brokers overshoot it (Mosquitto
  2.0 sends everything queued once one ack frees a slot; 3.1.1 has no such
  property), by ``next_message``: it hands out no QoS 1/2 message while
  ``receive_maximum`` are unacked. QoS 0 is not flow-controlled, so the socket is
  not read while ``receive_maximum`` QoS 0 messages wait to be pulled.

A session is one connection: after it is lost, a new ``Session`` (new paho client)
resumes the broker-side session. Nothing of a dead connection is acked on a new
one: the broker redelivers what was not acked, with the same packet identifiers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
from collections import deque
from collections.abc import Sequence
from contextlib import suppress
from typing import Any, cast

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from connectors.errors import ConnectionLost, ConnectorError, PublishRejected, PublishTimeout
from connectors.mqtt._paho import ManualAckClient
from connectors.mqtt.acks import AckSequencer
from connectors.mqtt.config import MqttOptions
from connectors.mqtt.properties import PublishProperties
from connectors.tls import TlsConfigError

__all__ = [
    "AnyProperties",
    "ConnectionRefused",
    "Outbound",
    "Session",
    "SubscriptionRefused",
    "new_properties",
]

_SUCCESS = MQTTErrorCode.MQTT_ERR_SUCCESS
# CONNACK reasons that another attempt will not fix (MQTT 5 3.2.2.2; 3.1.1 codes map here).
_FATAL_CONNACK = {0x84, 0x85, 0x86, 0x87, 0x8C}
# DISCONNECT reason: another connection with the same client id took the session.
_SESSION_TAKEN_OVER = 0x8E


AnyProperties = Properties | PublishProperties
"""What ``publish`` takes: paho's ``Properties`` or the directly packed PUBLISH ones."""
Outbound = tuple[str, bytes, int, bool, AnyProperties | None]
"""One publish for ``Session.publish_many``: topic, payload, QoS, retain, properties."""


def new_properties(packet_type: int) -> Properties:
    """An empty MQTT 5 property set for ``packet_type`` (paho's constructor is untyped)."""
    return Properties(packet_type)  # type: ignore[no-untyped-call]


def _refused(topic: str, reason: ReasonCode) -> PublishRejected:
    return PublishRejected(
        f"broker refused the publish to {topic!r}: {reason} (0x{reason.value:02X})"
    )


class ConnectionRefused(ConnectorError):
    """The broker refused the connection: protocol, client id, credentials or authorization."""

    retriable = False


class SubscriptionRefused(ConnectorError):
    """The broker refused a subscription (SUBACK failure, e.g. not authorized)."""

    retriable = False


class Session:
    """One connection to the broker with manual, ordered acknowledgements."""

    def __init__(
        self,
        options: MqttOptions,
        client_id: str,
        *,
        clean_start: bool,
        session_expiry: int,
        log: logging.Logger,
        connector: str = "mqtt",
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._connector = connector
        self._options = options
        self._endpoint = options.endpoint()
        self._log = log
        self.client_id = client_id
        self._v5 = options.protocol == 5
        self._clean_start = clean_start
        self._session_expiry = session_expiry
        client = ManualAckClient(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5 if self._v5 else paho.MQTTv311,
            clean_session=None if self._v5 else clean_start,
            reconnect_on_failure=False,
        )
        client.max_inflight_messages_set(options.max_in_flight)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write
        self._client = client
        self.acks = AckSequencer(self._send_ack)
        self.session_present = False
        self.taken_over = False
        """The broker ended the connection with MQTT 5 reason 0x8E (Session taken over)."""
        self.requeue_wanted = False
        self.closed: asyncio.Future[str] = self._loop.create_future()
        """Done (with the reason as text) once the connection is gone."""
        self._connack: asyncio.Future[tuple[ReasonCode, bool]] = self._loop.create_future()
        self._subscribes: dict[int, asyncio.Future[list[ReasonCode]]] = {}
        self._publishes: dict[int, asyncio.Future[ReasonCode]] = {}
        self._inbox: deque[paho.MQTTMessage] = deque()
        self._wakeup = asyncio.Event()
        # QoS 1/2 are flow-controlled by the broker (Receive Maximum / its in-flight
        # limit); QoS 0 is not, so the socket stops being read while too many wait.
        self._qos0_waiting = 0
        self._pause_at = options.receive_maximum
        self._resume_at = options.receive_maximum // 2
        self._fd = -1
        self._attached = False
        self._reading = False
        self._misc: asyncio.Task[None] | None = None
        self._linger_on_close = False
        self._lingering: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<Session {self.client_id} {self._endpoint}>"

    # -- connection -------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the connection; ``ConnectionLost`` / ``ConnectionRefused`` on failure."""
        timeout = self._options.connect_timeout_seconds
        self._client.connect_timeout = timeout
        try:
            # paho connects (DNS, TCP, TLS handshake) with blocking calls: off the loop.
            await self._loop.run_in_executor(None, self._blocking_connect)
        except TlsConfigError as exc:
            self._lose(f"connect failed: {exc}")
            raise
        except OSError as exc:
            # A plaintext listener behind an mqtts:// url fails here too (a handshake
            # error or a reset): never a downgrade.
            self._lose(f"connect failed: {exc}")
            hint = ""
            if self._endpoint.tls:
                hint = " (TLS required: a TLS listener? a certificate valid for the name?)"
            raise ConnectionLost(
                f"connector {self._connector!r}: cannot connect to {self._endpoint}: {exc}{hint}"
            ) from exc
        except ValueError as exc:
            self._lose(f"connect failed: {exc}")
            raise ConnectionLost(
                f"connector {self._connector!r}: cannot connect to {self._endpoint}: {exc}"
            ) from exc
        self._attach()
        try:
            reason, self.session_present = await asyncio.wait_for(self._connack, timeout)
        except TimeoutError as exc:
            self.abort("no CONNACK")
            raise ConnectionLost(f"{self._endpoint} sent no CONNACK within {timeout} s") from exc
        if reason.is_failure:
            self.abort(f"CONNACK {reason}")
            error = ConnectionRefused if reason.value in _FATAL_CONNACK else ConnectionLost
            raise error(
                f"connector {self._connector!r}: {self._endpoint} refused client "
                f"{self.client_id!r}: {reason}"
            )

    def _blocking_connect(self) -> None:
        context = self._options.ssl_context(self._connector)
        if context is not None:
            self._client.tls_set_context(context)
        endpoint = self._endpoint
        if endpoint.username is not None or endpoint.password is not None:
            secret = endpoint.password.get_secret_value() if endpoint.password else None
            self._client.username_pw_set(endpoint.username or "", secret)
        keepalive = self._options.keepalive_seconds
        if self._v5:
            properties = new_properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = self._session_expiry
            properties.ReceiveMaximum = self._options.receive_maximum
            self._client.connect(
                endpoint.host,
                endpoint.port,
                keepalive,
                clean_start=self._clean_start,
                properties=properties,
            )
        else:
            self._client.connect(endpoint.host, endpoint.port, keepalive)

    def _attach(self) -> None:
        sock = self._client.socket()
        if sock is None or self.closed.done():
            if isinstance(sock, socket.socket):
                sock.close()
            raise ConnectionLost(f"connection to {self._endpoint} closed while connecting")
        self._fd = sock.fileno()
        self._attached = True
        self._resume_reading()
        if self._client.want_write():
            self._loop.add_writer(self._fd, self._on_writable)
        self._misc = self._loop.create_task(self._misc_loop())

    def _detach(self) -> None:
        if self._attached:
            self._attached = False
            self._reading = False
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
        if self._misc is not None:
            self._misc.cancel()

    async def close(self, grace: float = 2.0) -> None:
        """Disconnect cleanly (DISCONNECT); the broker keeps a persistent session.

        Returns once the broker closed its side too (or after ``grace``): only then
        has it read every PUBACK written before the DISCONNECT (see ``_linger``).
        """
        if self.closed.done():
            return
        if not self._attached:
            self.abort("closed before connecting")
            return
        deadline = self._loop.time() + grace
        self._linger_on_close = True
        self._client.disconnect()
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), grace)
        except TimeoutError:
            self.abort("no clean disconnect")
        lingering = self._lingering
        if lingering is not None:
            await asyncio.wait({lingering}, timeout=max(deadline - self._loop.time(), 0.0))
            lingering.cancel()  # a broker that never closes its side: give up (RST)

    async def wait_publishes(self, seconds: float) -> None:
        """Wait, at most ``seconds``, for publishes awaiting their acknowledgement."""
        pending = [future for future in self._publishes.values() if not future.done()]
        if pending:
            await asyncio.wait(pending, timeout=seconds)

    def abort(self, reason: str) -> None:
        """Drop the connection without DISCONNECT, as a crash would."""
        sock = self._client.socket()
        self._lose(reason)
        if isinstance(sock, socket.socket):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _lose(self, reason: str) -> None:
        if self.closed.done():
            return
        self._detach()
        self.closed.set_result(reason)
        error = ConnectionLost(f"{self._endpoint} ({self.client_id}): {reason}")
        futures: list[asyncio.Future[Any]] = [
            self._connack,
            *self._subscribes.values(),
            *self._publishes.values(),
        ]
        for future in futures:
            if not future.done():
                future.set_exception(error)
        if self._connack.done() and not self._connack.cancelled():
            self._connack.exception()  # retrieved: nobody waits for it any more
        self._subscribes.clear()
        self._publishes.clear()
        self._inbox.clear()  # never acked: the broker redelivers them
        self._qos0_waiting = 0
        self._wakeup.set()
        self.acks.changed.set()

    # -- operations ---------------------------------------------------------------------

    async def subscribe(self, topic_filter: str, qos: int, *, no_local: bool) -> int:
        """Subscribe and return the granted QoS."""
        if self._v5:
            options = SubscribeOptions(
                qos=qos, noLocal=no_local, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB
            )
            rc, mid = self._client.subscribe(topic_filter, options=options)
        else:
            rc, mid = self._client.subscribe(topic_filter, qos)
        if rc != _SUCCESS or mid is None:
            raise ConnectionLost(f"cannot subscribe to {topic_filter!r}: {paho.error_string(rc)}")
        future: asyncio.Future[list[ReasonCode]] = self._loop.create_future()
        self._subscribes[mid] = future
        try:
            codes = await asyncio.wait_for(future, self._options.connect_timeout_seconds)
        except TimeoutError as exc:
            raise ConnectionLost(f"no SUBACK for {topic_filter!r}") from exc
        finally:
            self._subscribes.pop(mid, None)
        if codes[0].is_failure:
            raise SubscriptionRefused(
                f"connector {self._connector!r}: broker refused subscription "
                f"{topic_filter!r}: {codes[0]} (0x{codes[0].value:02X})"
            )
        return int(codes[0].value)

    async def publish(
        self, topic: str, payload: bytes, qos: int, retain: bool, properties: AnyProperties | None
    ) -> None:
        """Publish; returns after PUBACK (QoS 1), PUBCOMP (QoS 2) or the write (QoS 0)."""
        mid, future = self._hand_over(topic, payload, qos, retain, properties)
        timeout = self._options.publish_timeout_seconds
        try:
            reason = await asyncio.wait_for(future, timeout)
        except TimeoutError as exc:
            raise PublishTimeout(f"no acknowledgement for {topic!r} within {timeout} s") from exc
        finally:
            self._publishes.pop(mid, None)
        if reason.is_failure:
            raise _refused(topic, reason)

    async def publish_many(self, sends: Sequence[Outbound]) -> list[Exception | None]:
        """Every publish of ``sends`` handed to paho without waiting in between, then one
        wait, with one deadline (``publish_timeout_seconds``), for all their PUBACK /
        PUBCOMP (QoS 0: the write). One outcome per item, in order: None once confirmed,
        else the exception ``publish`` would raise. paho sends what exceeds
        ``max_in_flight`` in order as acks free slots. A lost connection fails each
        unconfirmed item with ``ConnectionLost`` (its paho queue dies with the session:
        nothing is resent behind the runtime's back)."""
        outcomes: list[Exception | None] = [None] * len(sends)
        waiting: list[tuple[int, int, str, asyncio.Future[ReasonCode]]] = []
        for index, (topic, payload, qos, retain, properties) in enumerate(sends):
            try:
                mid, future = self._hand_over(topic, payload, qos, retain, properties)
            except ConnectorError as exc:
                outcomes[index] = exc
                continue
            waiting.append((index, mid, topic, future))
        if not waiting:
            return outcomes
        timeout = self._options.publish_timeout_seconds
        try:
            await asyncio.wait([future for *_, future in waiting], timeout=timeout)
        finally:
            for _, mid, _, _ in waiting:
                self._publishes.pop(mid, None)
        for index, _, topic, future in waiting:
            if not future.done():
                future.cancel()
                outcomes[index] = PublishTimeout(
                    f"no acknowledgement for {topic!r} within {timeout} s"
                )
            elif isinstance(error := future.exception(), Exception):  # ConnectionLost (_lose)
                outcomes[index] = error
            elif (reason := future.result()).is_failure:
                outcomes[index] = _refused(topic, reason)
        return outcomes

    def _hand_over(
        self, topic: str, payload: bytes, qos: int, retain: bool, properties: AnyProperties | None
    ) -> tuple[int, asyncio.Future[ReasonCode]]:
        """Queue one PUBLISH in paho (written once the socket is writable): its packet
        id and the future its acknowledgement completes."""
        if self.closed.done():
            raise ConnectionLost(f"{self._endpoint}: {self.closed.result()}")
        try:
            # paho only calls pack() on the properties: PublishProperties stands in.
            info = self._client.publish(topic, payload, qos, retain, cast(Properties, properties))
        except ValueError as exc:  # paho: payload too large, bad topic
            raise PublishRejected(f"cannot publish to {topic!r}: {exc}") from exc
        if info.rc != _SUCCESS:
            raise ConnectionLost(f"cannot publish to {topic!r}: {paho.error_string(info.rc)}")
        future: asyncio.Future[ReasonCode] = self._loop.create_future()
        self._publishes[info.mid] = future
        return info.mid, future

    async def next_message(self) -> paho.MQTTMessage | None:
        """The next received message; None once the connection is lost or must restart."""
        while True:
            if self.closed.done() or self.requeue_wanted:
                return None
            if self._inbox and self._inbox[0].qos > 0 and len(self.acks) >= self._pause_at:
                # At most receive_maximum unacked QoS 1/2 deliveries, whatever the broker
                # sends: Mosquitto 2.0 sends every queued message once one slot frees.
                self.acks.changed.clear()
                await self.acks.changed.wait()  # an ack, a hold (requeue) or the close
                continue
            if self._inbox:
                message = self._inbox.popleft()
                if message.qos == 0:
                    self._qos0_waiting -= 1
                    if not self._reading and self._qos0_waiting <= self._resume_at:
                        self._resume_reading()
                return message
            self._wakeup.clear()
            await self._wakeup.wait()

    def request_requeue(self) -> None:
        """Stop handing out messages: the connection must restart for a redelivery."""
        self.requeue_wanted = True
        self._wakeup.set()

    async def settle_before_restart(self, seconds: float) -> None:
        """Wait, at most ``seconds``, until no unsettled message is first in line for an ack."""
        deadline = self._loop.time() + seconds
        while not self.closed.done() and self.acks.head_pending:
            self.acks.changed.clear()
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                return
            with suppress(TimeoutError):
                await asyncio.wait_for(self.acks.changed.wait(), remaining)

    def _send_ack(self, mid: int, qos: int) -> None:
        if self.closed.done():
            return  # the broker redelivers it on the next connection
        rc = self._client.release(mid, qos)
        if rc != _SUCCESS:
            self._log.debug("ack of mid %d not written: %s", mid, paho.error_string(rc))

    # -- paho callbacks (always on the event loop thread once attached) ---------------

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if not self._connack.done():
            self._connack.set_result((reason, flags.session_present))

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if getattr(reason, "value", None) == _SESSION_TAKEN_OVER:
            self.taken_over = True
        self._lose(f"disconnected ({reason})")

    def _on_subscribe(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        future = self._subscribes.get(mid)
        if future is not None and not future.done():
            future.set_result(reasons)

    def _on_publish(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        future = self._publishes.get(mid)
        if future is not None and not future.done():
            future.set_result(reason)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        if self.closed.done():
            return
        self._inbox.append(message)
        self._wakeup.set()
        if message.qos == 0:
            self._qos0_waiting += 1
            if self._reading and self._qos0_waiting >= self._pause_at:
                self._reading = False
                self._loop.remove_reader(self._fd)

    def _on_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._detach()
        if self._linger_on_close and self._lingering is None and isinstance(sock, socket.socket):
            self._linger_on_close = False
            try:
                # paho closes its socket object right after this callback: a duplicate
                # descriptor keeps the connection open for _linger.
                raw = socket.socket(fileno=os.dup(sock.fileno()))
            except OSError as exc:
                self._log.debug("%s: no lingering close: %s", self.client_id, exc)
                return
            self._lingering = self._loop.create_task(self._linger(raw))

    def _on_socket_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        if self._attached:  # before that, _attach registers what connect() queued
            self._loop.add_writer(self._fd, self._on_writable)

    def _on_socket_unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        if self._attached:
            self._loop.remove_writer(self._fd)

    async def _linger(self, raw: socket.socket) -> None:
        """Half-close after DISCONNECT and read (discarding) until the broker closes.

        Closing a socket whose receive buffer still holds data (the broker goes on
        sending PUBLISHes until it reads the DISCONNECT) makes the kernel send a TCP
        RST instead of a FIN, and a broker that gets the RST drops what it had not
        read yet: the last PUBACKs before the DISCONNECT were lost, so those messages
        came again on the next connection although they had been delivered (the
        duplicates of a graceful stop). Sending FIN and waiting for the broker's EOF
        means it has read everything we wrote. Unread PUBLISHes are discarded: never
        acknowledged, the broker redelivers them to the next connection.
        """
        try:
            raw.setblocking(False)
            raw.shutdown(socket.SHUT_WR)
            while await self._loop.sock_recv(raw, 65536):
                pass
        except OSError as exc:
            self._log.debug("%s: lingering close ended: %s", self.client_id, exc)
        finally:
            raw.close()

    # -- socket events ------------------------------------------------------------------

    def _resume_reading(self) -> None:
        if self._attached and not self._reading:
            self._reading = True
            self._loop.add_reader(self._fd, self._on_readable)

    def _on_readable(self) -> None:
        # Every packet already buffered, not paho's one per call (``read_packet``): a
        # burst reaches the runtime in one event-loop turn, so it forms a batch. At most
        # receive_maximum packets per turn (other connections get their turn too), and
        # none once QoS 0 reading is paused (``_on_message``) or the connection is gone.
        client = self._client
        try:
            for _ in range(self._pause_at):
                if client.read_packet() != _SUCCESS or not self._reading:
                    return
            sock = client.socket()
            # TLS may hold decrypted bytes that the selector will not report again.
            if isinstance(sock, ssl.SSLSocket) and sock.pending() > 0:
                self._loop.call_soon(self._read_pending)
        except OSError as exc:
            self.abort(f"read failed: {exc}")

    def _read_pending(self) -> None:
        if self._reading:
            self._on_readable()

    def _on_writable(self) -> None:
        try:
            self._client.loop_write()
        except OSError as exc:
            self.abort(f"write failed: {exc}")

    async def _misc_loop(self) -> None:
        # Keep-alive: PINGREQ when due, and a dead connection noticed without PINGRESP.
        while True:
            if self._client.loop_misc() != _SUCCESS:
                return
            await asyncio.sleep(1.0)
