"""The http source against real HTTP on loopback: answers follow the acknowledgements."""

from __future__ import annotations

import asyncio
from unittest.mock import patch

import aiohttp
import orjson
import pytest
from http_helpers import sample_event, source, until
from meshgate_cloudevents_http import HttpConnector
from meshgate_cloudevents_http import server as server_module
from meshgate_cloudevents_http.binding import BATCH_CONTENT_TYPE, to_message

from connectors import Delivery
from routing.formats import json as json_format

Answer = tuple[int, dict[str, str], str]


def url(connector: HttpConnector, path: str) -> str:
    return f"http://127.0.0.1:{connector.port}{path}"


async def post(connector: HttpConnector, path: str, body: bytes, headers: dict[str, str]) -> Answer:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url(connector, path), data=body, headers=headers) as answer,
    ):
        return answer.status, dict(answer.headers), await answer.text()


def send(
    connector: HttpConnector, path: str, n: int = 1
) -> asyncio.Task[tuple[int, dict[str, str], str]]:
    message = to_message(sample_event(n))
    return asyncio.create_task(post(connector, path, message.body, message.headers))


async def next_delivery(stream: object) -> Delivery:
    return await asyncio.wait_for(anext(stream), 10)  # type: ignore[call-overload]


async def test_answer_waits_for_the_ack_then_204(receiver: HttpConnector) -> None:
    src = source()
    stream = receiver.consume(src)  # readiness: the path is served from here on
    request = send(receiver, src.path, 1)
    delivery = await next_delivery(stream)
    assert receiver.decode(delivery) == sample_event(1)
    assert delivery.address == src.path and delivery.content_type == "application/json"
    await asyncio.sleep(0)  # the answer must not come before the ack
    assert not request.done()
    await delivery.ack()
    status, _, _ = await request
    assert status == 204


@pytest.mark.parametrize(("requeue", "status"), [(True, 503), (False, 422)])
async def test_nack_answers_5xx(receiver: HttpConnector, requeue: bool, status: int) -> None:
    src = source()
    stream = receiver.consume(src)
    request = send(receiver, src.path)
    await (await next_delivery(stream)).nack(requeue=requeue)
    got, headers, text = await request
    assert got == status
    assert ("Retry-After" in headers) == requeue
    assert "send again" in text if requeue else "refused" in text


async def test_malformed_event_gets_400_naming_the_header(receiver: HttpConnector) -> None:
    src = source()
    receiver.consume(src)
    headers = {"ce-specversion": "1.0", "ce-source": "/s", "ce-type": "t"}
    status, _, text = await post(receiver, src.path, b"x", headers)
    assert status == 400
    assert "header ce-id: required attribute is missing" in text


async def test_unknown_format_gets_415(receiver: HttpConnector) -> None:
    src = source()
    receiver.consume(src)
    status, _, text = await post(
        receiver, src.path, b"<e/>", {"Content-Type": "application/cloudevents+xml"}
    )
    assert status == 415 and "application/cloudevents+xml" in text


async def test_batch_is_answered_once_every_event_is_settled(receiver: HttpConnector) -> None:
    src = source()
    stream = receiver.consume(src)
    body = orjson.dumps([json_format.encode_object(sample_event(n)) for n in (1, 2, 3)])
    request = asyncio.create_task(
        post(receiver, src.path, body, {"Content-Type": BATCH_CONTENT_TYPE})
    )
    deliveries = [await next_delivery(stream) for _ in range(3)]
    assert [receiver.decode(d).id for d in deliveries] == ["evt-1", "evt-2", "evt-3"]  # type: ignore[union-attr]
    await deliveries[0].ack()
    await deliveries[2].ack()
    assert not request.done()
    await deliveries[1].nack(requeue=True)  # one failure: the whole batch is sent again
    status, _, text = await request
    assert status == 503 and "1 of 3 events" in text


async def test_empty_batch_is_204_at_once(receiver: HttpConnector) -> None:
    src = source()
    receiver.consume(src)
    status, _, _ = await post(receiver, src.path, b"[]", {"Content-Type": BATCH_CONTENT_TYPE})
    assert status == 204


async def test_full_path_answers_429_with_retry_after(receiver: HttpConnector) -> None:
    src = source(max_in_flight=2)
    stream = receiver.consume(src)
    first, second = send(receiver, src.path, 1), send(receiver, src.path, 2)
    held = [await next_delivery(stream), await next_delivery(stream)]
    status, headers, text = await post(
        receiver, src.path, to_message(sample_event(3)).body, to_message(sample_event(3)).headers
    )
    assert status == 429 and headers["Retry-After"] == "1" and "max_in_flight 2" in text
    for delivery in held:
        await delivery.ack()
    assert [(await first)[0], (await second)[0]] == [204, 204]
    again = send(receiver, src.path, 3)  # room again
    await (await next_delivery(stream)).ack()
    assert (await again)[0] == 204


