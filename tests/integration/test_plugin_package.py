"""A third-party plugin installs with pip into a clean environment and passes its tests.

The example plugin ``examples/meshgate-cloudevents-http`` declares
``dependencies = ["meshgate>=0.1"]``. This test builds a wheel of meshgate from the
tracked files, creates a new venv (nothing of the dev environment in it), installs the
wheel and the plugin (with its ``test`` extra) with pip, and runs the plugin's own
tests there: its HTTP and TLS tests on loopback, an end-to-end through a gateway with
NATS JetStream, and meshgate's shipped conformance suite (``connectors.testing``,
loaded through its pytest11 entry point). So the plugin API, the entry points and the
suite are proven to work from an installed meshgate, not from the checkout.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = Path("examples") / "meshgate-cloudevents-http"
MIN_PLUGIN_TESTS = 110
"""The plugin has ~119 tests, 42 of them the conformance suite's; fewer means some
were not collected (e.g. the suite's pytest plugin did not load)."""


def _run(args: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(args)} failed ({done.returncode}):\n{output[-6000:]}"
    return output


def _tracked_copy(target: Path) -> Path:
    """The tracked files of the checkout, copied (builds write next to their sources)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if listed.returncode != 0:
        pytest.fail("not a git checkout: cannot tell which files meshgate's wheel is built from")
    for name in filter(None, listed.stdout.split("\0")):
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    return target


@pytest.mark.timeout(900)
def test_plugin_installs_into_a_clean_venv_and_passes_its_tests(
    tmp_path: Path, nats_url: str
) -> None:
    source = _tracked_copy(tmp_path / "source")
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(source)], ROOT, 300)
    (wheel,) = dist.glob("meshgate-*.whl")

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], ROOT, 120)
    python = str(venv / "bin" / "python")
    plugin = source / PLUGIN
    _run([python, "-m", "pip", "install", "-q", str(wheel), f"{plugin}[test]"], tmp_path, 600)

    # meshgate comes from the wheel, the plugin from its own install: not the checkout.
    where = _run(
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
    listed = _run([str(venv / "bin" / "meshgate"), "connectors"], tmp_path, 60)
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
    checked = _run([str(venv / "bin" / "meshgate"), "validate", str(config)], tmp_path, 60)
    assert "OK (1 connectors, 1 routes)" in checked, checked

    env = {**os.environ, "MESHGATE_TEST_NATS_URL": nats_url}
    env.pop("PYTHONPATH", None)
    output = _run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], plugin, 600, env
    )
    summary = output.strip().splitlines()[-1]
    passed = int(re.search(r"(\d+) passed", summary).group(1))  # type: ignore[union-attr]
    assert passed >= MIN_PLUGIN_TESTS and "failed" not in summary, output[-3000:]
    print(f"plugin tests in a clean venv: {summary}")
