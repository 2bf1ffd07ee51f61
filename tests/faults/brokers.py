"""Private broker processes (and gateway subprocesses) that the fault tests own.

The loopback brokers on the default ports (RabbitMQ 5672, Mosquitto 1883, NATS 4222)
are shared with every other test and engineer on the machine: the fault tests never
stop, freeze or reconfigure them. A test that needs a broker to die starts its own:

* :class:`PrivateNats`: ``nats-server -js`` on a free port with its own store dir;
* :class:`PrivateMosquitto`: ``mosquitto -c <conf>`` with persistence and
  ``max_queued_messages 0`` (Mosquitto's default of 1000 silently drops QoS 1
  messages queued for a slow or absent subscriber);
* :class:`PrivateRabbit`: a second RabbitMQ node (own node name, ports, mnesia,
  logs, empty plugin list and Erlang cookie under a temp dir). The Erlang VM is
  exec'ed directly (``RUNNING_UNDER_SYSTEMD=1``), so the child *is* ``beam.smp``:
  SIGTERM stops the node cleanly and SIGSTOP freezes it;
* the Kafka mock cluster cannot restart with its data, so it is only frozen:
  :func:`frozen` works on any pid.

The gateway under test runs as a subprocess too: ``tests.faults.gateway``.

Each :class:`BrokerProcess` can ``stop()`` / ``start()`` again on the same port and
data, and ``frozen()`` (SIGSTOP, then SIGCONT in ``finally``). Every process started
here is registered in ``LIVE`` and dies with the test process (PR_SET_PDEATHSIG);
``close_all()`` (called from the faults conftest at session end) resumes and stops
whatever a failing test left behind, so no broker stays stopped or frozen.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from gateway.localbrokers import LOOPBACK, free_port, nats_server_binary, port_open

__all__ = [
    "LIVE",
    "BrokerProcess",
    "PrivateMosquitto",
    "PrivateNats",
    "PrivateRabbit",
    "close_all",
    "frozen",
    "restart_all",
    "rss_kib",
    "stop_all",
]

ROOT = Path(__file__).resolve().parents[2]
RABBIT_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
LIVE: set[Any] = set()  # BrokerProcess and gateway.GatewayProcess objects still running


def preexec() -> Callable[[], None] | None:
    """Have the kernel SIGKILL the child when this (main) thread dies (Linux only)."""
    if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    return lambda: prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@contextlib.contextmanager
def frozen(pid: int) -> Iterator[None]:
    """SIGSTOP ``pid`` for the duration of the block; SIGCONT always follows."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (``VmRSS`` of /proc/<pid>/status), 0 if gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def terminate(proc: subprocess.Popen[bytes], grace: float) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGCONT)  # a frozen process cannot handle SIGTERM
            proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class BrokerProcess:
    """A broker process on a fixed loopback port, restartable with its data."""

    name = "broker"
    start_timeout = 30.0

    def __init__(self, port: int | None = None) -> None:
        self.port = port if port is not None else free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"meshgate-fault-{self.name}-"))
        self.log = self.workdir / "broker.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    # subclasses: the command line and environment of one run
    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} is not running"
        return self.process.pid

    def spawn(self) -> None:
        """Start the process (quick); ``wait_ready`` waits until it listens."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError(f"{self.name} is already running")
        if port_open(self.port):
            raise RuntimeError(f"port {self.port} for {self.name} is already taken")
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.environment(),
                cwd=self.workdir,
                preexec_fn=preexec(),
            )
        self.starts += 1
        LIVE.add(self)

    def ready(self) -> bool:
        return port_open(self.port)

    def check_alive(self) -> None:
        if self.process is None or self.process.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            rc = None if self.process is None else self.process.returncode
            raise RuntimeError(f"{self.name} exited (rc={rc}); log tail:\n{tail}")

    def wait_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout or self.start_timeout)
        while not self.ready():
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not listen on {self.port}")
            time.sleep(0.1)

    def start(self) -> BrokerProcess:
        self.spawn()
        self.wait_ready()
        return self

    def stop(self, grace: float = 20.0) -> None:
        """Stop the broker (SIGTERM: a clean shutdown that keeps its data)."""
        if self.process is not None:
            terminate(self.process, grace)
        deadline = time.monotonic() + 10
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        with frozen(self.pid):
            yield

    def close(self) -> None:
        self.stop()
        LIVE.discard(self)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> BrokerProcess:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()


class PrivateNats(BrokerProcess):
    """``nats-server -js`` with a store directory that survives restarts."""

    name = "nats"

    @property
    def url(self) -> str:
        return f"nats://{LOOPBACK}:{self.port}"

    def command(self) -> list[str]:
        try:
            binary = str(nats_server_binary())
        except FileNotFoundError:
            binary = "/usr/sbin/nats-server"
        store = self.workdir / "store"
        return [binary, "-a", LOOPBACK, "-p", str(self.port), "-js", "-sd", str(store)]


class PrivateMosquitto(BrokerProcess):
    """Mosquitto with persistence (sessions and queued messages survive a restart)."""

    name = "mosquitto"

    @property
    def url(self) -> str:
        return f"mqtt://{LOOPBACK}:{self.port}"

    def command(self) -> list[str]:
        conf = self.workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} {LOOPBACK}",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.workdir}/",
            "max_queued_messages 0",
            "max_inflight_messages 0",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to 'mosquitto', which cannot write here
        conf.write_text("\n".join(lines) + "\n")
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        return [binary, "-c", str(conf)]


class PrivateRabbit(BrokerProcess):
    """A second RabbitMQ node beside the system one (see the module docstring)."""

    name = "rabbitmq"
    start_timeout = 90.0

    def __init__(self, port: int | None = None) -> None:
        super().__init__(port)
        self.dist_port = free_port()
        self.node = f"meshgate-fault-{self.port}@localhost"
        (self.workdir / "plugins").write_text("")
        (self.workdir / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = {LOOPBACK}:{self.port}\n"
        )

    @staticmethod
    def available() -> str | None:
        """None when a private node can run here, else why not."""
        if not RABBIT_SERVER.exists():
            return f"{RABBIT_SERVER} not found (Debian package rabbitmq-server)"
        return None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{LOOPBACK}:{self.port}/"

    def command(self) -> list[str]:
        return [str(RABBIT_SERVER)]

    def environment(self) -> dict[str, str]:
        base = self.workdir
        return {
            **os.environ,
            "HOME": str(base),  # the Erlang cookie is created (and read) here
            "RUNNING_UNDER_SYSTEMD": "1",  # exec the VM: the child is beam.smp itself
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": LOOPBACK,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "plugins"),
            "RABBITMQ_PID_FILE": str(base / "rabbitmq.pid"),
            "RABBITMQ_LOGS": "-",
        }


async def restart_all(*brokers: BrokerProcess) -> None:
    """Start stopped brokers again (same ports and data), waiting for all of them."""
    for broker in brokers:
        broker.spawn()  # from the main thread, so the child dies with this process
    await asyncio.gather(*(asyncio.to_thread(broker.wait_ready) for broker in brokers))


async def stop_all(*brokers: BrokerProcess) -> None:
    """Stop brokers (SIGTERM, clean shutdown) concurrently."""
    await asyncio.gather(*(asyncio.to_thread(broker.stop) for broker in brokers))


def close_all() -> None:
    """Resume and stop every process still registered (end of the session)."""
    for item in list(LIVE):
        with contextlib.suppress(Exception):
            item.close()
