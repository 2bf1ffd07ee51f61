"""Metrics through the OpenTelemetry metrics SDK: Prometheus text for ``/metrics`` and
OTLP/HTTP when ``OTEL_METRICS_EXPORTER`` names ``otlp``.

Nothing here runs per event. The runtime bumps plain integers (``RouteStats``,
``ConnectorStats``, each pipeline's ``consumed``) and bucket counters
(``gateway.stats.DurationHistogram``); observable instruments read the integers when a
reader collects, and the duration histograms are added to every collection as
OpenTelemetry ``Histogram`` data points (cumulative). A synchronous OpenTelemetry
``add()`` or ``record()`` costs ~6 µs per call here, more than the whole 5% budget of
an event (docs/performance.md).

The exposed names (Prometheus translation: dots become underscores, counters get
``_total``, unit ``s`` gives ``_seconds``) are listed in docs/observability.md; a test
reads every one of them back through ``prometheus_client``'s parser.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client import CollectorRegistry, generate_latest

from connectors.base import Connector, HealthState
from connectors.semconv import Messaging
from gateway.stats import DURATION_BOUNDS, DurationHistogram

if TYPE_CHECKING:
    from gateway.runtime import Gateway

__all__ = [
    "OUTCOMES",
    "Telemetry",
    "generic_semconv_notes",
    "messaging_system",
    "otlp_requested",
    "semconv",
]

log = logging.getLogger("meshgate.telemetry")

SCOPE = "meshgate"

OUTCOMES: tuple[tuple[str, str], ...] = (
    ("received", "received"),
    ("delivered", "delivered"),
    ("filtered", "filtered"),
    ("dead_lettered", "dead_lettered"),
    ("undeliverable", "undeliverable"),
    ("failed", "failed"),
    ("loop_dropped", "loop_dropped"),
)
"""``outcome`` label of ``meshgate_events_total`` -> the ``RouteStats`` field it reads."""

_GENERIC = Messaging()


def semconv(connector_cls: type[Connector[Any, Any, Any]]) -> Messaging:
    """The type's ``semconv`` hook, or the generic ``Messaging`` (``connectors.semconv``)."""
    return connector_cls.semconv or _GENERIC


def messaging_system(connector: Connector[Any, Any, Any]) -> str:
    """``messaging.system`` of ``connector`` (its type's ``semconv`` hook)."""
    return semconv(type(connector)).system_name(connector.options.type)


def generic_semconv_notes(connectors: Iterable[Connector[Any, Any, Any]]) -> list[str]:
    """One note per connector type without the ``semconv`` hook (logged once at start)."""
    types = sorted({c.options.type for c in connectors if type(c).semconv is None})
    return [
        f"connector type {kind!r} declares no semconv hook (docs/plugins.md#optional-hooks): "
        f"its spans and metrics use messaging.system={kind!r} and the generic destination "
        "names (topic, subject, queue or exchange fields)"
        for kind in types
    ]


def otlp_requested(environ: dict[str, str] | None = None) -> bool:
    """Whether ``OTEL_METRICS_EXPORTER`` (comma-separated) names ``otlp``."""
    value = (environ if environ is not None else os.environ).get("OTEL_METRICS_EXPORTER", "")
    return "otlp" in {part.strip().lower() for part in value.split(",")}


HistogramSource = Callable[[], Iterable[tuple[dict[str, str], DurationHistogram]]]


class _HistogramProducer:
    """Turns the runtime's bucket counters into OpenTelemetry histogram metrics."""

    def __init__(self) -> None:
        self.start_ns = time.time_ns()
        self.metrics: list[tuple[str, str, HistogramSource]] = []

    def add(self, name: str, description: str, source: HistogramSource) -> None:
        self.metrics.append((name, description, source))

    def produce(self) -> list[Metric]:
        now = time.time_ns()
        produced = []
        for name, description, source in self.metrics:
            points = []
            for attributes, histogram in source():
                counts = list(histogram.counts)  # a copy: the loop thread keeps counting
                count = sum(counts)
                points.append(
                    HistogramDataPoint(
                        attributes=attributes,
                        start_time_unix_nano=self.start_ns,
                        time_unix_nano=now,
                        count=count,
                        sum=histogram.total,
                        bucket_counts=counts,
                        explicit_bounds=DURATION_BOUNDS,
                        min=histogram.minimum if count else 0.0,
                        max=histogram.maximum,
                    )
                )
            if points:
                data = Histogram(
                    data_points=points,
                    aggregation_temporality=AggregationTemporality.CUMULATIVE,
                )
                produced.append(Metric(name=name, description=description, unit="s", data=data))
        return produced

    def merge(self, data: MetricsData | None, resource: Resource) -> MetricsData:
        """``data`` plus the histograms, in the ``meshgate`` scope."""
        extra = self.produce()
        resources = list(data.resource_metrics) if data is not None else []
        if not resources:
            resources = [ResourceMetrics(resource=resource, scope_metrics=[], schema_url="")]
        first = resources[0]
        scopes = list(first.scope_metrics)
        for index, scope in enumerate(scopes):
            if scope.scope.name == SCOPE:
                scopes[index] = ScopeMetrics(
                    scope=scope.scope, metrics=[*scope.metrics, *extra], schema_url=scope.schema_url
                )
                break
        else:
            scopes.append(
                ScopeMetrics(scope=InstrumentationScope(SCOPE), metrics=extra, schema_url="")
            )
        resources[0] = ResourceMetrics(
            resource=first.resource, scope_metrics=scopes, schema_url=first.schema_url
        )
        return MetricsData(resource_metrics=resources)


