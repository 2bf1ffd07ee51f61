"""OpenTelemetry traces of the gateway (docs/observability.md#traces).

Off by default. On when ``OTEL_TRACES_EXPORTER`` names an exporter (``otlp``,
``console``) or with ``gateway.tracing: {enabled: true}``. The runtime holds a
``Tracing`` (``Gateway.tracing``) only while tracing is on; when it is off the
runtime's only cost is one ``is None`` check per route step and per publish: no span
object, no context lookup.

Spans (messaging semantic conventions):

- a CONSUMER span ``process <source address>`` per delivery and route reading it,
  child of the incoming W3C trace context: the native ``traceparent`` header (the
  previous hop's span) if the message has one, else the CloudEvents
  distributed-tracing extension ``traceparent``/``tracestate`` of the event;
- a PRODUCER span ``send <destination>`` per publish attempt (targets and dead
  letters; dead letters carry the original error as ERROR status), child of the
  process span. Its context travels in the published message: in the native
  ``traceparent``/``tracestate`` header where the binding has a slot separate from
  the CloudEvents attributes (Kafka, AMQP, NATS); on MQTT, where the ``traceparent``
  user property *is* the CloudEvents extension, as ``gateway.tracing.mqtt_traceparent``
  says (``keep``: an event's own ``traceparent`` is never overwritten, the gateway's
  context is written only into events that have none; ``replace``: always the
  gateway's). The ``traceparent`` extension of an event is never changed on the
  other protocols. Which is which, ``messaging.system``, the destination names and
  the protocol attributes come from the connector type's ``semconv`` hook
  (``connectors.semconv``; a type without it gets the generic names, noted at start).

The SDK is configured by the standard variables: ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER`` (+ ``_ARG``),
``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``/``HEADERS``/``TIMEOUT``, ``OTEL_BSP_*``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import ParentBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from connectors.base import Delivery
from gateway.config import TracingSection
from gateway.telemetry import generic_semconv_notes, messaging_system, semconv
from routing.bindings import merge_headers
from routing.event import CloudEvent

if TYPE_CHECKING:
    from connectors.base import Connector
    from gateway.runtime import Gateway
    from routing.router import Route

__all__ = ["SCOPE", "Tracing", "exporters_requested", "traced", "tracing_for"]

log = logging.getLogger("meshgate.tracing")

SCOPE = "meshgate"
_PROPAGATOR = TraceContextTextMapPropagator()
_TRACE_HEADERS = ("traceparent", "tracestate")


def exporters_requested(environ: Mapping[str, str] | None = None) -> list[str]:
    """The exporters ``OTEL_TRACES_EXPORTER`` names (``none`` and empty: none)."""
    value = (environ if environ is not None else os.environ).get("OTEL_TRACES_EXPORTER", "")
    names = [part.strip().lower() for part in value.split(",") if part.strip()]
    return [name for name in names if name != "none"]


EXPORTERS = ("otlp", "console")
"""The span exporters meshgate installs (OTLP is HTTP/protobuf only)."""


def _exporter(name: str, section: TracingSection) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    )
    if protocol and protocol != "http/protobuf":
        log.warning("OTLP protocol %r is not supported for traces; using http/protobuf", protocol)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    if section.endpoint:
        return OTLPSpanExporter(endpoint=section.endpoint)
    return OTLPSpanExporter()


def tracing_for(gateway: Gateway) -> Tracing | None:
    """A ``Tracing`` for ``gateway`` when tracing is configured, else None."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    section = gateway.config.gateway.tracing or TracingSection.model_validate({})
    names = exporters_requested()
    if section.enabled and not names:
        names = [section.exporter]
    for name in [name for name in names if name not in EXPORTERS]:
        log.warning(
            "OTEL_TRACES_EXPORTER: unknown exporter %r ignored (%s)", name, ", ".join(EXPORTERS)
        )
        names.remove(name)
    if not names:
        return None
    return Tracing(gateway, names, section)


@contextlib.asynccontextmanager
async def traced(gateway: Gateway) -> AsyncIterator[Tracing | None]:
    """Tracing for ``gateway`` while the block runs (if configured); the spans left
    are exported at the end (in a thread: an export may take its timeout)."""
    tracing = tracing_for(gateway)
    if tracing is None:
        yield None
        return
    gateway.tracing = tracing
    try:
        yield tracing
    finally:
        gateway.tracing = None
        await asyncio.to_thread(tracing.shutdown)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:  # NATS headers keep their case; compare without it
        for key, found in headers.items():
            if key.lower() == name:
                return found
    return value


def _carrier(delivery: Delivery, event: CloudEvent | None) -> dict[str, str]:
    """The incoming trace context: the native header first (the previous hop's span),
    else the event's distributed-tracing extension."""
    parent = _header(delivery.headers, "traceparent")
    if parent is not None:
        state = _header(delivery.headers, "tracestate")
        return {"traceparent": parent, **({"tracestate": state} if state else {})}
    if event is not None:
        extension = event.extensions.get("traceparent")
        if isinstance(extension, str):
            state_value = event.extensions.get("tracestate")
            state = state_value if isinstance(state_value, str) else None
            return {
                "traceparent": extension,
                **({"tracestate": state} if state else {}),
            }
    return {}


def _event_attributes(event: CloudEvent) -> dict[str, str]:
    return {
        "cloudevents.event_id": event.id,
        "cloudevents.event_source": event.source,
        "cloudevents.event_type": event.type,
        "cloudevents.event_spec_version": event.specversion,
        **({"cloudevents.event_subject": event.subject} if event.subject else {}),
    }


