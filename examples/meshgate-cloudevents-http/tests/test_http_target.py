"""The http target against real HTTP servers on loopback: modes, retries, refusals, TLS."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme
from aiohttp import web
from http_helpers import http_connector, sample_event, target
from meshgate_cloudevents_http import HttpConnector
from meshgate_cloudevents_http.client import ReceiverUnavailable, retry_after_seconds

from connectors import ConnectionLost, PublishRejected, PublishTimeout
from routing.bindings import Mode
from routing.formats import json as json_format

Answer = Callable[[web.Request], web.StreamResponse]


@dataclass
class Peer:
    """A webhook receiver on loopback that answers from a script of responses."""

    answers: list[web.Response] = field(default_factory=list)
    requests: list[tuple[dict[str, str], bytes, float]] = field(default_factory=list)
    delay: float = 0.0
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read(), time.monotonic()))
        if self.delay:
            await asyncio.sleep(self.delay)  # a slow receiver, on purpose
        return self.answers.pop(0) if self.answers else web.Response(status=204)


async def _serve(peer: Peer, context: ssl.SSLContext | None = None) -> web.AppRunner:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", peer.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    peer.url = f"{'https' if context else 'http'}://127.0.0.1:{port}/hook"
    return runner


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    peer = Peer()
    runner = await _serve(peer)
    try:
        yield peer
    finally:
        await runner.cleanup()


@pytest.fixture
async def sender() -> AsyncIterator[HttpConnector]:
    connector = http_connector(port=None, retries=2)
    await connector.start()
    try:
        yield connector
    finally:
        await connector.close()


async def test_binary_mode_post(peer: Peer, sender: HttpConnector) -> None:
    event = sample_event()
    await sender.publish(target(peer.url, headers={"x-tenant": "blue"}), event)
    ((headers, body, _),) = peer.requests
    assert body == event.data
    assert headers["Content-Type"] == "application/json"
    assert headers["ce-id"] == "evt-1" and headers["ce-specversion"] == "1.0"
    assert headers["ce-comexampleflag"] == "Euro%20%E2%82%AC%20%F0%9F%98%80%20%22quoted%22%20100%25"
    assert headers["x-tenant"] == "blue"
    assert "ce-datacontenttype" not in headers


async def test_no_content_type_is_invented(peer: Peer, sender: HttpConnector) -> None:
    await sender.publish(target(peer.url), sample_event(datacontenttype=None, data=b"\x00\x01"))
    ((headers, body, _),) = peer.requests
    assert "Content-Type" not in headers and body == b"\x00\x01"


async def test_structured_mode_post(peer: Peer, sender: HttpConnector) -> None:
    event = sample_event()
    await sender.publish(target(peer.url, mode="structured"), event)
    ((headers, body, _),) = peer.requests
    assert headers["Content-Type"] == json_format.CONTENT_TYPE
    assert json_format.decode(body) == event
    assert not any(name.lower().startswith("ce-") for name in headers)


@pytest.mark.parametrize("status", [500, 502, 503, 408, 429])
async def test_retriable_answers_are_retried(
    peer: Peer, sender: HttpConnector, status: int
) -> None:
    peer.answers = [web.Response(status=status), web.Response(status=status)]
    await sender.publish(target(peer.url), sample_event())
    assert len(peer.requests) == 3  # two failures, then 204


async def test_retries_give_up_with_a_retriable_error(peer: Peer, sender: HttpConnector) -> None:
    peer.answers = [web.Response(status=503, text="maintenance") for _ in range(3)]
    with pytest.raises(ReceiverUnavailable) as caught:
        await sender.publish(target(peer.url), sample_event())
    assert caught.value.retriable and "503" in str(caught.value)
    assert "maintenance" in str(caught.value)
    assert len(peer.requests) == 3


async def test_retry_after_is_honoured(peer: Peer, sender: HttpConnector) -> None:
    peer.answers = [web.Response(status=429, headers={"Retry-After": "1"})]
    await sender.publish(target(peer.url), sample_event())
    (_, _, first), (_, _, second) = peer.requests
    assert second - first >= 0.95  # the backoff alone would be ~0.05 s


async def test_retry_after_beyond_the_cap_ends_the_publish_at_once(peer: Peer) -> None:
    connector = http_connector(port=None, max_retry_after_seconds=5)
    await connector.start()
    peer.answers = [web.Response(status=503, headers={"Retry-After": "3600"})]
    try:
        with pytest.raises(ReceiverUnavailable):
            await connector.publish(target(peer.url), sample_event())
    finally:
        await connector.close()
    assert len(peer.requests) == 1


def test_retry_after_forms() -> None:
    assert retry_after_seconds("120") == 120.0
    now = 1_700_000_000.0
    assert retry_after_seconds("Tue, 14 Nov 2023 22:13:20 GMT", now) == 0.0
    assert retry_after_seconds("Tue, 14 Nov 2023 22:14:00 GMT", now) == 40.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
async def test_client_errors_are_rejected_without_retry(
    peer: Peer, sender: HttpConnector, status: int
) -> None:
    peer.answers = [web.Response(status=status, text="no such tenant")]
    with pytest.raises(PublishRejected) as caught:
        await sender.publish(target(peer.url), sample_event())
    assert str(status) in str(caught.value) and "no such tenant" in str(caught.value)
    assert len(peer.requests) == 1


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_redirects_are_refused_naming_the_location(
    peer: Peer, sender: HttpConnector, status: int
) -> None:
    peer.answers = [web.Response(status=status, headers={"Location": "http://elsewhere/x"})]
    with pytest.raises(PublishRejected) as caught:
        await sender.publish(target(peer.url), sample_event())
    assert "http://elsewhere/x" in str(caught.value) and str(status) in str(caught.value)
    assert len(peer.requests) == 1  # not followed, not retried


async def test_connection_refused_is_connection_lost(sender: HttpConnector) -> None:
    peer = Peer()
    runner = await _serve(peer)
    url = peer.url
    await runner.cleanup()  # nothing listens there any more
    with pytest.raises(ConnectionLost) as caught:
        await sender.publish(target(url + "?token=secret"), sample_event())
    assert "unreachable" in str(caught.value) and "secret" not in str(caught.value)


async def test_slow_receiver_times_out(peer: Peer) -> None:
    connector = http_connector(port=None, timeout_seconds=0.3, retries=0)
    await connector.start()
    peer.delay = 2.0
    try:
        with pytest.raises(PublishTimeout):
            await connector.publish(target(peer.url), sample_event())
    finally:
        await connector.close()


async def test_publish_after_close_raises(peer: Peer) -> None:
    connector = http_connector(port=None)
    await connector.start()
    await connector.close()
    with pytest.raises(ConnectionLost, match="closed"):
        await connector.publish(target(peer.url), sample_event())


# -- TLS: the shared tls: block --------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_peer(ca: trustme.CA) -> AsyncIterator[Peer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("hooks.example.test").configure_cert(context)
    peer = Peer()
    runner = await _serve(peer, context)
    try:
        yield peer
    finally:
        await runner.cleanup()


async def _publish_with(tls: dict[str, object] | None, url: str) -> None:
    connector = http_connector(port=None, retries=0, **({"tls": tls} if tls else {}))
    await connector.start()
    try:
        await connector.publish(target(url), sample_event())
    finally:
        await connector.close()


async def test_tls_with_ca_file_and_server_hostname(
    tls_peer: Peer, ca: trustme.CA, tmp_path: Path
) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    await _publish_with(
        {"ca_file": str(ca_file), "server_hostname": "hooks.example.test"}, tls_peer.url
    )
    assert len(tls_peer.requests) == 1


async def test_tls_refuses_an_unknown_ca_and_a_wrong_name(
    tls_peer: Peer, ca: trustme.CA, tmp_path: Path
) -> None:
    with pytest.raises(ConnectionLost, match="TLS"):
        await _publish_with(None, tls_peer.url)  # system CAs do not know the test CA
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with pytest.raises(ConnectionLost, match="TLS"):
        await _publish_with({"ca_file": str(ca_file)}, tls_peer.url)  # 127.0.0.1 != cert name
    assert tls_peer.requests == []


async def test_tls_insecure_skip_verify(tls_peer: Peer, caplog: pytest.LogCaptureFixture) -> None:
    await _publish_with({"insecure_skip_verify": True}, tls_peer.url)
    assert len(tls_peer.requests) == 1
    assert "insecure_skip_verify is on" in caplog.text


async def test_mutual_tls(ca: trustme.CA, tmp_path: Path) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("hooks.example.test").configure_cert(context)
    ca.configure_trust(context)
    context.verify_mode = ssl.CERT_REQUIRED  # the server demands a client certificate
    peer = Peer()
    runner = await _serve(peer, context)
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "c.pem", tmp_path / "k.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    client = ca.issue_cert("gateway.example.test")
    client.cert_chain_pems[0].write_to_path(str(cert_file))
    client.private_key_pem.write_to_path(str(key_file))
    tls = {"ca_file": str(ca_file), "server_hostname": "hooks.example.test"}
    try:
        with pytest.raises(ConnectionLost):
            await _publish_with(tls, peer.url)  # no client certificate: refused
        await _publish_with(
            {**tls, "cert_file": str(cert_file), "key_file": str(key_file)}, peer.url
        )
    finally:
        await runner.cleanup()
    assert len(peer.requests) == 1


def test_tls_block_refuses_plaintext_targets(tmp_path: Path) -> None:
    connector = http_connector(port=None, tls={"insecure_skip_verify": True})
    problem = HttpConnector.validate_target(connector.options, target("http://127.0.0.1/x"))
    assert problem is not None and "https://" in problem
    assert HttpConnector.validate_target(connector.options, target("https://h/x")) is None


def test_target_options_are_checked() -> None:
    with pytest.raises(ValueError, match="expected http://host"):
        target("ftp://h/x")
    with pytest.raises(ValueError, match="Content-Type carries datacontenttype"):
        target("http://h/x", headers={"Content-Type": "text/plain"})
    with pytest.raises(ValueError, match="credentials"):
        target("http://user:pw@h/x")
    assert (
        target("http://{subject}.hooks/x", mode=Mode.STRUCTURED).url == "http://{subject}.hooks/x"
    )


def test_header_clash_names_the_bindings_headers() -> None:
    options = http_connector(port=None).options
    assert HttpConnector.header_clash(options, "CE-Id") is not None
    assert HttpConnector.header_clash(options, "content-type") is not None
    assert HttpConnector.header_clash(options, "X-Tenant") is None
