"""A third-party plugin installs with pip into a clean environment and passes its tests.

The example plugin ``examples/meshgate-cloudevents-http`` declares
``dependencies = ["meshgate>=0.1"]``. The session's ``wheelhouse`` holds a wheel of
meshgate built from the tracked files, the plugin's wheel (built by pip from its
source) and the wheels they require (tests/wheelhouse.py). This test creates a new
venv (nothing of the dev environment in it), installs the plugin (with its ``test``
extra) with pip from that wheelhouse only, so pip resolves ``meshgate>=0.1`` to that
wheel, and runs the plugin's own tests there: its HTTP and TLS tests on loopback, an
end-to-end through a gateway with NATS JetStream, and meshgate's shipped conformance
suite (``connectors.testing``, loaded through its pytest11 entry point). So the plugin
API, the entry points and the suite are proven to work from an installed meshgate, not
from the checkout.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.wheelhouse import PLUGIN, Wheelhouse, new_venv, run

pytestmark = pytest.mark.integration

MIN_PLUGIN_TESTS = 110
"""The plugin has ~119 tests, 42 of them the conformance suite's; fewer means some
were not collected (e.g. the suite's pytest plugin did not load)."""


@pytest.mark.timeout(900)
def test_plugin_installs_into_a_clean_venv_and_passes_its_tests(
    tmp_path: Path, nats_url: str, wheelhouse: Wheelhouse
) -> None:
    venv = new_venv(tmp_path / "venv")
    python = str(venv / "bin" / "python")
    plugin = wheelhouse.source / PLUGIN
    wheelhouse.install(venv, "meshgate-cloudevents-http[test]")

    # meshgate comes from the wheel, the plugin from its own install: not the checkout.
    where = run(
        [
            python,
            "-c",
            "import connectors, meshgate_cloudevents_http as p; "
            "print(connectors.__file__); print(p.__file__)",
        ],
        tmp_path,
        60,
    )
    assert all(str(venv) in line for line in where.split()), where
    listed = run([str(venv / "bin" / "meshgate"), "connectors"], tmp_path, 60)
    assert re.search(r"^http\s+0\.1\.0\s+plugin meshgate-cloudevents-http", listed, re.M), listed

    config = tmp_path / "gateway.yaml"
    config.write_text(
        "gateway: {id: plugin-check}\n"
        "connectors:\n"
        "  web: {type: http, port: 8080}\n"
        "routes:\n"
        "  - name: hooks\n"
        "    from: {connector: web, path: /events}\n"
        "    to: [{connector: web, url: 'https://receiver.example.com/{type}'}]\n",
        encoding="utf-8",
    )
    checked = run([str(venv / "bin" / "meshgate"), "validate", str(config)], tmp_path, 60)
    assert "OK (1 connectors, 1 routes)" in checked, checked

    env = {**os.environ, "MESHGATE_TEST_NATS_URL": nats_url}
    env.pop("PYTHONPATH", None)
    output = run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], plugin, 600, env
    )
    summary = output.strip().splitlines()[-1]
    passed = int(re.search(r"(\d+) passed", summary).group(1))  # type: ignore[union-attr]
    assert passed >= MIN_PLUGIN_TESTS and "failed" not in summary, output[-3000:]
    print(f"plugin tests in a clean venv: {summary}")
