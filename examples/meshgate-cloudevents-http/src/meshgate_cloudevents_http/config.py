"""Options of the ``http`` connector: the server (sources), the client (targets), routes.

One pydantic model per place in the route file, as every meshgate connector has:
``HttpOptions`` (the ``connectors:`` entry), ``HttpSource`` (a route's ``from:``),
``HttpTarget`` (a route's ``to:`` entry or ``dead_letter:``). Field descriptions are
the documentation (``meshgate schema``).
"""

from __future__ import annotations

from typing import ClassVar, Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from connectors import ConnectorOptions, SourceOptions, TargetOptions, TlsOptions

__all__ = ["RESERVED_HEADERS", "HttpOptions", "HttpSource", "HttpTarget", "url_problem"]

# Headers the binding or HTTP itself owns: a target's `headers:` may not set them.
RESERVED_HEADERS = frozenset({"content-type", "content-length", "host", "transfer-encoding"})


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a target address, or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "expected http://host[:port]/path or https://host[:port]/path"
    if parts.username is not None or parts.password is not None:
        return "credentials in the URL are not supported: send them as a header"
    return None


class HttpOptions(ConnectorOptions):
    """A ``connectors:`` entry of ``type: http``: one HTTP server and one HTTP client."""

    type: Literal["http"] = Field(default="http", description="Connector type name.")
    host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="Address the server binds to (0.0.0.0 for every interface).",
    )
    port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Port the server listens on for the sources (route from: paths); unset: "
        "no server, the connector only sends (targets). 0 picks a free port.",
    )
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        description="Largest request body the server accepts; larger ones get 413.",
    )
    retry_after_seconds: int = Field(
        default=1,
        ge=0,
        description="Seconds sent in the Retry-After header of 429 (full) and 503 answers.",
    )
    tls: TlsOptions | None = Field(
        default=None,
        description="TLS for https:// targets (the shared tls: block, docs/security.md): "
        "ca_file, cert_file/key_file (mutual TLS), server_hostname, ... Without it https:// "
        "targets are verified with the system CAs. A tls: block refuses http:// targets.",
    )
    connect_timeout_seconds: float = Field(
        default=5.0, gt=0, description="Seconds allowed for TCP + TLS setup of one request."
    )
    timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Seconds one POST may take in all, answer included (the receiver may "
        "answer only once it has stored the event).",
    )
    retries: int = Field(
        default=3,
        ge=0,
        description="Tries again (with backoff) within one publish after a 5xx, 408, 429 or "
        "connection error before reporting the failure to the route (which retries too).",
    )
    retry_initial_seconds: float = Field(
        default=0.2, gt=0, description="Seconds before the first retry (doubling, jittered)."
    )
    retry_max_seconds: float = Field(
        default=5.0, gt=0, description="Longest wait between two retries, in seconds."
    )
    max_retry_after_seconds: float = Field(
        default=30.0,
        ge=0,
        description="Longest Retry-After (seconds) honoured within a publish; a longer one "
        "ends the publish with a retriable error at once (the route's retry takes over).",
    )

    @model_validator(mode="after")
    def _check_retry(self) -> Self:
        if self.retry_max_seconds < self.retry_initial_seconds:
            raise ValueError("retry_max_seconds must be at least retry_initial_seconds")
        return self


class HttpSource(SourceOptions):
    """A route's ``from:`` on an http connector: one path of the connector's server."""

    path: str = Field(description="Request path that receives events, e.g. /events (POST or PUT).")
    max_in_flight: int = Field(
        default=100,
        ge=1,
        description="Most events of this path waiting for their targets to confirm; a "
        "request that would exceed it gets 429 with Retry-After (backpressure).",
    )

    @field_validator("path")
    @classmethod
    def _check_path(cls, path: str) -> str:
        if not path.startswith("/") or any(c in path for c in "?# \t"):
            raise ValueError(f"path {path!r}: expected an absolute path such as /events")
        return path


class HttpTarget(TargetOptions):
    """A route's ``to:`` (or ``dead_letter:``) on an http connector: POST to a URL."""

    url: str = Field(
        description="URL events are POSTed to (http:// or https://); may hold {...} templates."
    )

    template_fields: ClassVar[tuple[str, ...]] = ("url",)

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        if "{" not in url.split("://", 1)[-1] or not url.startswith(("http://", "https://")):
            problem = url_problem(url)
            if problem:
                raise ValueError(f"url {url!r}: {problem}")
        return url

    @field_validator("headers")
    @classmethod
    def _no_reserved_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name in headers:
            if name.lower() in RESERVED_HEADERS:
                raise ValueError(
                    f"header {name!r} is set by the CloudEvents HTTP binding or by HTTP itself "
                    "(Content-Type carries datacontenttype): remove it"
                )
        return headers