class Tracing:
    """The tracer provider of one gateway and the spans the runtime asks for."""

    def __init__(self, gateway: Gateway, exporters: list[str], section: TracingSection) -> None:
        self.gateway = gateway
        self.section = section
        attributes: dict[str, str] = {"service.instance.id": gateway.config.gateway.id}
        if not os.environ.get("OTEL_SERVICE_NAME"):
            attributes["service.name"] = section.service_name or "meshgate"
        # sampler=None: the SDK reads OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG.
        self.provider = TracerProvider(resource=Resource.create(attributes))
        for name in exporters:
            self.provider.add_span_processor(BatchSpanProcessor(_exporter(name, section)))
        self.tracer = self.provider.get_tracer(SCOPE)
        self._parent_based = isinstance(self.provider.sampler, ParentBased)
        self.replace_mqtt = section.mqtt_traceparent == "replace"
        log.info("tracing on: exporters %s", ", ".join(exporters))
        for note in generic_semconv_notes(gateway.connectors.values()):
            log.info("tracing: %s", note)

    # -- the process span ------------------------------------------------------------

    async def process(
        self,
        step: Callable[..., Awaitable[bool]],
        connector: Connector[Any, Any, Any],
        route: Route,
        delivery: Delivery,
        decoded: CloudEvent | None,
        *args: Any,
    ) -> bool:
        """Run ``step`` (the runtime's route step) inside a CONSUMER process span."""
        parent = _PROPAGATOR.extract(_carrier(delivery, decoded))
        conventions = semconv(type(connector))
        attributes: dict[str, Any] = {
            "messaging.system": messaging_system(connector),
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": delivery.address,
            "messaging.destination.subscription.name": conventions.source_destination(route.source),
            "meshgate.route": route.name,
            "meshgate.connector": connector.name,
        }
        if delivery.native_id is not None:
            attributes["messaging.message.id"] = delivery.native_id
        attributes.update(conventions.process_attributes(route.source, delivery))
        if decoded is not None:
            attributes.update(_event_attributes(decoded))
            if delivery.native_id is None:
                attributes["messaging.message.id"] = decoded.id
        span = self.tracer.start_span(
            f"process {delivery.address}", parent, SpanKind.CONSUMER, attributes
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        try:
            return await step(route, delivery, decoded, *args)
        except BaseException as exc:
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise
        finally:
            otel_context.detach(token)
            span.end()

    @staticmethod
    def outcome(outcome: str, error: BaseException | None = None) -> None:
        """Note the route step's outcome on the current process span."""
        span = trace.get_current_span()
        if not span.is_recording():
            return
        span.set_attribute("meshgate.outcome", outcome)
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
            span.set_attribute("error.type", type(error).__name__)

    # -- the send span ---------------------------------------------------------------

    async def send(
        self,
        connector: Connector[Any, Any, Any],
        options: Any,
        event: CloudEvent,
        route: Route,
        dead_letter_of: BaseException | None = None,
    ) -> None:
        """Publish ``event`` inside a PRODUCER send span whose context it carries."""
        process = trace.get_current_span()
        conventions = semconv(type(connector))
        if self._parent_based and not process.is_recording():
            # The sampler dropped the process span, so it drops this one whatever its
            # attributes: skip building them. The (unsampled) context still travels, so
            # downstream consumers do not sample the trace either.
            unsampled = self.tracer.start_span("send", None, SpanKind.PRODUCER)
            options, event = self._carry(unsampled, conventions.context_in_event, options, event)
            await connector.publish(options, event)
            return
        if process.is_recording() and dead_letter_of is None:
            process_attributes = getattr(process, "attributes", None) or {}
            if "cloudevents.event_id" not in process_attributes:  # wrapped by ingress
                process.set_attributes(_event_attributes(event))
        destination = conventions.target_destination(options)
        attributes: dict[str, Any] = {
            "messaging.system": messaging_system(connector),
            "messaging.operation.type": "send",
            "messaging.operation.name": "publish",
            "messaging.destination.name": destination,
            "messaging.message.id": event.id,
            "meshgate.route": route.name,
            "meshgate.connector": connector.name,
            **_event_attributes(event),
        }
        attributes.update(conventions.send_attributes(options))
        if dead_letter_of is not None:
            attributes["meshgate.dead_letter"] = True
        span: Span = self.tracer.start_span(
            f"send {destination}".rstrip(), None, SpanKind.PRODUCER, attributes
        )
        if dead_letter_of is not None:
            span.set_status(
                Status(StatusCode.ERROR, f"{type(dead_letter_of).__name__}: {dead_letter_of}")
            )
            span.set_attribute("error.type", type(dead_letter_of).__name__)
        try:
            options, event = self._carry(span, conventions.context_in_event, options, event)
            await connector.publish(options, event)
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            span.set_attribute("error.type", type(exc).__name__)
            raise
        finally:
            span.end()

    def _carry(
        self, span: Span, in_event: bool, options: Any, event: CloudEvent
    ) -> tuple[Any, CloudEvent]:
        """``options`` and ``event`` so that the published message carries ``span``'s
        context (module docstring: the native header, or MQTT's user property, where
        the type's ``semconv.context_in_event`` says so)."""
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, trace.set_span_in_context(span))
        if not carrier:
            return options, event
        if in_event:
            if "traceparent" in event.extensions and not self.replace_mqtt:
                return options, event
            extensions = {k: v for k, v in event.extensions.items() if k not in _TRACE_HEADERS}
            extensions.update(carrier)
            return options, event.replace(extensions=extensions)
        headers = getattr(options, "headers", None)
        if headers is None:  # a plugin without headers: nothing to carry it in
            return options, event
        # The trace context wins over a target header of the same name (any case).
        merged = merge_headers(carrier.items(), headers.items(), same=str.lower)
        return options.model_copy(update={"headers": dict(merged)}), event

    def shutdown(self) -> None:
        """Export what is left and stop the exporters."""
        self.provider.shutdown()
