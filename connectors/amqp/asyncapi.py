"""AMQP 0-9-1 (RabbitMQ) in an AsyncAPI 3.0 document (``connectors.asyncapi``): an
``amqp``/``amqps`` server per URL and vhost, a queue channel per source and a
routing-key channel of an exchange per target (AMQP bindings 0.3.0), attributes as
``ce-*`` headers in binary mode."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from connectors.amqp.config import AmqpOptions, AmqpSource, AmqpTarget
from connectors.asyncapi import (
    AsyncApi,
    BinaryCarrier,
    ChannelSpec,
    OperationSpec,
    hostport,
    templated,
    x509,
)

__all__ = ["AmqpAsyncApi"]

_VERSION = "0.3.0"
_CARRIER = BinaryCarrier(prefix="ce-", content_type="the `content_type` property")


def _vhost(options: AmqpOptions) -> str:
    return urlsplit(options.url).path[1:] or "/"


class AmqpAsyncApi(AsyncApi[AmqpOptions, AmqpSource, AmqpTarget]):
    def server(self, options: AmqpOptions) -> dict[str, Any]:
        secure = options.url.startswith("amqps")
        host, scheme = hostport(options.url, 5671 if secure else 5672)
        vhost = _vhost(options)
        return {
            "host": host,
            "protocol": "amqps" if scheme == "amqps" else "amqp",
            "protocolVersion": "0.9.1",
            "pathname": vhost if vhost.startswith("/") else f"/{vhost}",
        }

    def security(self, options: AmqpOptions) -> dict[str, dict[str, Any]]:
        schemes: dict[str, dict[str, Any]] = {}
        if urlsplit(options.url).username:
            schemes["amqp-userPassword"] = {"type": "userPassword", "description": "AMQP PLAIN."}
        if options.tls is not None and options.tls.mutual:
            schemes |= x509("amqp", "AMQP")
        return schemes

    def source_channels(self, source: AmqpSource) -> list[ChannelSpec]:
        queue = {"is": "queue", "queue": {"name": source.queue}, "bindingVersion": _VERSION}
        return [ChannelSpec(source.queue, bindings={"amqp": queue}, identity="queue")]

    def source_operation(self, options: AmqpOptions, source: AmqpSource) -> OperationSpec:
        lines = [f"Prefetch {source.prefetch}, manual acknowledgements."]
        lines += [
            f"Bound to exchange `{b.exchange}` with key `{b.binding_key}`." for b in source.bind
        ]
        return OperationSpec({"amqp": {"ack": True, "bindingVersion": _VERSION}}, lines)

    def target_channel(self, options: AmqpOptions, target: AmqpTarget) -> ChannelSpec:
        address, params = templated(target.routing_key)
        exchange: dict[str, Any] = (
            {"name": target.exchange} if target.exchange else {"type": "default"}
        )
        if target.declare_exchange is not None:
            exchange["type"] = target.declare_exchange.type.value
            exchange["durable"] = target.declare_exchange.durable
        exchange["vhost"] = _vhost(options)
        bindings = {"amqp": {"is": "routingKey", "exchange": exchange, "bindingVersion": _VERSION}}
        return ChannelSpec(address, params, bindings, identity=f"routingKey {target.exchange}")

    def target_operation(self, options: AmqpOptions, target: AmqpTarget) -> OperationSpec:
        operation = {
            "deliveryMode": 2 if target.persistent else 1,
            "mandatory": target.mandatory,
            "bindingVersion": _VERSION,
        }
        return OperationSpec({"amqp": operation})

    def binary_carrier(self) -> BinaryCarrier:
        return _CARRIER

    def message_bindings(self, mode: str) -> dict[str, Any]:
        return {"amqp": {"bindingVersion": _VERSION}} if mode == "binary" else {}
