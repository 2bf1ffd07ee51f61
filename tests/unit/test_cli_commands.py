"""The command line: --help of every command, validate's route table, connectors, init,
completion."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from gateway import clihelp
from gateway.cli import build_parser, main
from gateway.completion import command_words, script
from gateway.init_command import KINDS, probe, starter_config

README_CONFIG = """\
gateway: {id: edge-1}
connectors:
  plant: {type: mqtt, host: 127.0.0.1, port: 1, protocol: 5}
  core: {type: kafka, bootstrap_servers: "127.0.0.1:1"}
  edge: {type: nats, servers: ["nats://127.0.0.1:1"]}
routes:
  - name: telemetry
    from: {connector: plant, topic: "plant/+/telemetry/#", qos: 1}
    ingress: {type: "com.acme.telemetry", source: "mqtt://plant/{topic}"}
    filter: "type LIKE 'com.acme.%' AND subject <> 'test'"
    to:
      - {connector: core, topic: telemetry, key: "{topic[1]}"}
      - {connector: edge, subject: "telemetry.{topic[1]}"}
    dead_letter: {connector: core, topic: telemetry.dlq}
"""


def test_every_command_has_a_description_examples_and_exit_codes() -> None:
    pages = dict(clihelp.help_pages(build_parser()))
    assert set(pages) == set(clihelp.COMMANDS), "a command without clihelp.COMMANDS entry"
    for path, text in pages.items():
        assert "\nexamples:\n  meshgate" in text or "\nexamples:\n  source" in text, path
        assert "\nexit codes:\n  0  " in text, path
        parser = dict(clihelp.walk(build_parser()))[path]
        assert parser.description, path


def test_validate_prints_a_readable_route_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(README_CONFIG)
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "{'" not in out and "':" not in out  # no Python reprs
    lines = out.splitlines()
    assert lines[0] == f"{path}: OK (3 connectors, 1 routes)"
    assert "plant      mqtt   mqtt://127.0.0.1:1" in lines
    row = next(line for line in lines if line.startswith("telemetry"))
    assert row.split("  ")[0] == "telemetry"
    assert row.endswith("core topic=telemetry key={topic[1]}")
    assert any(line.strip() == "dead letter: core topic=telemetry.dlq" for line in lines)
    assert any(
        line.strip() == 'edge subject="telemetry.{topic[1]}"'
        or line.strip() == "edge subject=telemetry.{topic[1]}"
        for line in lines
    )


def test_connectors_lists_the_builtins(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["connectors"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["TYPE", "VERSION", "FROM", "ENTRY", "POINT", "STATUS"]
    kafka = next(line for line in lines if line.startswith("kafka "))
    assert kafka.split()[2:] == ["built-in", "connectors.kafka:KafkaConnector", "ok"]
    assert main(["connectors", "--json"]) == 0
    assert '"type": "nats"' in capsys.readouterr().out


@pytest.mark.parametrize("found", [[], ["nats"], list(KINDS)], ids=["none", "nats", "all"])
def test_init_config_passes_validate(
    found: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "meshgate.yaml"
    brokers = ",".join(found) or "none"
    assert main(["init", str(path), "--brokers", brokers]) == 0
    assert main(["validate", str(path)]) == 0
    captured = capsys.readouterr()
    assert "warning" not in captured.err, captured.err
    assert f"{path}: OK ({max(len(found), 1)} connectors, {max(len(found), 1)} routes)" in (
        captured.out
    )


def test_init_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "meshgate.yaml"
    path.write_text("mine\n")
    assert main(["init", str(path), "--brokers", "none"]) == 1
    assert (
        capsys.readouterr().err
        == f"init: {path} exists; not overwriting it (choose another file)\n"
    )
    assert path.read_text() == "mine\n"


def test_init_rejects_an_unknown_broker_kind(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["init", "x.yaml", "--brokers", "rabbitmq"])
    assert "unknown broker kind 'rabbitmq' (choose from kafka, amqp, mqtt, nats, or none)" in (
        capsys.readouterr().err
    )


def test_probe_is_quick() -> None:
    started = time.monotonic()
    found = probe(timeout=0.2)
    assert time.monotonic() - started < 2
    assert set(found) <= set(KINDS)
    assert ("\n  kafka: {type: kafka" in starter_config(found)) == ("kafka" in found)


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_names_every_command_and_option(shell: str, tmp_path: Path) -> None:
    parser = build_parser()
    text = script(parser, shell)
    for path, words in command_words(parser).items():
        for name in path.split():
            assert name in text
        for word in words:
            assert word in text, (path, word)
    for command in ("run", "validate", "routes", "check", "dlq", "redrive", "init", "completion"):
        assert f" {command} " in text or f"({command} " in text or f" {command})" in text
    binary = shutil.which(shell)
    if binary is not None:  # the script at least parses
        (tmp_path / "c.sh").write_text(text)
        subprocess.run([binary, "-n", str(tmp_path / "c.sh")], check=True, timeout=10)


def test_bash_completion_completes_subcommands(tmp_path: Path) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    (tmp_path / "c.sh").write_text(script(build_parser(), "bash"))
    probe_script = f"""
source {tmp_path / "c.sh"}
COMP_WORDS=(meshgate routes ch); COMP_CWORD=2; _meshgate; echo "${{COMPREPLY[@]}}"
COMP_WORDS=(meshgate --log-level ""); COMP_CWORD=2; _meshgate; echo "${{COMPREPLY[@]}}"
COMP_WORDS=(meshgate dlq list --ro); COMP_CWORD=3; _meshgate; echo "${{COMPREPLY[@]}}"
"""
    result = subprocess.run(
        [bash, "-c", probe_script], capture_output=True, text=True, timeout=10, check=True
    )
    assert result.stdout.splitlines() == ["check", "debug info warning error", "--route"]
