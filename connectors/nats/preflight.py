"""``meshgate validate --connect`` for NATS: do the JetStream streams the routes need exist?

A JetStream source needs its stream (unless ``create_stream``); a JetStream target
needs a stream capturing its subject (a templated subject is checked with ``*`` in
place of each placeholder: some stream must overlap it). Nothing is created.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import nats

from connectors.nats.config import NatsSource, NatsTarget
from connectors.nats.link import Link

__all__ = ["preflight"]

_PLACEHOLDER_TOKEN = re.compile(r"[^.]*\{[^{}]*\}[^.]*")


async def preflight(
    link: Link, sources: Sequence[NatsSource], targets: Sequence[NatsTarget]
) -> list[str]:
    nc = link.current()
    js = link.jetstream(nc)
    problems: list[str] = []
    for source in sources:
        block = source.jetstream
        if block is None or block.create_stream:
            continue
        try:
            if block.stream is not None:
                await js.stream_info(block.stream)
            else:
                await js.find_stream_name_by_subject(source.subject)
        except nats.js.errors.NotFoundError:
            what = f"stream {block.stream!r}" if block.stream else "no stream captures subject"
            problems.append(
                f"source subject {source.subject!r}: {what} "
                + ("does not exist" if block.stream else "(create one, or create_stream: true)")
            )
    seen: set[str] = set()
    for target in targets:
        if not target.jetstream:
            continue
        subject = _PLACEHOLDER_TOKEN.sub("*", target.subject)
        if subject in seen:
            continue
        seen.add(subject)
        try:
            await js.find_stream_name_by_subject(subject)
        except nats.js.errors.NotFoundError:
            problems.append(
                f"target subject {target.subject!r}: no JetStream stream captures it (create "
                "one: docs/connectors/nats.md#a-stream-for-a-jetstream-target, or set "
                "jetstream: false)"
            )
    return problems
