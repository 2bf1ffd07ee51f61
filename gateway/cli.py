"""The ``meshgate`` command line: run, validate, routes check, dlq, top, schema, demo, init, ...

The argparse tree is built by ``build_parser``; every command's description, examples
and exit codes live in ``gateway.clihelp`` (docs/cli.md is generated from them).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from connectors.errors import ConnectorError
from gateway import logs
from gateway.config import AdminSection, GatewayConfig, load_config, parse_listen
from gateway.dlstore import StoreError
from gateway.errors import ConfigError

if TYPE_CHECKING:
    from gateway.runtime import Gateway

__all__ = ["build_parser", "main"]

log = logging.getLogger("meshgate")

_LEVELS = ("debug", "info", "warning", "error")


def _global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """``--log-level``/``--log-format``: before the command (``top``) or after it."""
    parser.add_argument(
        "--log-level",
        choices=_LEVELS,
        type=str.lower,
        default="info" if top else argparse.SUPPRESS,
        help="debug, info, warning or error (default info)",
    )
    parser.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        default="text" if top else argparse.SUPPRESS,
        help="text (default) or json (one object per line, for log shippers)",
    )


def _every_subcommand(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases share a parser
                found += [sub, *_every_subcommand(sub)]
    return found


def _load(path: str) -> GatewayConfig | None:
    from gateway.analysis import analyse

    try:
        config = load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None
    for finding in analyse(config):
        print(f"{path}: {finding}", file=sys.stderr)
    return config


def _with_admin(config: GatewayConfig, listen: str | None) -> GatewayConfig:
    """``--admin HOST:PORT`` overrides (or adds) ``gateway.admin.listen``."""
    if listen is None:
        return config
    current = config.gateway.admin
    admin = (
        AdminSection.model_validate({"listen": listen})
        if current is None
        else current.model_copy(update={"listen": listen})
    )
    return dataclasses.replace(config, gateway=config.gateway.model_copy(update={"admin": admin}))


def _listen(text: str) -> str:
    try:
        parse_listen(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


async def _run(path: str, config: GatewayConfig, watch: bool, fail_fast: bool) -> None:
    # Imported late: `validate` needs no broker clients.
    from gateway import heap
    from gateway.admin import observed
    from gateway.reload import watch_config
    from gateway.runtime import Gateway
    from gateway.tracing import traced

    gateway = Gateway(config, fail_fast=fail_fast)
    stop = asyncio.Event()
    reload = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload.set)
    async with observed(gateway), traced(gateway):
        if not await _start(gateway, stop):
            log.info("signal received while starting: stopping")
            await gateway.stop()
            return
        heap.settle()  # long-lived objects out of the full collections (gateway/heap.py)
        watcher = asyncio.create_task(
            watch_config(path, gateway, reload, interval=2.0 if watch else None)
        )
        summary = asyncio.create_task(logs.summarize(lambda: gateway.stats))
        await stop.wait()
        log.info("signal received: draining in-flight events")
        watcher.cancel()
        summary.cancel()
        await asyncio.gather(watcher, summary, return_exceptions=True)
        await gateway.stop()


START_CANCEL_SECONDS = 5.0
"""Longest a start interrupted by a signal may take to unwind before stopping anyway."""


async def _start(gateway: Gateway, stop: asyncio.Event) -> bool:
    """``gateway.start()``, unless ``stop`` (a signal) comes first: then the start is
    cancelled and this returns False.

    Starting waits for every connector's first connection attempt, which can last long
    (timeouts per server, a NATS connector's ``connect_attempts``, fail-fast's one
    connector after the other): a SIGTERM meanwhile must not wait for it.
    """
    starting = asyncio.ensure_future(gateway.start())
    signalled = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({starting, signalled}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        signalled.cancel()
    if starting.done():
        starting.result()  # a failed start raises as before (exit status 1)
        return True
    starting.cancel()
    await asyncio.wait({starting}, timeout=START_CANCEL_SECONDS)
    if starting.done() and not starting.cancelled() and starting.exception() is not None:
        log.debug("start interrupted: %s", starting.exception())  # stopping anyway
    return False


def _install_uvloop() -> None:
    try:
        import uvloop  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return
    uvloop.install()


def _read(path: str) -> bytes:
    return sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()


def _routes_check(args: argparse.Namespace) -> int:
    from gateway.dryrun import check_event, check_message, format_reports, parse_message_spec
    from routing.errors import MeshgateError

    config = _load(args.config)
    if config is None:
        return 2
    try:
        if args.event is not None:
            reports = check_event(config, _read(args.event))
        else:
            reports = check_message(config, parse_message_spec(_read(args.message)))
    except (MeshgateError, OSError, ValueError) as exc:
        print(f"routes check: {exc}", file=sys.stderr)
        return 2
    for line in format_reports(reports):
        print(line)
    return 0


def _validate_mesh(paths: list[str]) -> int:
    """Several gateways' configs as one mesh: each file alone, then the broker graph."""
    from gateway.analysis import analyse
    from gateway.meshcheck import MeshGraph

    configs: list[GatewayConfig] = []
    for path in paths:
        try:
            config = load_config(path)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 2
        # Cycles and chains are reported for the whole mesh below, once.
        for finding in analyse(config, mesh=False):
            print(f"{path}: {finding}", file=sys.stderr)
        routes = config.table.routes
        print(f"{path}: OK (gateway {config.gateway.id}, {len(routes)} routes)")
        configs.append(config)
    graph = MeshGraph(configs)
    ids = sorted({c.gateway.id for c in configs})
    replicas = len(configs) - len(ids)
    print(
        f"mesh: {len(ids)} gateways ({', '.join(ids)})"
        + (f", {replicas} more file(s) with an id already given: replicas" if replicas else "")
    )
    for line in graph.describe():
        print(line)
    findings = graph.findings()
    for finding in findings:
        print(f"mesh: {finding}")
    if not findings:
        print("mesh: no cycles, unreachable routes or duplicate deliveries found")
    return 0


