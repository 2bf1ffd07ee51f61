"""The ``--help`` texts of every ``meshgate`` command: description, examples, exit codes.

``document(parser)`` applies them to the argparse tree built in ``gateway.cli``, and
``help_pages(parser)`` renders every command's ``--help`` for docs/cli.md
(scripts/gen_docs.py). tests/unit/test_cli_help.py checks that every command and
subcommand has all three parts.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["COMMANDS", "Help", "document", "help_pages", "subcommands", "walk"]

_CONFIG_EXIT = "2  the config file is missing or invalid (every problem is printed)"


@dataclass(frozen=True, slots=True)
class Help:
    description: str
    examples: tuple[str, ...]
    exit_codes: tuple[str, ...]


COMMANDS: dict[str, Help] = {
    "": Help(
        "Event-mesh gateway: bridges Kafka, RabbitMQ (AMQP 0-9-1), MQTT and NATS as "
        "CloudEvents. --log-level and --log-format may come before or after the command.",
        (
            "meshgate init                       # a starter config for the brokers found",
            "meshgate validate meshgate.yaml",
            "meshgate run meshgate.yaml --admin :8080",
            "meshgate --log-format json run meshgate.yaml",
        ),
        ("0  success", "1  the command failed (see its --help)", "2  usage or config error"),
    ),
    "run": Help(
        "Run the gateway. A broker that is down, at start or later, does not stop it: its "
        "connector is retried with backoff (gateway.reconnect) and the routes that need it "
        "start once it is up, while the other routes run. The file is reloaded when it "
        "changes (and on SIGHUP); SIGTERM drains in-flight events.",
        (
            "meshgate run meshgate.yaml",
            "meshgate run meshgate.yaml --admin 0.0.0.0:8080 --log-format json",
            "meshgate run meshgate.yaml --fail-fast --no-watch     # CI",
        ),
        (
            "0  stopped by SIGTERM or SIGINT (in-flight events drained)",
            "1  could not start: with --fail-fast (or gateway.fail_fast: true) a connector's "
            "first connection failed (the error line names the connector), or the local "
            "dead-letter store under gateway.state_dir cannot be opened, or the admin server "
            "cannot listen on gateway.admin.listen (--admin)",
            "2  the config file is missing or invalid (every problem is printed), or the admin "
            "token_file cannot be read or is empty",
        ),
    ),
    "validate": Help(
        "Check a config file and exit; no broker is contacted. Prints the connectors and a "
        "table of the routes; warnings (filters that never match, cycles, duplicate "
        "routes) go to stderr. With several files, analyses them together as one mesh "
        "(cycles, unreachable routes, duplicate deliveries across gateways). With "
        "--connect, also connects to every broker and checks that the JetStream streams, "
        "AMQP queues and exchanges and Kafka topics the routes need exist (nothing is "
        "created).",
        (
            "meshgate validate meshgate.yaml",
            "meshgate validate edge.yaml core.yaml     # several gateways as one mesh",
            "meshgate validate meshgate.yaml --connect --timeout 3",
        ),
        (
            "0  valid (warnings do not change the exit code); with --connect, every broker "
            "has what the routes need",
            "1  with --connect: a broker cannot be reached or lacks a stream, queue, "
            "exchange or topic (each problem is printed)",
            _CONFIG_EXIT,
        ),
    ),
    "routes": Help(
        "Inspect routes without touching any broker.",
        ("meshgate routes check meshgate.yaml --event event.json",),
        ("0  success", _CONFIG_EXIT),
    ),
    "routes check": Help(
        "Show which routes a message or event reaches, why the others do not (the filter "
        "clause that said no), and the exact native message each target would publish. "
        "--message describes a native message as its source receives it, as a JSON "
        "object: connector, the address in the protocol's words (Kafka and MQTT topic, "
        "NATS subject, AMQP queue, or exchange + routing_key; 'address' stands for any), "
        "headers, key, content_type, and payload or payload_base64. Only the routes whose "
        "source receives it are reported. --event takes a CloudEvent in JSON, checked "
        "against every route.",
        (
            "meshgate routes check meshgate.yaml --event event.json",
            'echo \'{"connector": "ops", "queue": "orders", "payload": "{}"}\' \\\n'
            "    | meshgate routes check meshgate.yaml --message -",
            'echo \'{"connector": "plant", "topic": "plant/l1/telemetry", '
            '"payload": "21"}\' \\\n    | meshgate routes check meshgate.yaml --message -',
        ),
        (
            "0  the report was printed (whether or not a route matches)",
            "2  the config is invalid, or the event or message cannot be read",
        ),
    ),
    "top": Help(
        "Show a running gateway's routes, connectors and recent events, read from its admin "
        "API; redrawn in place on a terminal, plain snapshots otherwise (a closed pipe ends "
        "it quietly).",
        (
            "meshgate top --admin http://127.0.0.1:8080",
            "meshgate top --admin https://gw:8080 --token-file token --once | head",
        ),
        (
            "0  stopped (Ctrl-C), or --once printed its snapshot",
            "1  the gateway's admin API cannot be read",
            "2  the token file cannot be read",
        ),
    ),
    "schema": Help(
        "Print the JSON Schema of the config file for the installed connector types "
        "(plugins included), for editors and CI.",
        (
            "meshgate schema --output meshgate.schema.json",
            "# then in meshgate.yaml: # yaml-language-server: $schema=meshgate.schema.json",
        ),
        ("0  printed or written", "2  the output file cannot be written"),
    ),
    "demo": Help(
        "Start local brokers where none listen (NATS, a Kafka mock cluster, and RabbitMQ and "
        "MQTT when found), producers and a gateway, and show events flowing between "
        "protocols. Everything it creates is removed when it stops (Ctrl-C, --seconds, or "
        "a closed output pipe).",
        ("meshgate demo", "meshgate demo --seconds 30 --rate 50", "meshgate demo | head -40"),
        ("0  stopped (Ctrl-C, --seconds elapsed or output closed)",),
    ),
    "asyncapi": Help(
        "Print the AsyncAPI 3.0 document of one gateway, or of a mesh of several (one "
        "route file per gateway): channels per broker address, operations per route.",
        (
            "meshgate asyncapi meshgate.yaml",
            "meshgate asyncapi edge.yaml core.yaml --json --output mesh.asyncapi.json",
        ),
        ("0  printed or written", "2  a config is invalid or the output cannot be written"),
    ),
    "mesh": Help(
        "The mesh view from the control channel (gateway.mesh).",
        ("meshgate mesh status meshgate.yaml",),
        ("0  success", "1  cannot listen on the control channel", _CONFIG_EXIT),
    ),
    "mesh status": Help(
        "Listen on the control channel of a config (gateway.mesh) for a bounded time and "
        "print the mesh: gateways and replicas, brokers, routes and their rates.",
        ("meshgate mesh status meshgate.yaml", "meshgate mesh status meshgate.yaml --seconds 10"),
        (
            "0  printed",
            "1  cannot listen on the control channel",
            "2  the config is invalid or has no gateway.mesh",
        ),
    ),
    "dlq": Help(
        "Dead letters of a gateway: its local dead-letter store (ids are numbers) and the "
        "dead_letter destinations its routes declare (ids are CONNECTOR:EVENT-ID). Broker "
        "dead letters are read with manual acks; only what is redriven or purged is acked, "
        "the rest is requeued when the command ends.",
        (
            "meshgate dlq list meshgate.yaml",
            "meshgate dlq show meshgate.yaml 3 --hex",
            "meshgate dlq redrive meshgate.yaml --all --route orders",
        ),
        ("0  success", "1  the store or a broker failed", _CONFIG_EXIT),
    ),
    "dlq list": Help(
        "One line per dead letter: id, route, age, error.",
        ("meshgate dlq list meshgate.yaml", "meshgate dlq list meshgate.yaml --local"),
        ("0  listed", "1  the store or a broker failed", _CONFIG_EXIT),
    ),
    "dlq show": Help(
        "One dead letter: headers, error, original bytes.",
        ("meshgate dlq show meshgate.yaml 3", "meshgate dlq show meshgate.yaml core:order-7 --hex"),
        ("0  shown", "1  no such dead letter, or the store or a broker failed", _CONFIG_EXIT),
    ),
    "dlq redrive": Help(
        "Republish the original messages (no binding, the original bytes and headers) "
        "where they came from or to --to, and remove each once the broker confirmed it.",
        (
            "meshgate dlq redrive meshgate.yaml 3 4",
            "meshgate dlq redrive meshgate.yaml --all --route orders --to core:orders.retry",
        ),
        (
            "0  every selected dead letter was redriven",
            "1  some were not (they are kept), or the store or a broker failed",
            _CONFIG_EXIT,
        ),
    ),
    "dlq purge": Help(
        "Delete dead letters (broker dead letters are acked).",
        ("meshgate dlq purge meshgate.yaml 3", "meshgate dlq purge meshgate.yaml --all --local"),
        ("0  purged", "1  the store or a broker failed", _CONFIG_EXIT),
    ),
    "connectors": Help(
        "List the installed connector types: version, where each comes from (built-in or "
        "the plugin distribution that declares it in the meshgate.connectors entry-point "
        "group), its entry point, and whether it imports.",
        ("meshgate connectors", "meshgate connectors --json"),
        ("0  listed (a broken plugin is shown as such)",),
    ),
    "init": Help(
        "Write a commented starter config for the brokers listening on loopback (Kafka "
        "9092, RabbitMQ 5672, MQTT 1883, NATS 4222, probed with a short timeout): one "
        "connector and one route each. It passes `meshgate validate`. An existing file is "
        "never overwritten.",
        (
            "meshgate init",
            "meshgate init edge.yaml --brokers mqtt,nats     # no probing",
        ),
        ("0  written", "1  the file exists or cannot be written"),
    ),
    "completion": Help(
        "Print a shell completion script for commands and options, generated from this "
        "command line (regenerate it after an upgrade).",
        (
            "source <(meshgate completion bash)            # this bash session",
            "meshgate completion bash > /etc/bash_completion.d/meshgate",
            'meshgate completion zsh > "${fpath[1]}/_meshgate"',
        ),
        ("0  printed",),
    ),
}


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subcommands of ``parser`` by name (aliases included), {} for a leaf."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def walk(
    parser: argparse.ArgumentParser, path: str = ""
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every parser of the tree with its command path ("" for ``meshgate`` itself)."""
    yield path, parser
    for name, sub in subcommands(parser).items():
        yield from walk(sub, f"{path} {name}".strip())


