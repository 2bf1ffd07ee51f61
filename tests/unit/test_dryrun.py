"""`meshgate routes check`: matching, rejected clauses and exact native messages, no broker."""

from __future__ import annotations

from pathlib import Path

from gateway.cli import main
from gateway.config import load_config
from gateway.dryrun import check_event, check_message

CONFIG = """\
gateway: {id: g}
connectors:
  k: {type: kafka, bootstrap_servers: "127.0.0.1:1"}
  n: {type: nats, servers: ["nats://127.0.0.1:1"]}
  m: {type: mqtt, host: 127.0.0.1, port: 1, protocol: 5}
routes:
  - name: orders
    from: {connector: n, subject: "orders.>", jetstream: {durable: gw, stream: ORDERS}}
    filter: "type LIKE 'com.acme.%' AND subject <> 'test'"
    to: [{connector: k, topic: "orders.{topic[1]}", key: "{subject}"}]
  - name: plant
    from: {connector: m, topic: "plant/+/t"}
    ingress: {type: "com.acme.t", source: "mqtt://{topic}"}
    to: [{connector: n, subject: "t.{topic[1]}", jetstream: false}]
"""

EVENT = b'{"specversion":"1.0","id":"e1","source":"urn:x","type":"com.acme.a","subject":"test"}'


def config(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG)
    return load_config(path)


def test_event_rejected_by_one_clause(tmp_path: Path) -> None:
    reports = {r.route: r for r in check_event(config(tmp_path), EVENT)}
    assert not reports["orders"].matched
    assert reports["orders"].reason == "filter clause `subject <> 'test'` is not true"
    assert reports["plant"].matched  # no filter


def native_spec(**extra_headers: str) -> dict[str, object]:
    """A binary-mode NATS message on orders.eu, as `routes check --message` reads it."""
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "9",
        "ce-source": "s",
        "ce-type": "com.acme.x",
        "ce-subject": "o-1",
        **extra_headers,
    }
    return {"connector": "n", "address": "orders.eu", "headers": headers, "payload": "hi"}


def test_native_message_shows_exact_output(tmp_path: Path) -> None:
    (report,) = check_message(config(tmp_path), native_spec())
    assert report.matched
    ((target, native),) = report.outputs
    assert target == "k topic=orders.eu key=o-1"
    assert native.startswith("key: o-1\nvalue: hi\nheaders:\n  ce_id: 9\n")


def test_legacy_message_is_wrapped_and_non_matching_sources_are_skipped(tmp_path: Path) -> None:
    spec = {"connector": "m", "address": "plant/l1/t", "payload": '{"t": 1}'}
    (report,) = check_message(config(tmp_path), spec)
    assert report.route == "plant" and report.event is not None
    assert report.event.source == "mqtt://plant/l1/t"
    assert report.outputs[0][0] == "n subject=t.l1 jetstream=false"
    assert check_message(config(tmp_path), {**spec, "address": "elsewhere"}) == []


def test_cli_routes_check(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "c.yaml").write_text(CONFIG)
    (tmp_path / "e.json").write_bytes(EVENT)
    assert (
        main(["routes", "check", str(tmp_path / "c.yaml"), "--event", str(tmp_path / "e.json")])
        == 0
    )
    out = capsys.readouterr().out
    assert "route orders: no match: filter clause `subject <> 'test'` is not true" in out
    assert (
        "route plant: the filter matches; its targets need the source message ({topic[1]}): "
        "check it with --message" in out
    )


def test_target_headers_show_in_the_native_message(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        CONFIG.replace(
            'key: "{subject}"}', 'key: "{subject}", headers: {x-trace: "{header.x-trace}"}}'
        )
    )
    (report,) = check_message(load_config(path), native_spec(**{"x-trace": "t-1"}))
    assert "  x-trace: t-1" in report.outputs[0][1]


def test_mqtt_header_names_that_look_like_attributes_are_refused(tmp_path: Path) -> None:
    import pytest

    from gateway.errors import ConfigError

    path = tmp_path / "c.yaml"
    path.write_text(
        CONFIG.replace(
            "jetstream: false}]",
            "jetstream: false}]\n    dead_letter: {connector: m, topic: dl, headers: {region: eu}}",
        )
    )
    with pytest.raises(ConfigError, match="read back as that attribute"):
        load_config(path)