def _mesh_status(args: argparse.Namespace) -> int:
    from gateway.meshview import status

    config = _load(args.config)
    if config is None:
        return 2
    if config.gateway.mesh is None:
        print(
            f"{args.config}: gateway.mesh is not configured (no control channel)", file=sys.stderr
        )
        return 2
    try:
        lines = asyncio.run(status(config, args.seconds))
    except ConnectorError as exc:
        print(f"mesh status: cannot listen: {exc}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    return 0


def _asyncapi(args: argparse.Namespace) -> int:
    from gateway.asyncapi import build_document, document_text, generic_types, load_mesh

    try:
        members = load_mesh(args.config)
        text = document_text(build_document(members), as_json=args.json)
    except (ConfigError, OSError) as exc:
        print(exc, file=sys.stderr)
        return 2
    for kind in generic_types(members):
        print(
            f"asyncapi: note: connector type {kind!r} declares no asyncapi hook: described "
            "generically, without protocol bindings or binary mode "
            "(docs/plugins.md#optional-hooks)",
            file=sys.stderr,
        )
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        Path(args.output).write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"asyncapi: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The whole ``meshgate`` argparse tree, help texts included."""
    from gateway import clihelp, dlq_command, top
    from gateway.completion import SHELLS
    from gateway.init_command import broker_kinds

    parser = argparse.ArgumentParser(prog="meshgate")
    _global_options(parser, top=True)
    from gateway.asyncapi import meshgate_version

    parser.add_argument("--version", action="version", version=f"meshgate {meshgate_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the gateway with a config file")
    run.add_argument("config", help="path to the YAML config file")
    run.add_argument(
        "--no-watch",
        action="store_true",
        help="do not reload when the file changes (SIGHUP still reloads)",
    )
    run.add_argument(
        "--admin",
        metavar="HOST:PORT",
        type=_listen,
        help="serve the admin HTTP API (/healthz, /readyz, /metrics, /api/...) here; "
        "overrides gateway.admin.listen (':PORT' listens on loopback)",
    )
    run.add_argument(
        "--fail-fast",
        action="store_true",
        help="exit with code 1 when a connector cannot connect at start (first attempt), "
        "instead of retrying it in the background; for CI (config: gateway.fail_fast)",
    )

    validate = commands.add_parser(
        "validate",
        help="check a config file and exit (no broker is contacted unless --connect); with "
        "several files, analyse them together as one mesh (cycles, unreachable routes, "
        "duplicates)",
    )
    validate.add_argument("config", nargs="+", help="path to the YAML config file(s)")
    validate.add_argument(
        "--connect",
        action="store_true",
        help="also connect to every broker and check the streams, queues, exchanges and "
        "topics the routes need (creates nothing)",
    )
    validate.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="with --connect: bound for each connection and its checks (default 5)",
    )

    routes_parser = commands.add_parser("routes", help="inspect routes without touching any broker")
    routes_commands = routes_parser.add_subparsers(
        dest="routes_command", required=True, metavar="ACTION"
    )
    check = routes_commands.add_parser(
        "check",
        help="show which routes match an event and the exact messages they would publish",
    )
    check.add_argument("config", help="path to the YAML config file")
    given = check.add_mutually_exclusive_group(required=True)
    given.add_argument("--event", help="a CloudEvent in JSON format (file, or - for stdin)")
    given.add_argument(
        "--message",
        help="a native message as JSON: connector, its address (topic, subject, queue, or "
        "exchange + routing_key), headers, key, payload or payload_base64 (file, or - for stdin)",
    )

    schema = commands.add_parser(
        "schema", help="print the JSON Schema of the config file (installed connector types)"
    )
    schema.add_argument("--output", metavar="FILE", help="write it to FILE instead of stdout")

    demo = commands.add_parser(
        "demo", help="start local brokers, traffic and a gateway, and show events flowing"
    )
    demo.add_argument(
        "--seconds", type=float, default=None, help="stop after this many seconds (default: Ctrl-C)"
    )
    demo.add_argument(
        "--rate", type=float, default=20.0, help="events per second per producer (default 20)"
    )

    asyncapi = commands.add_parser(
        "asyncapi", help="print the AsyncAPI 3.0 document of a gateway or of a mesh of several"
    )
    asyncapi.add_argument("config", nargs="+", help="route files (one per gateway)")
    asyncapi.add_argument("--output", metavar="FILE", help="write it to FILE instead of stdout")
    asyncapi.add_argument("--json", action="store_true", help="JSON instead of YAML")

    mesh = commands.add_parser("mesh", help="the mesh view from the control channel")
    mesh_commands = mesh.add_subparsers(dest="mesh_command", required=True, metavar="ACTION")
    mesh_status = mesh_commands.add_parser(
        "status",
        help="listen on the control channel of a config (gateway.mesh) for a bounded time and "
        "print the mesh: gateways and replicas, brokers, routes and their rates",
    )
    mesh_status.add_argument("config", help="a route file with gateway.mesh")
    mesh_status.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="how long to listen (default: 2.5 announcement intervals)",
    )

    dlq_command.add_parser(commands)
    top.add_parser(commands)

    connectors = commands.add_parser(
        "connectors", help="list the installed connector types, their versions and origin"
    )
    connectors.add_argument("--json", action="store_true", help="one JSON document")

    init = commands.add_parser(
        "init", help="write a commented starter config for the brokers found on loopback"
    )
    init.add_argument(
        "config",
        nargs="?",
        default="meshgate.yaml",
        help="file to write (default meshgate.yaml); never overwritten",
    )
    init.add_argument(
        "--brokers",
        metavar="KINDS",
        type=broker_kinds,
        help="comma-separated broker kinds (kafka, amqp, mqtt, nats) instead of probing; "
        "'none' for none",
    )

    completion = commands.add_parser(
        "completion", help="print a shell completion script (bash or zsh)"
    )
    completion.add_argument("shell", choices=SHELLS, help="the shell: bash or zsh")

    for sub in _every_subcommand(parser):
        _global_options(sub, top=False)
    clihelp.document(parser)
    return parser


