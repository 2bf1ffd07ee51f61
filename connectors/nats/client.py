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

A header block the connector wrote itself (``binding_block``: the binding's ``ce-``
headers and ``Nats-Msg-Id``, names and values that need no check) goes out through
``MeshClient.publish_block`` (or ``publish`` here, which picks), skipping the
header dict and the per-header checks altogether.

Receiving: messages of the connector's own subscriptions go from the read loop
straight into the source's buffer (``MeshClient.deliver_directly``), not through
nats-py's per-subscription queue and callback task. Their header blocks are kept as
received (``RawHeaders``) and parsed only when something reads a header: the binding
reads the usual CloudEvent straight from the block
(``routing.bindings.nats.from_header_block``), and a message waiting in a buffer holds
one bytes object instead of a dict of two strings per header.

``MeshClient._process_pong`` ignores the late PONG of a flush that timed out (nats-py
2.16 raised in its read loop, dropping the connection).

These override private methods of nats-py 2.16. The publish and receive overrides
copy nats-py's steps (checks, stats, pending buffer, flusher; message building), so
they are used only with the nats-py version they were written against
(``FAST_PUBLISH``); with another, nats-py's own code runs.
``tests/unit/test_nats_headers_parse.py`` and ``tests/unit/test_nats_fast_path.py``
compare them with nats-py's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final, cast

from nats import errors
from nats.aio import client as nats_client
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.protocol import command

from connectors.base import find_header
from connectors.headertext import LazyHeaders
from routing.bindings.nats import BLOCK_LINES_AT

__all__ = [
    "FAST_PUBLISH",
    "Headers",
    "MeshClient",
    "Parts",
    "RawHeaders",
    "binding_block",
    "header_block",
    "parse_header_lines",
    "publish",
    "publish_many",
]


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


_STATUS_AT: Final = len(b"NATS/1.0")
"""Where a header block's inline status begins (a space there), as nats-py reads it."""

Parts = tuple[str, bytes, "Mapping[str, str] | None"]
"""A received message as a core subscription reads it: subject, data, headers."""


class RawHeaders(LazyHeaders):
    """The headers of a received message, read from its block on first use.

    The same mapping as nats-py 2.16's ``_process_headers`` makes of a block without an
    inline status (``parse_header_lines`` of the lines after ``NATS/1.0``), except that
    an empty one is an empty mapping here where nats-py gives None. ``block`` is the
    whole block as received, for readers that need no dict
    (``routing.bindings.nats.from_header_block``).
    """

    __slots__ = ("block",)

    def __init__(self, block: bytes) -> None:
        self._parsed = None  # LazyHeaders.__init__, inline: one per received message
        self.block = block

    @classmethod
    def of(cls, block: bytes) -> RawHeaders | None:
        """The block's headers, read later; None for a block nats-py reads otherwise (an
        inline status, as in JetStream's 404/408/409 and heartbeats) or that has no
        header lines at all."""
        if len(block) > BLOCK_LINES_AT and block[_STATUS_AT] != 0x20:
            return cls(block)
        return None

    def _parse(self) -> dict[str, str]:
        return parse_header_lines(self.block[BLOCK_LINES_AT:])

    def content_type(self) -> str | None:
        """``find_header(self, "content-type")``, without parsing a block that cannot
        hold one (the usual binary-mode CloudEvent has none)."""
        if b"content-type" not in self.block.lower():  # a regex (re.I) costs more
            return None
        return find_header(self._headers(), "content-type")


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


def binding_block(lines: str) -> bytes:
    """The header block of header ``lines`` (``"Name: value\r\n"`` each) that need no
    check: names are header tokens, values printable ASCII without blanks (the NATS
    binding's percent-encoded ``ce-`` values, a hex ``Nats-Msg-Id``). For those, the
    same bytes as ``header_block`` of the same headers (a unit test compares them)."""
    return f"NATS/1.0\r\n{lines}\r\n".encode()


Headers = dict[str, str] | bytes | None
"""A publish's headers: a dict (checked and written on publish), or a header block
written already (``binding_block``; only with ``FAST_PUBLISH``), or none."""


async def publish_many(
    nc: Client, messages: Sequence[tuple[str, bytes, Headers]]
) -> list[Exception | None]:
    """``publish`` of each (subject, payload, headers), no reply; one outcome each (None:
    written, else the error ``publish`` raised). Written header blocks go out together
    (``MeshClient.publish_blocks``)."""
    if isinstance(nc, MeshClient) and all(isinstance(m[2], bytes) for m in messages):
        return await nc.publish_blocks(cast("list[tuple[str, bytes, bytes]]", messages))
    outcomes: list[Exception | None] = []
    for subject, payload, headers in messages:
        try:
            await publish(nc, subject, payload, headers)
        except (errors.Error, OSError) as exc:
            outcomes.append(exc)
        else:
            outcomes.append(None)
    return outcomes


async def publish(
    nc: Client, subject: str, payload: bytes, headers: Headers, reply: str = ""
) -> None:
    """``nc.publish``; a written header block goes through ``MeshClient.publish_block``."""
    if isinstance(headers, bytes):
        if not isinstance(nc, MeshClient):  # a block comes only from the link's clients
            raise TypeError(f"a written header block needs a MeshClient, not {type(nc)}")
        await nc.publish_block(subject, payload, headers, reply)
    else:
        await nc.publish(subject, payload, reply=reply, headers=headers)


