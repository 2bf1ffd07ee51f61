"""``HttpConnector``: the server (sources) and the client (targets) behind the contract."""

from __future__ import annotations

import logging
from typing import ClassVar

from connectors import (
    Capabilities,
    Connector,
    Delivery,
    HealthState,
    MessageSpec,
    MessageSpecError,
    dry_run_delivery,
)
from meshgate_cloudevents_http import binding
from meshgate_cloudevents_http.binding import HttpMessage, Received
from meshgate_cloudevents_http.client import Sender
from meshgate_cloudevents_http.config import RESERVED_HEADERS, HttpOptions, HttpSource, HttpTarget
from meshgate_cloudevents_http.inbox import PathCounts, PathStream
from meshgate_cloudevents_http.server import Server
from routing.event import CloudEvent

__all__ = ["HttpConnector"]

log = logging.getLogger("meshgate.connectors.http")


class HttpConnector(Connector[HttpOptions, HttpSource, HttpTarget]):
    """CloudEvents over HTTP; see the package docstring for features and options."""

    Options: ClassVar[type[HttpOptions]] = HttpOptions
    Source: ClassVar[type[HttpSource]] = HttpSource
    Target: ClassVar[type[HttpTarget]] = HttpTarget
    capabilities: ClassVar[Capabilities] = Capabilities(
        # The answer to a request waits for ack/nack: the sender redelivers on 503.
        acknowledgements=True,
        confirmed_publish=True,  # a 2xx answer
        ordering="path",
        headers=True,
        max_message_bytes=None,  # max_body_bytes of the receiving server decides
    )
    address_separator: ClassVar[str] = "/"

    def __init__(self, name: str, options: HttpOptions) -> None:
        super().__init__(name, options)
        self._server = Server(name, options, log)
        self._sender = Sender(name, options, log)

    def endpoint(self) -> str:
        if self.options.port is None:
            return "client only"
        return f"http://{self.options.host}:{self._server.port or self.options.port}"

    @property
    def port(self) -> int | None:
        """The port the server listens on once started (the OS's choice for ``port: 0``)."""
        return self._server.port

    def path_counts(self, path: str) -> PathCounts:
        """How the requests to ``path`` were admitted so far (accepted, deferred, refused)."""
        return self._server.counts[path]

    async def start(self) -> None:
        await self._sender.start()
        try:
            await self._server.start()
        except BaseException:
            await self._sender.close()
            raise
        self.health.state = HealthState.UP

    async def close(self) -> None:
        await self._server.close()
        await self._sender.close()
        self.health.state = HealthState.CLOSED

    def consume(self, source: HttpSource) -> PathStream:
        return self._server.open(source)

    def decode(self, delivery: Delivery) -> CloudEvent | None:
        message = delivery.message
        if isinstance(message, Received):
            return message.event
        if isinstance(message, HttpMessage):  # not a CloudEvent when received
            return None
        received = binding.from_request(delivery.headers.items(), delivery.payload)
        return None if not received else received[0].event

    def encode(self, target: HttpTarget, event: CloudEvent) -> HttpMessage:
        message = binding.to_message(event, target.mode, fmt=target.format)
        if target.headers:
            message = HttpMessage(message.body, {**target.headers, **message.headers})
        return message

    async def publish(self, target: HttpTarget, event: CloudEvent) -> None:
        await self._sender.post(target.url, self.encode(target, event), f"event {event.id!r}")

    @classmethod
    def validate_target(cls, options: HttpOptions, target: HttpTarget) -> str | None:
        if options.tls is not None and target.url.startswith("http://"):
            return (
                f"url {target.url!r} is plaintext but the connector has a tls: block: use https://"
            )
        return None

    @classmethod
    def header_clash(cls, options: HttpOptions, name: str) -> str | None:
        """Why a target's ``headers:`` may not set ``name``: the binding's own headers
        (``ce-*`` attributes, ``Content-Type`` = datacontenttype) and HTTP's framing."""
        lowered = name.lower()
        if lowered.startswith("ce-"):
            return f"{name!r} is a CloudEvents attribute header of the HTTP binding"
        if lowered in RESERVED_HEADERS:
            return f"{name!r} is set by the HTTP binding or by HTTP itself"
        return None

    @classmethod
    def dry_run_delivery(cls, options: HttpOptions, spec: MessageSpec) -> Delivery:
        path = spec.text("path", spec.address)
        if not path or not path.startswith("/"):
            raise MessageSpecError("an http --message needs `path` (or `address`), e.g. /events")
        headers = dict(spec.headers)
        if spec.content_type is not None:
            headers["Content-Type"] = spec.content_type
        received = binding.from_request(headers.items(), spec.payload)
        message: Received | HttpMessage = (
            received[0] if received else HttpMessage(spec.payload, headers)
        )
        return dry_run_delivery(spec, message, path, coordinates={"path": path})

    @classmethod
    def source_receives(cls, source: HttpSource, delivery: Delivery) -> bool:
        return source.path == delivery.address

    def describe_source(self, source: HttpSource) -> str:
        return f"{self.name}: POST {self.endpoint()}{source.path}"