def _wrap(text: str, indent: str = "") -> str:
    return textwrap.fill(text, 88, initial_indent=indent, subsequent_indent=indent)


def _epilog(help_: Help) -> str:
    examples = "\n".join(
        "\n".join("  " + line for line in example.splitlines()) for example in help_.examples
    )
    codes = "\n".join(
        textwrap.fill(code, 88, initial_indent="  ", subsequent_indent="     ")
        for code in help_.exit_codes
    )
    return f"examples:\n{examples}\n\nexit codes:\n{codes}\n"


def document(parser: argparse.ArgumentParser) -> None:
    """Give every parser in the tree its description, examples and exit codes."""
    for path, sub in walk(parser):
        help_ = COMMANDS.get(path)
        if help_ is None:
            continue
        sub.description = _wrap(help_.description)
        sub.epilog = _epilog(help_)
        sub.formatter_class = argparse.RawDescriptionHelpFormatter


@contextlib.contextmanager
def _columns(width: int) -> Iterator[None]:
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)
    try:
        yield
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved


def help_pages(parser: argparse.ArgumentParser) -> list[tuple[str, str]]:
    """``(command path, --help text)`` for every command, at a fixed width of 100."""
    with _columns(100):
        return [(path, sub.format_help()) for path, sub in walk(parser)]