class MeshClient(Client):
    """nats-py's client with faster header parsing and writing (see the module doc)."""

    _parse_header_lines = staticmethod(parse_header_lines)

    def __init__(self) -> None:
        super().__init__()
        # sid -> (callback, whether it takes a Msg, else (subject, data, headers)).
        self._direct: dict[int, tuple[Callable[..., None], bool]] = {}

    def deliver_directly(self, sub: Subscription, deliver: Callable[[Msg], None]) -> None:
        """Hand each message of ``sub`` to ``deliver`` as soon as it is read.

        nats-py passes a message to a subscription's callback through a queue and a
        task of its own: a queue put, a get, a task step and a coroutine per message,
        for a callback that only buffers it. With the nats-py version this was checked
        against (``FAST_PUBLISH``), ``deliver`` is called from the read loop instead;
        otherwise the subscription's callback keeps them. Headers are ``RawHeaders``
        unless the block has an inline status.
        """
        if FAST_PUBLISH:
            self._direct[sub._id] = (deliver, True)

    def deliver_parts(self, sub: Subscription, deliver: Callable[[Parts], None]) -> None:
        """``deliver_directly`` for a reader that needs no ``Msg`` (no reply, no ack: a
        core subscription): ``deliver`` gets (subject, data, headers) only."""
        if FAST_PUBLISH:
            self._direct[sub._id] = (deliver, False)

    def _remove_sub(self, sid: int, max_msgs: int = 0) -> None:
        self._direct.pop(sid, None)
        super()._remove_sub(sid, max_msgs)

    if FAST_PUBLISH:

        async def _process_msg(
            self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes
        ) -> None:
            direct = self._direct.get(sid)
            if direct is None or sid not in self._subs:
                await super()._process_msg(sid, subject, reply, data, headers)
                return
            # nats-py 2.16's _process_msg for a plain subscription (no JetStream
            # context, no max_msgs, no request future), up to the callback's queue.
            self.stats["in_msgs"] += 1
            self.stats["in_bytes"] += len(data)
            hdr: Mapping[str, str] | None = None
            if headers:  # not `RawHeaders.of(...) or`: its truth would parse it
                hdr = RawHeaders.of(headers)
                if hdr is None:
                    hdr = await self._process_headers(headers)
            deliver, whole = direct
            if whole:  # Msg.headers is typed a dict; RawHeaders reads as one (Mapping)
                deliver(self._build_message(sid, subject, reply, data, cast(Any, hdr)))
            else:
                deliver((subject.decode(), data, hdr))

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

        async def publish_block(
            self, subject: str, payload: bytes, block: bytes, reply: str = ""
        ) -> None:
            """``publish`` with the header block written already (``binding_block``)."""
            self._check_publish(subject, reply, len(payload), 0)
            self.stats["out_msgs"] += 1
            self.stats["out_bytes"] += len(payload)
            await self._send_command(command.hpub_cmd(subject, reply, block, payload))
            if self._flush_queue is not None and self._flush_queue.empty():
                await self._flush_pending()

        async def publish_blocks(
            self, messages: Sequence[tuple[str, bytes, bytes]]
        ) -> list[Exception | None]:
            """``publish_block`` of each (subject, payload, block), no reply: the same
            checks and outcomes (None: written), all written as one pending command."""
            outcomes: list[Exception | None] = []
            parts: list[bytes] = []
            queued = written = payloads = 0
            valid: set[str] = set()  # subjects checked already (a batch has few)
            for subject, payload, block in messages:
                size = len(payload)
                try:
                    self._check_publish(subject, "", size, queued, subject in valid)
                except errors.Error as exc:
                    outcomes.append(exc)
                    continue
                valid.add(subject)
                head = f"HPUB {subject}  {len(block)} {len(block) + size}\r\n".encode()
                parts += (head, block, payload, _CRLF)  # hpub_cmd's bytes
                queued += len(head) + len(block) + size + 2
                written += 1
                payloads += size
                outcomes.append(None)
            if not written:
                return outcomes
            self.stats["out_msgs"] += written
            self.stats["out_bytes"] += payloads
            try:
                await self._send_command(b"".join(parts))
                if self._flush_queue is not None and self._flush_queue.empty():
                    await self._flush_pending()
            except (errors.Error, OSError) as exc:  # what each publish would have raised
                return [exc if outcome is None else outcome for outcome in outcomes]
            return outcomes

        def _check_publish(
            self, subject: str, reply: str, size: int, queued: int, valid: bool = False
        ) -> None:
            """nats-py 2.16's ``publish`` checks, in its order (and ``_send_publish``'s),
            for a payload of ``size`` bytes behind ``queued`` bytes not yet pending;
            ``valid``: ``subject`` passed them already (in this batch)."""
            if not self._skip_subject_validation and not valid:
                nats_client._validate_subject(subject)
                if reply:
                    nats_client._validate_subject(reply)
            if self.is_closed:
                raise errors.ConnectionClosedError
            if self.is_draining_pubs:
                raise errors.ConnectionDrainingError
            if not self.is_connected and (
                self._max_pending_size <= 0
                or size + self._pending_data_size + queued > self._max_pending_size
            ):
                raise errors.OutboundBufferLimitError
            if size > self._max_payload:
                raise errors.MaxPayloadError
            if subject == "":
                raise errors.BadSubjectError

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
