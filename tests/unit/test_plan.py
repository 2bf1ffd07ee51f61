"""gateway.plan: the one "what does this route do with this message" step that the
pipeline and `meshgate routes check` share; pure (no I/O, no counters, no logs)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from connectors.base import Delivery
from gateway.config import GatewayConfig, load_config
from gateway.dryrun import check_message, message_spec
from gateway.mesh import LoopGuard
from gateway.plan import (
    Filtered,
    Forward,
    Looped,
    NotACloudEvent,
    Rejected,
    decode,
    plan_route,
)
from routing.errors import InvalidEvent, TemplateError

CONFIG = """\
gateway: {{id: g1, state_dir: '{state}'}}
connectors:
  mem: {{type: memory}}
routes:
  - name: legacy
    from: {{connector: mem, topic: legacy}}
    to: [{{connector: mem, topic: out}}]
  - name: wrapped
    from: {{connector: mem, topic: wrapped}}
    ingress: {{type: com.acme.t, source: "mem://{{topic}}"}}
    to: [{{connector: mem, topic: "out.{{header.line}}"}}, {{connector: mem, topic: static}}]
  - name: filtered
    from: {{connector: mem, topic: filtered}}
    filter: "type = 'com.acme.wanted'"
    to: [{{connector: mem, topic: out}}]
"""

CE = {"ce-specversion": "1.0", "ce-id": "e1", "ce-source": "urn:x", "ce-type": "com.acme.t"}


def load(tmp_path: Path, text: str = CONFIG) -> GatewayConfig:
    path = tmp_path / "c.yaml"
    path.write_text(text.format(state=tmp_path / "state"))
    return load_config(path)


def delivery(config: GatewayConfig, topic: str, headers: dict[str, str]) -> Delivery:
    cls, options = config.connectors["mem"]
    spec = message_spec({"topic": topic, "headers": headers, "payload": '{"t": 1}'})
    return cls.dry_run_delivery(options, spec)


def plan(config: GatewayConfig, route: str, topic: str, headers: dict[str, str]) -> Any:
    (chosen,) = [r for r in config.table.routes if r.name == route]
    cls, options = config.connectors["mem"]
    connector = cls("mem", options)
    message = delivery(config, topic, headers)
    decoded, error = decode(connector, message)
    guard = LoopGuard(config.gateway.id, config.gateway.max_hops)
    return plan_route(chosen, message, decoded, error, connector.address_separator, guard)


def test_not_a_cloudevent_without_ingress_is_rejected(tmp_path: Path) -> None:
    result = plan(load(tmp_path), "legacy", "legacy", {})
    assert isinstance(result, Rejected) and isinstance(result.error, NotACloudEvent)
    assert "route 'legacy' has no ingress rules" in str(result.error)


def test_a_broken_cloudevent_is_rejected_before_ingress(tmp_path: Path) -> None:
    result = plan(load(tmp_path), "wrapped", "wrapped", {"ce-specversion": "1.0"})
    assert isinstance(result, Rejected) and isinstance(result.error, InvalidEvent)


def test_ingress_wraps_and_each_target_is_rendered_or_fails_alone(tmp_path: Path) -> None:
    config = load(tmp_path)
    result = plan(config, "wrapped", "wrapped", {"line": "l7"})
    assert isinstance(result, Forward)
    assert result.event.source == "mem://wrapped" and result.event.type == "com.acme.t"
    assert result.event.extensions["meshpath"] == "g1"  # stamped by the loop guard
    assert [r.options.topic for r in result.targets] == ["out.l7", "static"]
    # Without the header the first target cannot render; the second still can.
    result = plan(config, "wrapped", "wrapped", {})
    assert isinstance(result, Forward)
    first, second = result.targets
    assert isinstance(first.error, TemplateError) and first.options is None
    assert second.error is None and second.options.topic == "static"


def test_filter_and_loop_guard_decide_without_logging(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = load(tmp_path)
    assert isinstance(plan(config, "filtered", "filtered", CE), Filtered)
    wanted = {**CE, "ce-type": "com.acme.wanted"}
    assert isinstance(plan(config, "filtered", "filtered", wanted), Forward)
    caplog.set_level(logging.DEBUG)
    looped = plan(config, "filtered", "filtered", {**wanted, "ce-meshpath": "g1,g2"})
    assert isinstance(looped, Looped)
    assert looped.why == "its path already holds g1 before another gateway"
    assert caplog.records == []  # the pipeline logs a drop (LoopGuard.dropped), not the plan


@pytest.fixture
def public_key(tmp_path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "edge.pem"
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


@pytest.mark.parametrize("policy", ["strict", "passthrough"])
def test_routes_check_verifies_signatures_as_the_runtime_does(
    tmp_path: Path, public_key: Path, policy: str
) -> None:
    config = load(
        tmp_path,
        "gateway: {{id: g1, state_dir: '{state}'}}\n"
        "connectors: {{mem: {{type: memory}}}}\n"
        "routes:\n"
        "  - name: checked\n"
        f"    from: {{{{connector: mem, topic: in, verify: {{{{public_key_files: ['{public_key}'],"
        f" policy: {policy}}}}}}}}}\n"
        "    to: [{{connector: mem, topic: out}}]\n",
    )
    (report,) = check_message(config, {"connector": "mem", "topic": "in", "headers": CE})
    if policy == "strict":  # unsigned: refused, like any invalid event
        assert not report.matched
        assert report.reason.startswith("SignatureError: ")
        assert report.reason.endswith("goes to the dead-letter target")
    else:  # forwarded despite the missing signature (the runtime counts it)
        assert report.matched and report.outputs[0][0] == "mem topic=out"
