"""The minimal plugin of docs/plugins.md, run as written through the conformance suite.

The example's code block is loaded as a module, so the documentation cannot drift
from what the suite (``connectors.testing``) accepts.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from connectors.testing import ConnectorConformance
from connectors.testing.harness import ConnectorFactory, PairFactory, RawPublish, Timeouts
from routing.bindings import Mode
from routing.bindings.nats import NatsMessage

DOC = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def load_example(tmp: Path) -> ModuleType:
    """The first Python block under '## A minimal example', imported as a module."""
    section = DOC.read_text().split("## A minimal example", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "docs/plugins.md: no python block under '## A minimal example'"
    path = tmp / "meshgate_inproc_example.py"
    path.write_text(match.group(1))
    spec = importlib.util.spec_from_file_location("meshgate_inproc_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    return load_example(tmp_path_factory.mktemp("plugin-example"))


class TestDocumentedPluginConformance(ConnectorConformance):
    @pytest.fixture
    def conformance_timeouts(self) -> Timeouts:
        # In-process: a wrong (re)delivery is a queue put, seen within a few event-loop
        # turns (no I/O, no timers), so the "nothing arrives" windows need not be the
        # suite's 1.5 s, sized for brokers.
        return Timeouts(quiet=0.25)

    @pytest.fixture
    def conformance_connector(self, example: ModuleType) -> ConnectorFactory:
        return lambda: example.InprocConnector("inproc", example.InprocOptions())

    @pytest.fixture
    def conformance_pair(self, example: ModuleType) -> PairFactory:
        async def pair(mode: Mode) -> tuple[Any, Any]:
            queue = f"conformance-{uuid.uuid4().hex}"
            return (
                example.InprocSource(connector="inproc", queue=queue),
                example.InprocTarget(connector="inproc", queue=queue, mode=mode),
            )

        return pair

    @pytest.fixture
    def conformance_publish_raw(self, example: ModuleType) -> RawPublish:
        async def publish_raw(target: Any, payload: bytes) -> None:
            example._QUEUES[target.queue].put_nowait(NatsMessage(payload, None))

        return publish_raw
