"""The nats-py client the connector connects with: nats-py's, with faster header code.

nats-py (2.16) parses the header block of every message it receives in Python, and
checks each header name for whitespace with a generator over its characters: about
60 generator steps for a CloudEvent in binary mode (eight ``ce-`` headers), a tenth of
a JetStream->JetStream gateway's CPU under cProfile. ``MeshClient._parse_header_lines``
gives the same result: the same lines skipped (empty, no ``:``, a name that is not
ASCII or holds whitespace), the same stripping and decoding, with the verdict on
each header name kept (bounded), since the same few names arrive on every message.

Publishing is the mirror image: nats-py checks, strips and encodes every header name
of every publish (eight ``ce-`` headers and ``Nats-Msg-Id`` per JetStream publish, a
fifth of the CPU of a three-target fan-out). ``MeshClient._send_publish`` writes the
same bytes with each name's check done once (names repeat; values are still stripped
and their line breaks replaced per publish, as nats-py does).

``MeshClient._process_pong`` ignores the late PONG of a flush that timed out (nats-py
2.16 raised in its read loop, dropping the connection).

These override private methods of nats-py 2.16. The publish override copies nats-py's
last steps (stats, pending buffer, flusher), so it is used only with the nats-py
version it was written against (``FAST_PUBLISH``); with another, nats-py's own code
runs. ``tests/unit/test_nats_headers_parse.py`` compares both with nats-py's.
"""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final

from nats import errors
from nats.aio.client import Client
from nats.protocol import command

__all__ = ["FAST_PUBLISH", "MeshClient", "header_block", "parse_header_lines"]


def _nats_py() -> str:
    try:
        return version("nats-py")
    except PackageNotFoundError:
        return ""


FAST_PUBLISH: Final = _nats_py() == "2.16.0"
"""Whether ``MeshClient`` writes headers itself (the nats-py it was checked against)."""

_CRLF: Final = b"\r\n"
_SPACE: Final = re.compile(r"[\t-\r\x1c-\x20]")
"""The ASCII characters ``str.isspace`` is true for: what nats-py refuses in a name."""
_NAMES_KEPT: Final = 512
_names: dict[bytes, str | None] = {}
"""Raw header name -> the key nats-py makes of it, or None when it skips the line."""


def _key(name: bytes) -> str | None:
    try:
        key = name.strip().decode("ascii")
    except UnicodeDecodeError:
        return None
    return None if _SPACE.search(key) is not None else key


def parse_header_lines(raw: bytes) -> dict[str, str]:
    """``Client._parse_header_lines`` of nats-py 2.16, with the names' verdicts cached."""
    out: dict[str, str] = {}
    names = _names
    for line in raw.split(_CRLF):
        name, sep, value = line.partition(b":")
        if not sep:  # an empty line too
            continue
        try:
            key = names[name]
        except KeyError:
            if len(names) >= _NAMES_KEPT:
                names.clear()
            key = names[name] = _key(name)
        if key is not None:
            out[key] = value.strip().decode("utf-8", "replace")
    return out


_HEADER_KEY: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # nats-py's _HEADER_KEY_RE
_NEWLINES: Final = str.maketrans({"\r": " ", "\n": " "})
_SKIP: Final = ""
_prefixes: dict[str, str] = {}
"""Header name -> ``"Name: "`` as written, or ``_SKIP`` for a blank name (nats-py skips it)."""


def _prefix(name: str) -> str:
    prefix = _prefixes.get(name)
    if prefix is None:
        key = name.strip()
        if key and not _HEADER_KEY.fullmatch(key):
            raise errors.BadHeaderError(key)  # not kept: it is raised every time
        if len(_prefixes) >= _NAMES_KEPT:
            _prefixes.clear()
        prefix = _prefixes[name] = f"{key}: " if key else _SKIP
    return prefix


def header_block(headers: dict[str, Any]) -> bytes:
    """The ``NATS/1.0`` header block nats-py 2.16 writes for ``headers``."""
    parts = ["NATS/1.0\r\n"]
    prefixes = _prefixes
    for name, value in headers.items():
        prefix = prefixes.get(name)
        if prefix is None:
            prefix = _prefix(name)
        if prefix:
            text = value.strip()
            if "\r" in text or "\n" in text:  # rare: translate costs more than two scans
                text = text.translate(_NEWLINES)
            parts += (prefix, text, "\r\n")
    parts.append("\r\n")
    return "".join(parts).encode()


class MeshClient(Client):
    """nats-py's client with faster header parsing and writing (see the module doc)."""

    _parse_header_lines = staticmethod(parse_header_lines)

    if FAST_PUBLISH:

        async def _send_publish(
            self,
            subject: str,
            reply: str,
            payload: bytes,
            payload_size: int,
            headers: dict[str, Any] | None,
        ) -> None:
            if headers is None:  # nothing to gain: nats-py's own PUB
                await super()._send_publish(subject, reply, payload, payload_size, headers)
                return
            if subject == "":
                raise errors.BadSubjectError
            pub = command.hpub_cmd(subject, reply, header_block(headers), payload)
            # From here on as nats-py 2.16's _send_publish.
            self.stats["out_msgs"] += 1
            self.stats["out_bytes"] += payload_size
            await self._send_command(pub)
            if self._flush_queue is not None and self._flush_queue.empty():
                await self._flush_pending()

        async def _process_pong(self) -> None:
            # nats-py 2.16's, except for a flush that timed out: it cancelled its future
            # but left it queued, and its late PONG then raised InvalidStateError in the
            # read loop, which took the whole connection down (seen under load, when
            # a large inbound backlog delayed the PONG past the publish timeout).
            if self._pongs:
                future = self._pongs.pop(0)
                if not future.done():
                    future.set_result(True)
                self._pongs_received += 1
                self._pings_outstanding = 0
