"""Wheels and clean venvs for the tests that install meshgate the way a user does.

``tests/integration/test_plugin_package.py`` (the example plugin on an installed
meshgate) and ``tests/deploy/test_image.py`` (the image's build stage) each install a
wheel into a new venv. Resolving and downloading meshgate's ~50 dependencies from the
package index took most of their time (about a minute each on a 2-core machine, most
of it pip's CPU reading index pages), so the session does it once: ``make_wheelhouse``
builds meshgate's wheel from the tracked files and has ``pip wheel`` put it, the example
plugin (built from its source) and every wheel they need into one directory. Each test
then creates its venv and installs into it with pip from that directory alone
(``--no-index``): pip still resolves every declared requirement, so a dependency
missing from a ``pyproject.toml`` still fails the install or the imports in the venv.

``make test`` runs the suite in several pytest processes (scripts/run-tests.sh: xdist
workers, then a second run) and names one directory for all of them in
``MESHGATE_TEST_WHEELHOUSE``: the wheelhouse is then made once for the whole suite
(``shared_wheelhouse``), not once per process.

The venvs are made ``--without-pip`` (ensurepip alone took ~10 s under load) and
installed into by the dev environment's pip (``pip --python``): nothing of the dev
environment is importable in them.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = [
    "PLUGIN",
    "ROOT",
    "Wheelhouse",
    "build_wheel",
    "make_wheelhouse",
    "new_venv",
    "run",
    "shared_wheelhouse",
]

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = Path("examples") / "meshgate-cloudevents-http"


def run(args: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None) -> str:
    """Run ``args``; fail with its output unless it exits 0; return the output."""
    done = subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(args)} failed ({done.returncode}):\n{output[-6000:]}"
    return output


def tracked_copy(target: Path) -> Path:
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


def build_wheel(source: Path, outdir: Path) -> Path:
    """``python -m build --wheel`` of the project in ``source``; the one wheel made."""
    run([sys.executable, "-m", "build", "--wheel", "--outdir", str(outdir), str(source)], ROOT, 300)
    (wheel,) = outdir.glob("meshgate-*.whl")
    return wheel


@dataclass(frozen=True)
class Wheelhouse:
    """A directory of wheels: meshgate's, the example plugin's and all they require."""

    path: Path
    meshgate: Path
    """meshgate's wheel, built from the tracked files (also in ``path``)."""
    source: Path
    """The copy of the tracked files it was built from (the plugin's tests run there)."""

    def install(self, venv: Path, *requirements: str, find_links: tuple[Path, ...] = ()) -> str:
        """``pip install`` into ``venv`` from this directory (and ``find_links``) only."""
        links = [arg for extra in find_links for arg in ("--find-links", str(extra))]
        return run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                str(venv / "bin" / "python"),
                "install",
                "-q",
                "--no-index",
                "--find-links",
                str(self.path),
                *links,
                *requirements,
            ],
            venv.parent,
            600,
        )


def make_wheelhouse(base: Path) -> Wheelhouse:
    """Build meshgate's wheel and fetch every wheel it and the plugin's ``[test]`` need."""
    source = tracked_copy(base / "source")
    meshgate = build_wheel(source, base / "dist")
    path = base / "wheels"
    plugin = source / PLUGIN
    wanted = [str(meshgate), f"{plugin}[test]"]
    run([sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(path), *wanted], base, 600)
    return Wheelhouse(path, meshgate, source)


def shared_wheelhouse(base: Path) -> Wheelhouse:
    """``make_wheelhouse(base)`` made once for every pytest process given the same
    ``base`` (``make test`` runs two, see scripts/run-tests.sh, and removes ``base``
    after them): the first builds it under a lock, the others wait and reuse it."""
    base.mkdir(parents=True, exist_ok=True)
    done = base / "complete"
    with (base / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            for partial in ("source", "dist", "wheels"):  # left by a run that failed
                shutil.rmtree(base / partial, ignore_errors=True)
            made = make_wheelhouse(base)
            done.write_text(str(made.meshgate))
        return Wheelhouse(base / "wheels", Path(done.read_text()), base / "source")


def new_venv(path: Path) -> Path:
    """A new, empty venv (no pip: ``Wheelhouse.install`` installs with the dev pip)."""
    run([sys.executable, "-m", "venv", "--without-pip", str(path)], ROOT, 120)
    return path
