"""Release artefacts: the sdist and the wheel build from the tracked files and pass
``twine check --strict``; the wheel holds every module and entry point; the version is
set once (pyproject.toml) and the changelog and the Kubernetes image tag name it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.deploy.dockerfile import ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
VERSION = PROJECT["version"]


def _tracked_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if listed.returncode != 0:
        pytest.skip("not a git checkout: cannot tell which files an sdist starts from")
    return [name for name in listed.stdout.split("\0") if name and (ROOT / name).is_file()]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sdist, then the wheel built from it (python -m build), from a copy of the checkout."""
    base = tmp_path_factory.mktemp("release")
    source = base / "source"
    for name in _tracked_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    out = base / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return out


def test_twine_check(dist: Path) -> None:
    files = sorted(str(p) for p in dist.iterdir())
    assert {Path(f).suffix for f in files} == {".gz", ".whl"}
    twine = Path(sys.executable).parent / "twine"
    if not twine.exists():
        pytest.fail("twine is missing: the dev extras install it; run make bootstrap")
    check = subprocess.run([str(twine), "check", "--strict", *files], capture_output=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_wheel_contents(dist: Path) -> None:
    (wheel,) = dist.glob(f"meshgate-{VERSION}-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = f"meshgate-{VERSION}.dist-info"
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    for package in ("routing", "connectors", "gateway"):
        for module in (ROOT / package).rglob("*.py"):
            relative = module.relative_to(ROOT).as_posix()
            if relative in {n for n in _tracked_files() if n.startswith(package)}:
                assert relative in names, f"{relative} is missing from the wheel"
    assert "meshgate = gateway.cli:main" in entry_points
    for kind in ("kafka", "amqp", "mqtt", "nats"):
        assert f"{kind} = connectors.{kind}:" in entry_points


def test_version_is_named_consistently() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## {VERSION}" in changelog, f"CHANGELOG.md has no section for {VERSION}"
    kustomization = yaml.safe_load((ROOT / "deploy/kubernetes/kustomization.yaml").read_text())
    (image,) = kustomization["images"]
    assert image["newTag"] == VERSION