def _validate_one(path: str) -> int:
    config = _load(path)
    if config is None:
        return 2
    routes = config.table.routes
    print(f"{path}: OK ({len(config.connectors)} connectors, {len(routes)} routes)")
    print()
    from gateway.validate_table import route_table

    for line in route_table(config):
        print(line)
    return 0


def _validate_connect(paths: list[str], seconds: float) -> int:
    from gateway.connect_check import check

    problems = 0
    for path in paths:
        config = load_config(path)  # already validated
        print(f"\n{path}: against the live brokers")
        report = asyncio.run(check(config, seconds))
        for line in report.lines:
            print(f"  {line}")
        problems += report.problems
    if problems:
        print(f"{problems} problem(s) with the live brokers", file=sys.stderr)
        return 1
    return 0


def _validate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    several = len(args.config) > 1
    code = _validate_mesh(args.config) if several else _validate_one(args.config[0])
    if code != 0 or not args.connect:
        return code
    return _validate_connect(args.config, args.timeout)


def _connectors(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from gateway.connectors_command import listing

    for line in listing(as_json=args.json):
        print(line)
    return 0


def _init(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from gateway.init_command import run as run_init

    return run_init(args.config, args.brokers)


def _completion(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from gateway.completion import script

    sys.stdout.write(script(parser, args.shell))
    return 0


def _run_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    config = _load(args.config)
    if config is None:
        return 2
    config = _with_admin(config, args.admin)
    _install_uvloop()
    try:
        asyncio.run(_run(args.config, config, watch=not args.no_watch, fail_fast=args.fail_fast))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except (ConnectorError, StoreError, OSError) as exc:
        log.error("cannot start: %s", exc)
        return 1
    return 0


def _dlq(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    config = _load(args.config)
    if config is None:
        return 2
    from gateway import dlq_command

    return dlq_command.run(args, config)


def _top(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from gateway import top

    return top.run(args)


def _schema(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from gateway.schema import write_schema

    return write_schema(args.output)


def _demo(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from gateway.demo import run_demo

    return run_demo(seconds=args.seconds, rate=args.rate)


Command = Callable[[argparse.Namespace, argparse.ArgumentParser], int]

_COMMANDS: dict[str, Command] = {
    "validate": _validate,
    "connectors": _connectors,
    "init": _init,
    "completion": _completion,
    "run": _run_command,
    "dlq": _dlq,
    "routes": lambda args, parser: _routes_check(args),
    "top": _top,
    "schema": _schema,
    "asyncapi": lambda args, parser: _asyncapi(args),
    "mesh": lambda args, parser: _mesh_status(args),
    "demo": _demo,
}
"""What each subcommand runs: its parsed arguments -> the exit code."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.setup(args.log_level, args.log_format)
    command = _COMMANDS.get(args.command)
    if command is None:
        parser.error(f"unknown command {args.command}")
        return 2
    return command(args, parser)


if __name__ == "__main__":
    sys.exit(main())
