"""The one TLS options model shared by every connector (a connector's ``tls:`` block).

Rules, the same for all four connectors (docs/security.md):

* TLS is chosen by the address: ``tls://`` (NATS), ``mqtts://`` (MQTT), ``amqps://``
  (AMQP), ``security_protocol: SSL|SASL_SSL`` (Kafka). The ``tls:`` block only says
  how; a ``tls:`` block beside a plaintext address is a configuration error, never
  ignored. (MQTT's host/port form has no scheme: there the block turns TLS on.)
* Without ``ca_file`` the system CAs verify the server. The server certificate is
  always verified, and its name checked, unless ``insecure_skip_verify`` says
  otherwise, which logs a WARNING at every start.
* Every file is checked when the config is loaded (``meshgate validate``), with its
  path in the message; the context is built again at each connection, so renewed
  certificates are picked up without a restart.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from connectors.errors import ConnectorError

__all__ = [
    "TlsConfigError",
    "TlsOptions",
    "client_context",
    "legacy_tls_error",
    "readable_file",
    "warn_insecure",
]


class TlsConfigError(ConnectorError, ValueError):
    """The local TLS material is unusable (unreadable file, wrong key password)."""

    retriable = False


def readable_file(path: Path) -> Path:
    """``path`` when it can be opened now (config load), else a ``ValueError`` naming it:
    the check of every file a connector or a ``sign:``/``verify:`` block names."""
    try:
        with path.expanduser().open("rb"):
            pass
    except OSError as exc:
        raise ValueError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    return path


class TlsOptions(BaseModel):
    """A connector's ``tls:`` block: how the connection is encrypted and verified."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ca_file: Path | None = Field(
        default=None,
        description="PEM file of the CAs that verify the server certificate; the system "
        "CAs when unset.",
    )
    cert_file: Path | None = Field(
        default=None, description="PEM client certificate (chain) for mutual TLS."
    )
    key_file: Path | None = Field(default=None, description="PEM private key of cert_file.")
    key_password_file: Path | None = Field(
        default=None,
        description="File holding the password of an encrypted key_file (one trailing "
        "newline is ignored).",
    )
    server_hostname: str | None = Field(
        default=None,
        min_length=1,
        description="Name the server certificate must carry (and SNI); default: the "
        "host of the URL.",
    )
    insecure_skip_verify: bool = Field(
        default=False,
        description="Accept any server certificate and name: encrypted but not "
        "authenticated. For tests only; logs a WARNING at every start.",
    )

    @field_validator("ca_file", "cert_file", "key_file", "key_password_file")
    @classmethod
    def _check_files(cls, path: Path | None) -> Path | None:
        return None if path is None else readable_file(path)

    @model_validator(mode="after")
    def _check_pairs(self) -> Self:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        if self.key_password_file is not None and self.key_file is None:
            raise ValueError("key_password_file needs key_file")
        if self.insecure_skip_verify and self.server_hostname is not None:
            raise ValueError("server_hostname is not checked with insecure_skip_verify")
        return self

    @property
    def mutual(self) -> bool:
        """Whether a client certificate is presented (mutual TLS)."""
        return self.cert_file is not None

    def ssl_context(self, connector: str) -> ssl.SSLContext:
        """A client context for these options (reads the files: may block briefly).

        Raises ``TlsConfigError`` naming ``connector`` and the file when a file is
        unusable now (it may have changed since the config was checked).
        """
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if self.server_hostname:
            context = _NamedContext(ssl.PROTOCOL_TLS_CLIENT)
            context.fixed_hostname = self.server_hostname
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        what = "ca_file"
        try:
            if self.ca_file is not None:
                context.load_verify_locations(cafile=str(self.ca_file.expanduser()))
            else:
                context.load_default_certs(ssl.Purpose.SERVER_AUTH)
            if self.cert_file is not None and self.key_file is not None:
                what = "cert_file/key_file"
                password = None
                if self.key_password_file is not None:
                    what = "key_password_file"
                    text = self.key_password_file.expanduser().read_text(encoding="utf-8")
                    password = text[:-1] if text.endswith("\n") else text
                    what = "cert_file/key_file"
                context.load_cert_chain(
                    str(self.cert_file.expanduser()), str(self.key_file.expanduser()), password
                )
        except (OSError, ssl.SSLError, ValueError) as exc:
            files = {
                "ca_file": self.ca_file,
                "key_password_file": self.key_password_file,
                "cert_file/key_file": f"{self.cert_file}, {self.key_file}",
            }
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise TlsConfigError(
                f"connector {connector!r}: tls.{what} {str(files[what])!r} unusable: {reason}"
            ) from exc
        if self.insecure_skip_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


class _NamedContext(ssl.SSLContext):
    """A client context that checks (and sends as SNI) one fixed server name.

    Client libraries pass the URL's host to ``wrap_socket`` (paho) or ``wrap_bio``
    (asyncio: aio-pika, aiokafka, nats-py); none of them all take a name of their own.
    """

    fixed_hostname = ""

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        kwargs["server_hostname"] = self.fixed_hostname
        return super().wrap_socket(*args, **kwargs)

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        kwargs["server_hostname"] = self.fixed_hostname
        return super().wrap_bio(*args, **kwargs)


def client_context(tls: TlsOptions | None, connector: str, *, on: bool) -> ssl.SSLContext | None:
    """The context a connector connects with: ours whenever its address asks for TLS
    (``on``; the system CAs without a ``tls:`` block), never a client library's
    default, so verification follows this one model; None for a plaintext address."""
    return (tls or TlsOptions()).ssl_context(connector) if on else None


def warn_insecure(tls: TlsOptions | None, log: logging.Logger, connector: str) -> None:
    """The WARNING every start logs while ``insecure_skip_verify`` is on."""
    if tls is not None and tls.insecure_skip_verify:
        log.warning(
            "connector %r: tls.insecure_skip_verify is on: the server certificate is NOT "
            "verified (encrypted, but anyone on the path can impersonate the broker)",
            connector,
        )


_LEGACY: dict[str, str] = {
    "tls_ca": "ca_file",
    "tls_cert": "cert_file",
    "tls_key": "key_file",
    "tls_ca_file": "ca_file",
    "tls_cert_file": "cert_file",
    "tls_key_file": "key_file",
    "ssl_cafile": "ca_file",
    "ssl_certfile": "cert_file",
    "ssl_keyfile": "key_file",
}


def legacy_tls_error(data: Any) -> Any:
    """Refuse the old TLS spellings with the new one in the message (a before-validator)."""
    if isinstance(data, dict):
        for old, new in _LEGACY.items():
            if old in data:
                raise ValueError(
                    f"{old} was replaced by the tls: block: write tls: {{{new}: ...}} "
                    "(docs/security.md)"
                )
    return data
