"""Kafka in an AsyncAPI 3.0 document (``connectors.asyncapi``): a ``kafka`` or
``kafka-secure`` server per bootstrap list, a channel per topic (a topic pattern is
one channel described as a regular expression), Kafka bindings 0.5.0, attributes as
``ce_*`` headers in binary mode."""

from __future__ import annotations

from typing import Any

from connectors.asyncapi import (
    AsyncApi,
    BinaryCarrier,
    ChannelSpec,
    OperationSpec,
    hostport,
    templated,
    x509,
)
from connectors.kafka.config import KafkaOptions, KafkaSource, KafkaTarget

__all__ = ["KafkaAsyncApi"]

_VERSION = "0.5.0"
_SASL = {"PLAIN": "plain", "SCRAM-SHA-256": "scramSha256", "SCRAM-SHA-512": "scramSha512"}
_CARRIER = BinaryCarrier(
    prefix="ce_",
    content_type="the `content-type` header",
    extra_headers={"content-type": "datacontenttype."},
)


class KafkaAsyncApi(AsyncApi[KafkaOptions, KafkaSource, KafkaTarget]):
    def server(self, options: KafkaOptions) -> dict[str, Any]:
        first, *others = options.bootstrap_servers
        tls = options.security_protocol.value in ("SSL", "SASL_SSL")
        server: dict[str, Any] = {
            "host": hostport(first, 9092)[0],
            "protocol": "kafka-secure" if tls else "kafka",
        }
        if others:
            server["x-bootstrap-servers"] = [
                hostport(s, 9092)[0] for s in options.bootstrap_servers
            ]
        return server

    def security(self, options: KafkaOptions) -> dict[str, dict[str, Any]]:
        schemes: dict[str, dict[str, Any]] = {}
        if options.security_protocol.value.startswith("SASL_"):
            kind = _SASL[options.sasl_mechanism.value]
            schemes[f"kafka-{kind}"] = {"type": kind, "description": "Kafka SASL."}
        if options.tls is not None and options.tls.mutual:
            schemes |= x509("kafka", "Kafka")
        return schemes

    def source_channels(self, source: KafkaSource) -> list[ChannelSpec]:
        if source.pattern is not None:
            return [ChannelSpec(source.pattern, note="Kafka topic pattern (regular expression).")]
        return [
            ChannelSpec(topic, bindings={"kafka": {"topic": topic, "bindingVersion": _VERSION}})
            for topic in source.topics or ()
        ]

    def source_operation(self, options: KafkaOptions, source: KafkaSource) -> OperationSpec:
        group = {"type": "string", "enum": [source.group_id]}
        client = {"type": "string", "enum": [options.client_id]}
        return OperationSpec(
            {"kafka": {"groupId": group, "clientId": client, "bindingVersion": _VERSION}},
            [f"Consumer group `{source.group_id}`: replicas with the same group share partitions."],
        )

    def target_channel(self, options: KafkaOptions, target: KafkaTarget) -> ChannelSpec:
        address, params = templated(target.topic)
        topic = None if params else {"kafka": {"topic": address, "bindingVersion": _VERSION}}
        return ChannelSpec(address, params, topic)

    def target_operation(self, options: KafkaOptions, target: KafkaTarget) -> OperationSpec:
        client = {"type": "string", "enum": [options.client_id]}
        return OperationSpec({"kafka": {"clientId": client, "bindingVersion": _VERSION}})

    def binary_carrier(self) -> BinaryCarrier:
        return _CARRIER

    def message_bindings(self, mode: str) -> dict[str, Any]:
        if mode != "binary":
            return {}
        return {"kafka": {"key": {"type": "string"}, "bindingVersion": _VERSION}}

    def structured_summary(self) -> str:
        return "The record key is the target's key template (if any)."
