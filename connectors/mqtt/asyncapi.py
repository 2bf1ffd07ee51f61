"""MQTT in an AsyncAPI 3.0 document (``connectors.asyncapi``): an ``mqtt`` or
``secure-mqtt`` server with the client's session bindings, a channel per topic
(``+``/``#`` become parameters), MQTT bindings 0.2.0; MQTT 5 carries attributes as
user properties, MQTT 3.1.1 structured-mode events only."""

from __future__ import annotations

from typing import Any

from connectors.asyncapi import (
    AsyncApi,
    BinaryCarrier,
    ChannelSpec,
    OperationSpec,
    templated,
    wildcards,
    x509,
)
from connectors.mqtt.config import MqttOptions, MqttSource, MqttTarget

__all__ = ["MqttAsyncApi"]

_VERSION = "0.2.0"
_CARRIER = BinaryCarrier(
    prefix="",
    content_type="the MQTT 5 Content Type property",
    where="user properties named as the attribute",
)


class MqttAsyncApi(AsyncApi[MqttOptions, MqttSource, MqttTarget]):
    def server(self, options: MqttOptions) -> dict[str, Any]:
        endpoint = options.endpoint()
        mqtt: dict[str, Any] = {
            "clientId": options.client_id,
            "cleanSession": options.clean_start,
            "keepAlive": options.keepalive_seconds,
            "bindingVersion": _VERSION,
        }
        if options.protocol == 5:
            mqtt["sessionExpiryInterval"] = options.session_expiry_seconds
        return {
            "host": f"{endpoint.host}:{endpoint.port}",
            "protocol": "secure-mqtt" if endpoint.tls else "mqtt",
            "protocolVersion": "5" if options.protocol == 5 else "3.1.1",
            "bindings": {"mqtt": mqtt},
        }

    def security(self, options: MqttOptions) -> dict[str, dict[str, Any]]:
        schemes: dict[str, dict[str, Any]] = {}
        if options.endpoint().username:
            schemes["mqtt-userPassword"] = {"type": "userPassword", "description": "MQTT."}
        if options.tls is not None and options.tls.mutual:
            schemes |= x509("mqtt", "MQTT")
        return schemes

    def source_channels(self, source: MqttSource) -> list[ChannelSpec]:
        return [wildcards(source.topic, "/", "+", "#", "topic")]

    def source_operation(self, options: MqttOptions, source: MqttSource) -> OperationSpec:
        lines = [f"QoS {source.qos}" + (" (at most once)" if source.qos == 0 else "")]
        if source.share_group:
            lines.append(f"Shared subscription `$share/{source.share_group}/{source.topic}`.")
        return OperationSpec({"mqtt": {"qos": source.qos, "bindingVersion": _VERSION}}, lines)

    def target_channel(self, options: MqttOptions, target: MqttTarget) -> ChannelSpec:
        address, params = templated(target.topic)
        return ChannelSpec(address, params)

    def target_operation(self, options: MqttOptions, target: MqttTarget) -> OperationSpec:
        mqtt: dict[str, Any] = {
            "qos": target.qos,
            "retain": target.retain,
            "bindingVersion": _VERSION,
        }
        if target.message_expiry_seconds is not None:
            mqtt["messageExpiryInterval"] = target.message_expiry_seconds
        return OperationSpec({"mqtt": mqtt})

    def binary_carrier(self) -> BinaryCarrier:
        return _CARRIER

    def binary_mode(self, options: MqttOptions) -> bool:
        return options.protocol == 5  # MQTT 3.1.1 has no user properties
