"""NATS in an AsyncAPI 3.0 document (``connectors.asyncapi``): a ``nats`` server per
server list, a channel per subject (``*``/``>`` become parameters), the queue group
as NATS binding 0.1.0, JetStream or core NATS in the operations' descriptions,
attributes as ``ce-*`` headers (percent-encoded) in binary mode."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from connectors.asyncapi import (
    AsyncApi,
    BinaryCarrier,
    ChannelSpec,
    OperationSpec,
    hostport,
    templated,
    wildcards,
    x509,
)
from connectors.nats.config import NatsOptions, NatsSource, NatsTarget

__all__ = ["NatsAsyncApi"]

_CARRIER = BinaryCarrier(
    prefix="ce-",
    content_type="the `ce-datacontenttype` header",
    content_type_prefixed=True,
    note="Values are percent-encoded like HTTP.",
)


class NatsAsyncApi(AsyncApi[NatsOptions, NatsSource, NatsTarget]):
    def server(self, options: NatsOptions) -> dict[str, Any]:
        host, scheme = hostport(options.servers[0], 4222)
        server: dict[str, Any] = {"host": host, "protocol": "nats"}
        if scheme == "tls":
            server["x-tls"] = True
        if len(options.servers) > 1:
            server["x-servers"] = [hostport(s, 4222)[0] for s in options.servers]
        return server

    def security(self, options: NatsOptions) -> dict[str, dict[str, Any]]:
        schemes: dict[str, dict[str, Any]] = {}
        users = [urlsplit(s) for s in options.servers]
        if options.user or any(u.password is not None for u in users):
            schemes["nats-userPassword"] = {"type": "userPassword", "description": "NATS."}
        if options.token is not None or any(u.username and u.password is None for u in users):
            schemes["nats-token"] = {
                "type": "apiKey",
                "in": "user",
                "description": "NATS token authentication.",
            }
        if options.creds_file is not None or options.nkey_seed_file is not None:
            schemes["nats-nkey"] = {
                "type": "asymmetricEncryption",
                "description": "NATS NKey signature (credentials or seed file).",
            }
        if options.tls is not None and options.tls.mutual:
            schemes |= x509("nats", "NATS")
        return schemes

    def source_channels(self, source: NatsSource) -> list[ChannelSpec]:
        return [wildcards(source.subject, ".", "*", ">", "subject")]

    def source_operation(self, options: NatsOptions, source: NatsSource) -> OperationSpec:
        if source.jetstream is not None:
            js = source.jetstream
            lines = [
                f"JetStream pull consumer `{js.durable}` (stream `{js.stream or 'by subject'}`)."
            ]
        else:
            lines = ["Core NATS: at most once."]
        if not source.queue_group:
            return OperationSpec({}, lines)
        return OperationSpec(
            {"nats": {"queue": source.queue_group, "bindingVersion": "0.1.0"}},
            [*lines, f"Queue group `{source.queue_group}`."],
        )

    def target_channel(self, options: NatsOptions, target: NatsTarget) -> ChannelSpec:
        address, params = templated(target.subject)
        return ChannelSpec(address, params)

    def target_operation(self, options: NatsOptions, target: NatsTarget) -> OperationSpec:
        line = (
            "Published to JetStream, confirmed by its PubAck (a stream must capture the subject)."
            if target.jetstream
            else "Published on core NATS: at most once."
        )
        return OperationSpec({}, [line])

    def binary_carrier(self) -> BinaryCarrier:
        return _CARRIER