class _PrometheusReader(PrometheusMetricReader):
    """The Prometheus exporter's reader, with the histograms added to each collection."""

    def __init__(
        self, producer: _HistogramProducer, resource: Resource, registry: CollectorRegistry
    ) -> None:
        super().__init__(scope_info_enabled=False, registry=registry)
        self._producer = producer
        self._resource = resource

    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        merged = self._producer.merge(metrics_data, self._resource)
        super()._receive_metrics(merged, timeout_millis, **kwargs)


class _PeriodicReader(PeriodicExportingMetricReader):
    """The OTLP periodic reader, with the histograms added to each export."""

    def __init__(self, producer: _HistogramProducer, resource: Resource, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._producer = producer
        self._resource = resource

    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        merged = self._producer.merge(metrics_data, self._resource)
        super()._receive_metrics(merged, timeout_millis, **kwargs)


def _resource(gateway_id: str) -> Resource:
    attributes: dict[str, str] = {"service.instance.id": gateway_id}
    if not os.environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = "meshgate"
    return Resource.create(attributes)  # also reads OTEL_RESOURCE_ATTRIBUTES


class Telemetry:
    """The metrics of one gateway: a ``MeterProvider`` reading the gateway's counters.

    Creating it switches the runtime's duration measurements on (``gateway.timed``).
    ``otlp=None`` follows ``OTEL_METRICS_EXPORTER``; the OTLP exporter then reads the
    standard ``OTEL_EXPORTER_OTLP_*`` variables (endpoint, headers, timeout) and
    ``OTEL_METRIC_EXPORT_INTERVAL``.
    """

    def __init__(self, gateway: Gateway, *, otlp: bool | None = None) -> None:
        self.gateway = gateway
        gateway.timed = True
        self.registry = CollectorRegistry(auto_describe=False)
        resource = _resource(gateway.config.gateway.id)
        self._producer = _HistogramProducer()
        readers: list[MetricReader] = [_PrometheusReader(self._producer, resource, self.registry)]
        if otlp_requested() if otlp is None else otlp:
            readers.append(self._otlp_reader(resource))
        self.provider = MeterProvider(metric_readers=readers, resource=resource)
        self._instruments()
        for note in generic_semconv_notes(gateway.connectors.values()):
            log.info("metrics: %s", note)

    def _otlp_reader(self, resource: Resource) -> MetricReader:
        protocol = os.environ.get(
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
        )
        if protocol and protocol != "http/protobuf":
            log.warning(
                "OTLP protocol %r is not supported for metrics; using http/protobuf", protocol
            )
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        return _PeriodicReader(self._producer, resource, exporter=OTLPMetricExporter())

    def _instruments(self) -> None:
        meter = self.provider.get_meter(SCOPE)
        meter.create_observable_counter(
            "meshgate.events",
            callbacks=[self._events],
            unit="{event}",
            description="Events per route and outcome (received, delivered, filtered, "
            "dead_lettered, undeliverable, failed, loop_dropped).",
        )
        meter.create_observable_counter(
            "meshgate.route.retries",
            callbacks=[self._retries],
            unit="{attempt}",
            description="Publish attempts retried per route.",
        )
        meter.create_observable_up_down_counter(
            "meshgate.route.in_flight",
            callbacks=[self._in_flight],
            unit="{event}",
            description="Events being processed per route.",
        )
        meter.create_observable_gauge(
            "meshgate.connector.up",
            callbacks=[self._up],
            description="1 while the connector is connected, else 0.",
        )
        meter.create_observable_counter(
            "meshgate.connector.reconnects",
            callbacks=[self._reconnects],
            unit="{reconnect}",
            description="Reconnections per connector.",
        )
        meter.create_observable_counter(
            "meshgate.connector.dropped",
            callbacks=[self._dropped],
            unit="{message}",
            description="Messages an at-most-once source lost before the gateway saw them "
            "(core NATS slow consumer), per connector.",
        )
        meter.create_observable_counter(
            "messaging.client.sent.messages",
            callbacks=[self._sent],
            unit="{message}",
            description="Messages published per connector (error.type set for failed attempts).",
        )
        meter.create_observable_counter(
            "messaging.client.consumed.messages",
            callbacks=[self._consumed],
            unit="{message}",
            description="Messages received per route source.",
        )
        self._producer.add(
            "meshgate.route.duration",
            "Source receive -> every target confirmed, per route (delivered events).",
            self._route_durations,
        )
        self._producer.add(
            "messaging.process.duration",
            "Duration of processing a delivery per route (semantic conventions).",
            self._process_durations,
        )
        self._producer.add(
            "meshgate.connector.publish.duration",
            "Publish call -> broker confirmation, per connector.",
            self._publish_durations,
        )
        self._producer.add(
            "messaging.client.operation.duration",
            "Duration of publish (send) operations per connector (semantic conventions).",
            self._operation_durations,
        )

    # -- collection-time callbacks (never per event) --------------------------------------

    def _events(self, _options: CallbackOptions) -> Iterator[Observation]:
        for route, stats in list(self.gateway.stats.items()):
            for outcome, field_name in OUTCOMES:
                value = getattr(stats, field_name)
                yield Observation(value, {"route": route, "outcome": outcome})

    def _retries(self, _options: CallbackOptions) -> Iterator[Observation]:
        for route, stats in list(self.gateway.stats.items()):
            yield Observation(stats.retries, {"route": route})

    def _in_flight(self, _options: CallbackOptions) -> Iterator[Observation]:
        for route, stats in list(self.gateway.stats.items()):
            yield Observation(stats.in_flight, {"route": route})

    def _up(self, _options: CallbackOptions) -> Iterator[Observation]:
        for name, connector in list(self.gateway.connectors.items()):
            up = 1 if connector.health.state is HealthState.UP else 0
            yield Observation(up, {"connector": name})

    def _reconnects(self, _options: CallbackOptions) -> Iterator[Observation]:
        for name, connector in list(self.gateway.connectors.items()):
            yield Observation(connector.health.reconnects, {"connector": name})

    def _dropped(self, _options: CallbackOptions) -> Iterator[Observation]:
        for name, connector in list(self.gateway.connectors.items()):
            yield Observation(connector.health.dropped, {"connector": name})

    def _connector_attributes(self, name: str) -> dict[str, str]:
        connector = self.gateway.connectors.get(name)
        return {
            "messaging.system": messaging_system(connector) if connector else "unknown",
            "messaging.operation.name": "publish",
            "messaging.operation.type": "send",
            "meshgate.connector": name,
        }

    def _sent(self, _options: CallbackOptions) -> Iterator[Observation]:
        for name, stats in list(self.gateway.connector_stats.items()):
            attributes = self._connector_attributes(name)
            yield Observation(stats.published, attributes)
            yield Observation(stats.failed, {**attributes, "error.type": "_OTHER"})

    def _consumed(self, _options: CallbackOptions) -> Iterator[Observation]:
        for pipeline in list(self.gateway.pipelines):
            group = pipeline.group
            yield Observation(
                pipeline.consumed,
                {
                    "messaging.system": messaging_system(pipeline.connector),
                    "messaging.operation.name": "receive",
                    "messaging.operation.type": "receive",
                    "messaging.destination.name": semconv(
                        type(pipeline.connector)
                    ).source_destination(group.source),
                    "meshgate.connector": group.connector,
                },
            )

    def _route_durations(self) -> Iterator[tuple[dict[str, str], DurationHistogram]]:
        for route, stats in list(self.gateway.stats.items()):
            yield {"route": route}, stats.duration

    def _process_durations(self) -> Iterator[tuple[dict[str, str], DurationHistogram]]:
        sources = {
            route.name: (pipeline, route)
            for pipeline in list(self.gateway.pipelines)
            for route in pipeline.group.routes
        }
        for name, stats in list(self.gateway.stats.items()):
            found = sources.get(name)
            if found is None:
                continue
            pipeline, route = found
            yield (
                {
                    "messaging.system": messaging_system(pipeline.connector),
                    "messaging.operation.name": "process",
                    "messaging.operation.type": "process",
                    "messaging.destination.name": semconv(
                        type(pipeline.connector)
                    ).source_destination(route.source),
                    "meshgate.route": name,
                },
                stats.duration,
            )

    def _publish_durations(self) -> Iterator[tuple[dict[str, str], DurationHistogram]]:
        for name, stats in list(self.gateway.connector_stats.items()):
            yield {"connector": name}, stats.duration

    def _operation_durations(self) -> Iterator[tuple[dict[str, str], DurationHistogram]]:
        for name, stats in list(self.gateway.connector_stats.items()):
            yield self._connector_attributes(name), stats.duration

    # -- output ---------------------------------------------------------------------------

    def prometheus_text(self) -> bytes:
        """The Prometheus text exposition (format 0.0.4) of one collection."""
        return generate_latest(self.registry)

    def shutdown(self) -> None:
        """Flush OTLP (if on) and stop the readers."""
        self.provider.shutdown()
