"""The ``meshgate dlq`` subcommands: argument parsing and printing (``gateway.dlq`` works)."""

from __future__ import annotations

import argparse
import asyncio
import string
import sys
from collections.abc import Sequence

import orjson

from connectors.errors import ConnectorError
from gateway.config import GatewayConfig
from gateway.dlq import Letter, Workbench, WorkbenchError
from gateway.dlstore import StoreError

__all__ = ["add_parser", "run"]

_PRINTABLE = set(string.printable) - set("\x0b\x0c")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dlq = commands.add_parser(
        "dlq",
        help="list, show, redrive and purge dead letters (local store and broker destinations)",
        description="Dead letters of a gateway: its local dead-letter store (ids are numbers) "
        "and the dead_letter destinations its routes declare (ids are CONNECTOR:EVENT-ID). "
        "Broker dead letters are read with manual acks; only what is redriven or purged is "
        "acked, the rest is requeued when the command ends.",
    )
    actions = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("config", help="path to the gateway's YAML config file")
        parser.add_argument(
            "--local", action="store_true", help="only the local store (contact no broker)"
        )
        parser.add_argument(
            "--wait",
            type=float,
            default=2.0,
            metavar="SECONDS",
            help="stop reading a broker destination after it was idle this long (default 2)",
        )

    def selection(parser: argparse.ArgumentParser) -> None:
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("ids", nargs="*", default=[], metavar="ID", help="dead-letter ids")
        which.add_argument("--all", action="store_true", help="every dead letter")
        parser.add_argument("--route", help="only the dead letters of this route")

    listing = actions.add_parser("list", help="one line per dead letter")
    common(listing)
    listing.add_argument("--route", help="only the dead letters of this route")
    show = actions.add_parser("show", help="one dead letter: headers, error, original bytes")
    common(show)
    show.add_argument("id", metavar="ID")
    show.add_argument("--hex", action="store_true", help="show the payload as a hex dump")
    redrive = actions.add_parser(
        "redrive",
        help="republish the original messages, then remove them (once the broker confirmed)",
    )
    common(redrive)
    selection(redrive)
    redrive.add_argument(
        "--to",
        metavar="CONNECTOR:ADDRESS",
        help="publish to this connector and address instead of where each message came from "
        "(AMQP: EXCHANGE/ROUTING_KEY, or a queue name for the default exchange)",
    )
    purge = actions.add_parser("purge", help="delete dead letters (broker ones are acked)")
    common(purge)
    selection(purge)


def run(args: argparse.Namespace, config: GatewayConfig) -> int:
    try:
        return asyncio.run(_run(args, config))
    except (WorkbenchError, StoreError, ConnectorError) as exc:
        print(f"dlq: {exc}", file=sys.stderr)
        return 1


async def _run(args: argparse.Namespace, config: GatewayConfig) -> int:
    action = args.dlq_command
    ids: list[str] = [args.id] if action == "show" else list(getattr(args, "ids", []))
    # Broker ids are CONNECTOR:EVENT-ID: read only the destinations on those connectors;
    # local ids (numbers) need no broker at all.
    wanted = {i.partition(":")[0] for i in ids if not i.isdigit()} if ids else None
    bench = Workbench(
        config,
        brokers=not args.local and wanted != set(),
        idle_seconds=args.wait,
        route=getattr(args, "route", None),
        connectors=None if wanted is None else sorted(wanted),
    )
    async with bench:
        if action == "list":
            letters = await bench.letters(args.route)
            _print_list(letters)
            for note in bench.notes:
                print(f"note: {note}", file=sys.stderr)
            return 0
        if action == "show":
            (letter,) = await bench.find([args.id])
            _print_letter(letter, hex_dump=args.hex)
            return 0
        chosen = await _select(bench, args)
        if action == "purge":
            count = await bench.purge(chosen)
            print(f"purged {count} dead letter{'s' * (count != 1)}")
            return 0
        failed = 0
        for letter, error in await bench.redrive(chosen, args.to):
            where = args.to or f"{letter.source_connector}:{letter.original.address}"
            if error is None:
                print(f"{letter.id}: redriven to {where}")
            else:
                failed += 1
                print(f"{letter.id}: NOT redriven to {where} (kept): {error}", file=sys.stderr)
        return 1 if failed else 0


async def _select(bench: Workbench, args: argparse.Namespace) -> list[Letter]:
    if args.all:
        return await bench.letters(args.route)
    letters = await bench.find(args.ids)
    return [each for each in letters if args.route is None or each.route == args.route]


def _print_list(letters: Sequence[Letter]) -> None:
    rows = [("ID", "WHERE", "ROUTE", "REASON", "SIZE", "TIME", "FROM")]
    rows += [
        (
            each.id,
            each.place,
            each.route,
            each.reason,
            str(each.size),
            each.time or "-",
            f"{each.source_connector}:{each.original.address}",
        )
        for each in letters
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True))
        print("  ".join(cells) + "  " + row[-1])
    print(f"{len(letters)} dead letter{'s' * (len(letters) != 1)}")


def _print_letter(letter: Letter, *, hex_dump: bool) -> None:
    original = letter.original
    print(f"id:           {letter.id}")
    print(f"where:        {letter.place}")
    print(f"route:        {letter.route}")
    print(f"time:         {letter.time or '-'}")
    print(f"from:         {letter.source_connector}:{original.address}")
    print(f"reason:       {letter.reason}")
    print(f"error:        {letter.error}")
    for name, value in letter.extra.items():
        if value is not None:
            print(f"{name + ':':<13} {value}")
    print(f"content type: {original.content_type or '-'}")
    print(f"coordinates:  {orjson.dumps(dict(original.coordinates)).decode()}")
    print(f"headers:      {orjson.dumps(dict(original.headers)).decode()}")
    print(f"payload:      {len(original.payload)} bytes")
    text = _text(original.payload)
    if text is None or hex_dump:
        for offset in range(0, len(original.payload), 16):
            chunk = original.payload[offset : offset + 16]
            shown = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
            print(f"  {offset:08x}  {chunk.hex(' '):<47}  {shown}")
    else:
        print(text)


def _text(payload: bytes) -> str | None:
    """The payload as text when it is printable UTF-8, else None (shown as hex)."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if all(ch in _PRINTABLE or ord(ch) > 127 for ch in text):
        return text
    return None
