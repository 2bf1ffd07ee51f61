"""``Connector`` and ``Delivery`` are generic over the native message type: mypy
catches a connector whose ``encode`` or ``decode`` disagrees with its declared type
(issue 13, finding 6). Runs mypy (strict) on two small plugins."""

from __future__ import annotations

import textwrap
from pathlib import Path

from mypy import api

PLUGIN = """\
from collections.abc import AsyncIterator
from dataclasses import dataclass

from connectors.base import (
    Capabilities, Connector, ConnectorOptions, Delivery, SourceOptions, TargetOptions,
)
from routing.event import CloudEvent


@dataclass
class Frame:
    body: bytes


class FrameOptions(ConnectorOptions): ...
class FrameSource(SourceOptions): ...
class FrameTarget(TargetOptions): ...


class FrameConnector(Connector[FrameOptions, FrameSource, FrameTarget, Frame]):
    Options = FrameOptions
    Source = FrameSource
    Target = FrameTarget
    capabilities = Capabilities(
        acknowledgements=True, confirmed_publish=True, ordering="none", headers=False,
        max_message_bytes=None,
    )

    async def start(self) -> None: ...
    async def close(self) -> None: ...

    async def consume(self, source: FrameSource) -> AsyncIterator[Delivery[Frame]]:
        for _ in ():
            yield _

    def decode(self, delivery: Delivery[Frame]) -> CloudEvent | None:
        body: bytes = delivery.message.body
        return None if body else None

    def encode(self, target: FrameTarget, event: CloudEvent) -> Frame:
        return {ENCODED}

    async def publish(self, target: FrameTarget, event: CloudEvent) -> None: ...
"""


def _mypy(tmp_path: Path, encoded: str) -> tuple[str, int]:
    module = tmp_path / "frame_plugin.py"
    module.write_text(textwrap.dedent(PLUGIN).replace("{ENCODED}", encoded))
    stdout, _stderr, status = api.run(
        ["--strict", "--no-error-summary", "--follow-imports=silent", str(module)]
    )
    return stdout, status


def test_the_declared_native_type_is_checked(tmp_path: Path) -> None:
    stdout, status = _mypy(tmp_path, "Frame(event.data or b'')")
    assert status == 0, stdout
    stdout, status = _mypy(tmp_path, "event.data")  # bytes, not the declared Frame
    assert status == 1
    assert 'Incompatible return value type (got "bytes | None", expected "Frame")' in stdout