async def test_unread_requests_wait_unpulled_and_get_503_when_the_stream_closes(
    receiver: HttpConnector,
) -> None:
    src = source()
    stream = receiver.consume(src)
    request = send(receiver, src.path)
    await until(lambda: request.done() or False, timeout=0.3)  # nobody pulls: no answer
    assert not request.done()
    await stream.aclose()
    status, headers, _ = await request
    assert status == 503 and "Retry-After" in headers
    status, _, text = await post(receiver, src.path, b"", {})
    assert status == 503 and "not being read right now" in text


async def test_close_answers_events_in_flight_503() -> None:
    from http_helpers import http_connector

    connector = http_connector()
    await connector.start()
    src = source()
    stream = connector.consume(src)
    request = send(connector, src.path)
    await next_delivery(stream)  # taken, never settled: the gateway stops
    await connector.close()
    status, _, text = await request
    assert status == 503 and "stopping" in text
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


async def test_plain_webhook_is_no_cloudevent_but_is_delivered(receiver: HttpConnector) -> None:
    src = source()
    stream = receiver.consume(src)
    request = asyncio.create_task(
        post(receiver, src.path, b'{"order": 42}', {"Content-Type": "application/json"})
    )
    delivery = await next_delivery(stream)
    assert receiver.decode(delivery) is None
    assert delivery.payload == b'{"order": 42}' and delivery.content_type == "application/json"
    await delivery.ack()
    assert (await request)[0] == 204


async def test_unknown_path_404_wrong_method_405_too_large_413(receiver: HttpConnector) -> None:
    src = source()
    receiver.consume(src)
    status, _, text = await post(receiver, "/nowhere", b"", {})
    assert status == 503 and "yet" in text  # just started: the route may be coming
    with patch.object(server_module, "STARTUP_GRACE", 0.0):
        status, _, text = await post(receiver, "/nowhere", b"", {})
    assert status == 404 and src.path in text
    async with aiohttp.ClientSession() as session, session.get(url(receiver, src.path)) as answer:
        assert answer.status == 405 and answer.headers["Allow"] == "POST, PUT"
    status, _, _ = await post(receiver, src.path, b"x" * (5 * 1024 * 1024), {})
    assert status == 413


async def test_a_path_read_twice_is_refused(receiver: HttpConnector) -> None:
    src = source()
    receiver.consume(src)
    with pytest.raises(Exception, match="read by another route source"):
        receiver.consume(src)


async def test_closing_the_iterator_answers_pulled_unsettled_events_503(
    receiver: HttpConnector,
) -> None:
    """A route removed on reload: what it pulled but never settled is sent again."""
    src = source()
    stream = receiver.consume(src)
    request = send(receiver, src.path)
    stale = await next_delivery(stream)
    await stream.aclose()
    status, _, _ = await request
    assert status == 503
    await stale.ack()  # too late, and harmless
    again = receiver.consume(src)  # the path is read again: the resend gets through
    request = send(receiver, src.path)
    await (await next_delivery(again)).ack()
    assert (await request)[0] == 204


def test_dry_run_delivery_builds_what_the_server_would() -> None:
    """``meshgate routes check --message`` for an http source: no server, same parse."""
    from meshgate_cloudevents_http import HttpOptions

    from connectors import MessageSpec, MessageSpecError

    message = to_message(sample_event(5))
    spec = MessageSpec(payload=message.body, address="/events", headers=message.headers)
    delivery = HttpConnector.dry_run_delivery(HttpOptions(), spec)
    assert delivery.address == "/events" and delivery.coordinates == {"path": "/events"}
    assert HttpConnector("c", HttpOptions()).decode(delivery) == sample_event(5)
    assert HttpConnector.source_receives(source("/events"), delivery)
    assert not HttpConnector.source_receives(source("/other"), delivery)
    plain = MessageSpec(payload=b"{}", address="/events", content_type="application/json")
    assert (
        HttpConnector("c", HttpOptions()).decode(
            HttpConnector.dry_run_delivery(HttpOptions(), plain)
        )
        is None
    )
    with pytest.raises(MessageSpecError, match="path"):
        HttpConnector.dry_run_delivery(HttpOptions(), MessageSpec(payload=b""))
