"""CloudEvents over HTTP for meshgate (``type: http``): webhooks in, webhooks out.

A third-party meshgate connector plugin, built only on meshgate's public plugin API
(``connectors``, ``routing``). It lets meshgate talk to Knative (as a sink or a
Broker/Channel subscriber), Dapr (pub/sub HTTP subscriptions, HTTP output bindings)
and any webhook.

Features
    - Sources: an aiohttp server on ``host:port``; each route's ``from:`` is a
      ``path``. The CloudEvents HTTP binding in binary mode (``ce-`` headers,
      percent-encoded; ``Content-Type`` is ``datacontenttype``), structured mode
      (``application/cloudevents+json``, ``+avro``) and batched mode
      (``application/cloudevents-batch+json``). A request without ``ce-specversion``
      that is not structured is a plain webhook: the route's ingress rules wrap it.
      The answer waits until every event of the request is settled: 204 once acked
      (delivered, or dead-lettered: the gateway took responsibility), 503 +
      Retry-After when not delivered or the gateway stops, 422 for an event the gateway
      refuses for good (nack without requeue), 429 + Retry-After while the
      path's ``max_in_flight`` bound is reached, 400 naming what is malformed, 415 for
      an unknown event format, 413 for a body over ``max_body_bytes``.
    - Targets: POST in binary (default) or structured mode; retries on 408, 429, 5xx
      and connection errors with backoff, honouring Retry-After; other 4xx ->
      ``PublishRejected`` (dead letter); redirects refused; TLS with the shared
      ``tls:`` block; connect and total timeouts.

URL form
    Targets: ``http://host[:port]/path`` or ``https://...`` (``url``, a template).

Options
    Connection (``connectors:`` entry): ``host``, ``port`` (unset: no server),
    ``max_body_bytes``, ``retry_after_seconds``, ``tls``, ``connect_timeout_seconds``,
    ``timeout_seconds``, ``retries``, ``retry_initial_seconds``, ``retry_max_seconds``,
    ``max_retry_after_seconds``.

    Source (``from:``): ``path``, ``max_in_flight``.

    Target (``to:``): ``url`` (template), ``mode``, ``format``, ``headers``.

    Every option is described in ``meshgate_cloudevents_http.config``.
"""

from meshgate_cloudevents_http.config import HttpOptions, HttpSource, HttpTarget
from meshgate_cloudevents_http.connector import HttpConnector

__all__ = ["HttpConnector", "HttpOptions", "HttpSource", "HttpTarget"]
