"""The mesh control channel, spans/metrics naming and the AsyncAPI document ask each
connector type's optional hooks (``mesh_channel``, ``semconv``, ``asyncapi``) instead
of knowing the four built-in types: a plugin type that declares them gets the
feature like a built-in; one that does not gets the documented fallback, said out
loud (a config error, a log note, a description in the document), never silence."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from connectors.asyncapi import AsyncApi, BinaryCarrier, ChannelSpec, OperationSpec, templated
from connectors.base import Connector, Delivery
from connectors.memory import MemoryBroker, MemoryConnector
from connectors.meshchannel import ChannelSettings, MeshChannel
from connectors.registry import ConnectorRegistry
from connectors.semconv import Messaging
from gateway.asyncapi import build_document, load_mesh
from gateway.config import TracingSection, load_config
from gateway.errors import ConfigError
from gateway.runtime import Gateway
from gateway.telemetry import messaging_system
from gateway.tracing import Tracing
from routing.bindings import Mode
from routing.bindings import nats as binding
from routing.event import CloudEvent
from tests.deploy.schemas import assert_valid_asyncapi, asyncapi_validator
from tests.polling import eventually

BUILT_IN = ("kafka", "amqp", "mqtt", "nats")


class InprocChannel(MeshChannel):
    address_key = "subject"
    wildcards = "*"

    def target(self, address: str, settings: ChannelSettings) -> dict[str, Any]:
        return {"topic": address}

    def source(self, address: str, listener: str, settings: ChannelSettings) -> dict[str, Any]:
        return {"topic": address}


class InprocMessaging(Messaging):
    system = "inproc"

    def process_attributes(self, source: Any, delivery: Delivery) -> Mapping[str, Any]:
        return {"messaging.inproc.topic": delivery.address}

    def send_attributes(self, target: Any) -> Mapping[str, Any]:
        return {"messaging.inproc.target": target.topic}


class InprocAsyncApi(AsyncApi[Any, Any, Any]):
    def server(self, options: Any) -> dict[str, Any]:
        return {"host": f"inproc-{options.namespace}", "protocol": "inproc"}

    def source_channels(self, source: Any) -> list[ChannelSpec]:
        return [ChannelSpec(source.topic, note="An in-process queue.")]

    def source_operation(self, options: Any, source: Any) -> OperationSpec:
        return OperationSpec(lines=["Acknowledged once every target confirmed."])

    def target_channel(self, options: Any, target: Any) -> ChannelSpec:
        return ChannelSpec(*templated(target.topic))

    def binary_carrier(self) -> BinaryCarrier:
        return BinaryCarrier(prefix="ce-", content_type="the `ce-datacontenttype` header")


class Declaring(MemoryConnector):
    """A plugin type with every describing hook."""

    mesh_channel = InprocChannel()
    semconv = InprocMessaging()
    asyncapi = InprocAsyncApi()


class Bare(MemoryConnector):
    """A plugin type with none of them."""

    mesh_channel: ClassVar[MeshChannel | None] = None
    semconv: ClassVar[Messaging | None] = None
    asyncapi: ClassVar[AsyncApi[Any, Any, Any] | None] = None


def write(tmp_path: Path, namespace: str, gateway: str = "") -> Path:
    path = tmp_path / "g.yaml"
    path.write_text(
        f"gateway: {{id: plug, drain_timeout_seconds: 5{gateway}}}\n"
        "connectors:\n"
        f"  p: {{type: plugin, namespace: {namespace}}}\n"
        "routes:\n"
        "  - name: things\n"
        "    from: {connector: p, topic: in}\n"
        '    to: [{connector: p, topic: "out.{type}", mode: binary}]\n'
    )
    return path


def registry(cls: type[MemoryConnector]) -> ConnectorRegistry:
    found = ConnectorRegistry(group="meshgate.test.none")
    found.register("plugin", cls)
    return found


def test_every_built_in_declares_the_describing_hooks() -> None:
    from connectors.registry import default_registry

    for kind in BUILT_IN:
        cls: type[Connector[Any, Any, Any]] = default_registry.get(kind)
        assert cls.mesh_channel is not None, kind
        assert cls.semconv is not None, kind
        assert cls.asyncapi is not None, kind


# -- the mesh control channel -------------------------------------------------------------


async def test_a_plugin_with_the_hook_carries_the_control_channel(tmp_path: Path) -> None:
    namespace = f"mesh-{uuid.uuid4().hex[:8]}"
    mesh = ", mesh: {connector: p, subject: control, interval_seconds: 0.05}"
    gw = Gateway(load_config(write(tmp_path, namespace, mesh), registry(Declaring)))
    await gw.start()
    try:
        control = gw.control
        assert control is not None
        # The gateway hears its own announcement through the plugin's channel.
        await eventually(lambda: "plug" in control.table.gateways(), 10.0)
    finally:
        await gw.stop()


@pytest.mark.parametrize(
    ("cls", "mesh", "problem"),
    [
        (Bare, "{connector: p, subject: c}", "type 'plugin'.* declares no mesh_channel hook"),
        (Declaring, "{connector: p, topic: c}", "a plugin control channel takes subject, not"),
        (Declaring, "{connector: p, subject: 'c.*'}", "a subject without wildcards"),
    ],
)
def test_control_channel_rules_come_from_the_hook(
    tmp_path: Path, cls: type[MemoryConnector], mesh: str, problem: str
) -> None:
    path = write(tmp_path, "unused", f", mesh: {mesh}")
    with pytest.raises(ConfigError, match=problem):
        load_config(path, registry(cls))


# -- spans and metrics --------------------------------------------------------------------


async def traced_spans(
    tmp_path: Path, cls: type[MemoryConnector]
) -> tuple[Gateway, dict[str, Any]]:
    namespace = f"sc-{uuid.uuid4().hex[:8]}"
    gw = Gateway(load_config(write(tmp_path, namespace), registry(cls)))
    tracing = Tracing(gw, [], TracingSection.model_validate({}))
    exporter = InMemorySpanExporter()
    tracing.provider.add_span_processor(SimpleSpanProcessor(exporter))
    gw.tracing = tracing
    await gw.start()
    try:
        event = CloudEvent(id="e1", source="urn:t", type="t", data=b"{}")
        MemoryBroker.get(namespace).put("in", binding.to_message(event, Mode.BINARY))
        await eventually(lambda: gw.stats["things"].delivered == 1, 10.0)
    finally:
        await gw.stop()
        tracing.shutdown()
    return gw, {span.name: dict(span.attributes or {}) for span in exporter.get_finished_spans()}


async def test_a_plugin_with_the_hook_names_its_spans(tmp_path: Path) -> None:
    gw, spans = await traced_spans(tmp_path, Declaring)
    process, send = spans["process in"], spans["send out.t"]
    assert process["messaging.system"] == send["messaging.system"] == "inproc"
    assert process["messaging.inproc.topic"] == "in"
    assert send["messaging.inproc.target"] == "out.t"
    assert messaging_system(gw.connectors["p"]) == "inproc"


async def test_a_plugin_without_the_hook_gets_the_generic_names_and_a_note(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="meshgate.tracing"):
        _, spans = await traced_spans(tmp_path, Bare)
    process, send = spans["process in"], spans["send out.t"]
    assert process["messaging.system"] == send["messaging.system"] == "plugin"
    assert process["messaging.destination.subscription.name"] == "in"
    assert send["messaging.destination.name"] == "out.t"
    assert not any(key.startswith("messaging.inproc") for key in {**process, **send})
    notes = [r.getMessage() for r in caplog.records if "semconv" in r.getMessage()]
    assert notes == [
        "tracing: connector type 'plugin' declares no semconv hook "
        "(docs/plugins.md#optional-hooks): its spans and metrics use "
        "messaging.system='plugin' and the generic destination names (topic, subject, "
        "queue or exchange fields)"
    ]


# -- the AsyncAPI document ----------------------------------------------------------------


def document(tmp_path: Path, cls: type[MemoryConnector]) -> Any:
    path = write(tmp_path, "ns1")
    built = build_document(load_mesh([str(path)], registry(cls)))
    assert_valid_asyncapi(asyncapi_validator(), built)
    return built


def test_a_plugin_with_the_hook_describes_itself(
    tmp_path: Path,
) -> None:
    built = document(tmp_path, Declaring)
    (server,) = built["servers"].values()
    assert server == {
        "host": "inproc-ns1",
        "protocol": "inproc",
        "description": "Used by gateway `plug` (connector `p`).",
    }
    channels = {c["address"]: c for c in built["channels"].values()}
    assert channels["in"]["description"] == "An in-process queue."
    assert channels["out.{type}"]["parameters"] == {
        "type": {"description": "Filled per event from the template {type}."}
    }
    assert set(channels["out.{type}"]["messages"]) == {"plugin-binary"}
    binary = built["components"]["messages"]["plugin-binary"]
    assert "ce-id" in binary["headers"]["required"]
    receive = built["operations"]["plug-things-receive"]
    assert receive["description"].startswith("Acknowledged once every target confirmed.")


def test_a_plugin_without_the_hook_gets_a_generic_description_that_says_so(
    tmp_path: Path,
) -> None:
    built = document(tmp_path, Bare)
    note = "connector type `plugin` declares no asyncapi hook (docs/plugins.md#optional-hooks)"
    (server,) = built["servers"].values()
    assert server["protocol"] == "plugin" and note in server["description"]
    channels = {c["address"]: c for c in built["channels"].values()}
    assert set(channels) == {"in", "out.{type}"}
    assert all(note in channel["description"] for channel in channels.values())
    # Structured mode only: the generic description knows no binary carrier.
    assert set(built["components"]["messages"]) == {"plugin-structured"}
    assert set(channels["out.{type}"]["messages"]) == {"plugin-structured"}


def test_the_hooks_are_public_plugin_api() -> None:
    import connectors

    assert {"AsyncApi", "MeshChannel", "Messaging"} <= set(connectors.__all__)
    assert connectors.AsyncApi is AsyncApi and connectors.Messaging is Messaging


def test_the_asyncapi_command_notes_a_generic_type(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli import main

    path = tmp_path / "m.yaml"
    path.write_text(write(tmp_path, "ns2").read_text().replace("type: plugin", "type: memory"))
    assert main(["asyncapi", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("asyncapi: 3.0.0")
    assert captured.err == (
        "asyncapi: note: connector type 'memory' declares no asyncapi hook: described "
        "generically, without protocol bindings or binary mode (docs/plugins.md#optional-hooks)\n"
    )
