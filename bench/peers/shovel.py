"""The RabbitMQ shovel as a peer bridge (``python -m bench.peers.shovel spec.yaml``).

A dynamic shovel moves the source queue to the target queue inside the broker, with
``ack-mode: on-confirm`` (a message is acked to the source only once the destination
confirmed it: the same at-least-once contract as meshgate), the shovel's defaults
otherwise (prefetch 1,000). This process only sets it up and takes it down:

1. ``rabbitmq-plugins enable rabbitmq_shovel`` if the plugin is not enabled (root:
   the Erlang cookie; ``available`` skips the peer where that cannot work);
2. ``rabbitmqctl set_parameter shovel meshgate-bench-RUN '{...}'``, then waits until
   ``rabbitmqctl shovel_status`` says it runs;
3. on SIGTERM, ``rabbitmqctl clear_parameter`` removes it (the plugin stays enabled).

The shovel connects to the broker the way meshgate and the other peers do, as an AMQP
client over loopback TCP with the bench's URL (``MESHGATE_BENCH_SHOVEL_URI=direct``:
the Erlang direct connection instead, no TCP and no framing, a bridge that only works
inside one broker). Its work is done inside the broker's process (beam.smp), so the
bench measures its CPU as the broker's (``bench.brokercpu``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

__all__ = ["shovel_name", "stop", "why_not"]

PLUGIN = "rabbitmq_shovel"
_CTL_TIMEOUT = 60.0
_enabled_cache: dict[str, str | None] = {}


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=_CTL_TIMEOUT, stdin=subprocess.DEVNULL
    )


def why_not(source: str, targets: tuple[str, ...]) -> str | None:
    """None when the shovel can bridge this pair here, else why not."""
    if source != "amqp" or targets != ("amqp",):
        return "the shovel only moves AMQP to one AMQP destination (amqp-amqp)"
    if shutil.which("rabbitmqctl") is None or shutil.which("rabbitmq-plugins") is None:
        return "shovel: rabbitmqctl / rabbitmq-plugins not found (RabbitMQ not installed here)"
    if "state" not in _enabled_cache:
        _enabled_cache["state"] = _plugin_problem()
    return _enabled_cache["state"]


def _plugin_problem() -> str | None:
    try:
        listed = _run("rabbitmq-plugins", "-q", "list", "-m", "-e")
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"shovel: rabbitmq-plugins failed: {exc}"
    if listed.returncode != 0:
        first = (listed.stderr or listed.stdout).strip().splitlines()[:1]
        return f"shovel: cannot reach the RabbitMQ node with rabbitmq-plugins: {first}"
    if PLUGIN in listed.stdout.split():
        return None
    if os.geteuid() != 0:
        return f"shovel: the {PLUGIN} plugin is not enabled and enabling it needs root"
    return None


def _uri(url: str) -> str:
    """The shovel's URI for the bench's URL: the same host, port and credentials; an
    empty path is the default vhost for the shovel only without the trailing slash."""
    if os.environ.get("MESHGATE_BENCH_SHOVEL_URI") == "direct":
        return "amqp://"
    parts = urlsplit(url)
    path = "" if parts.path in ("", "/") else parts.path
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def _ctl(*args: str) -> str:
    result = _run("rabbitmqctl", *args)
    if result.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {args[0]} failed: {result.stderr or result.stdout}")
    return result.stdout


def _enable_plugin() -> None:
    listed = _run("rabbitmq-plugins", "-q", "list", "-m", "-e")
    if PLUGIN in listed.stdout.split():
        return
    result = _run("rabbitmq-plugins", "enable", PLUGIN)
    if result.returncode != 0:
        raise RuntimeError(f"cannot enable {PLUGIN}: {result.stderr or result.stdout}")
    print(f"enabled the {PLUGIN} plugin (it stays enabled)", flush=True)


def _running(name: str) -> bool:
    text = _ctl("shovel_status", "--formatter", "json")
    try:
        shovels: list[dict[str, Any]] = json.loads(text or "[]")
    except json.JSONDecodeError:
        return False
    return any(s.get("name") == name and s.get("state") == "running" for s in shovels)


def start(spec: dict[str, Any], name: str) -> None:
    """Enable the plugin if needed, define the shovel, wait until it runs."""
    source, (target,) = spec["source"], spec["targets"]
    _enable_plugin()
    definition = {
        "src-protocol": "amqp091",
        "src-uri": _uri(source["url"]),
        "src-queue": source["queue"],
        "dest-protocol": "amqp091",
        "dest-uri": _uri(target["url"]),
        "dest-queue": target["queue"],
        "ack-mode": "on-confirm",
    }
    _ctl("set_parameter", "shovel", name, json.dumps(definition))
    deadline = time.monotonic() + _CTL_TIMEOUT
    while not _running(name):
        if time.monotonic() > deadline:
            raise RuntimeError(f"shovel {name} not running after {_CTL_TIMEOUT:.0f} s")
        time.sleep(0.2)
    print(f"shovel {name} running: {definition}", flush=True)


def stop(name: str) -> None:
    result = _run("rabbitmqctl", "clear_parameter", "shovel", name)
    if result.returncode != 0:
        print(f"clearing shovel {name} failed: {result.stderr}", file=sys.stderr, flush=True)


def _terminate(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def shovel_name(spec: dict[str, Any]) -> str:
    """The shovel's name for a peer spec (``rabbitmqctl clear_parameter shovel NAME``)."""
    return f"meshgate-bench-{spec['source']['queue']}"


def main(argv: list[str]) -> int:
    spec = yaml.safe_load(Path(argv[1]).read_text())
    name = shovel_name(spec)
    # Installed first: a SIGTERM during the set-up still takes the shovel down.
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    try:
        start(spec, name)
        while True:
            signal.pause()
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the clean-up finish
        stop(name)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
