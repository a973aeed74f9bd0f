"""One local Kafka node: its directory, server.properties, JVM command line, formatting,
stopping, and the faults (kill, restart, pause, resume) a running cluster's nodes take."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memstream.broker.base import (
    BrokerUnavailable,
    NodeFaults,
    wait_for_port,
)
from memstream.broker.kafka.jars import LOG4J2_CONFIG, _tail
from memstream.broker.kafka.secure import SecureSetup
from memstream.logging import get_logger

log = get_logger("memstream.broker")

HOST = "127.0.0.1"
_STOP_GRACE_S = 15.0


def _kafka_uuid() -> str:
    """A Kafka `Uuid` string: 16 random bytes, URL-safe base64, no padding, no leading '-'."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka's own rule: would read as a CLI flag
            return text


def _half_heap(heap: str) -> str:
    match = re.fullmatch(r"(\d+)([kKmMgG]?)", heap.strip())
    if match is None:
        raise ValueError(f"heap must look like 512m or 1g, not {heap!r}")
    amount, unit = int(match.group(1)), match.group(2).lower()
    if unit == "g":
        amount, unit = amount * 1024, "m"
    return f"{max(amount // 2, 1)}{unit}"


@dataclass
class _Node:
    index: int
    port: int
    controller_port: int
    directory: Path
    directory_id: str
    proc: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.directory / "server.properties"

    @property
    def logs(self) -> Path:
        return self.directory / "logs"

    def log_tail(self, lines: int = 40) -> str:
        """ERROR/`Caused by` lines, then the last lines of the console output and server.log.

        Start-up failures end in a long stack trace; the root cause sits above the tail.
        """
        parts = []
        for path in (self.directory / "console.log", self.logs / "server.log"):
            if not path.is_file():
                continue
            text = path.read_text(errors="replace")
            if not text.strip():
                continue
            causes = [
                line
                for line in text.splitlines()
                if " ERROR " in line or line.lstrip().startswith("Caused by:")
            ]
            if causes:
                parts.append(f"--- errors in {path}\n" + "\n".join(dict.fromkeys(causes[:10])))
            parts.append(f"--- {path}\n{_tail(text, lines)}")
        return "\n".join(parts) or f"(no log output in {self.directory})"


def _server_properties(node: _Node, nodes: list[_Node], secure: SecureSetup | None = None) -> str:
    n = len(nodes)
    replicas = min(3, n)
    settings = {
        "process.roles": "broker,controller",
        "node.id": node.index,
        "listeners": f"PLAINTEXT://{HOST}:{node.port},CONTROLLER://{HOST}:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{node.port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        # Dynamic quorum (KIP-853): voters come from the formatted log, not a static list.
        "controller.quorum.bootstrap.servers": ",".join(
            f"{HOST}:{other.controller_port}" for other in nodes
        ),
        "log.dirs": node.directory / "data",
        "num.partitions": 1,
        "default.replication.factor": replicas,
        "auto.create.topics.enable": "true",
        "offsets.topic.replication.factor": replicas,
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min(2, n),
        # what topics (and __consumer_offsets) get unless they say otherwise: with three
        # replicas, an acknowledged write is on two of them
        "min.insync.replicas": min(2, n),
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": min(2, n),
        "group.initial.rebalance.delay.ms": 0,
        "num.network.threads": 2,
        "num.io.threads": 2,
        "num.recovery.threads.per.data.dir": 1,
        "log.segment.bytes": 64 * 1024 * 1024,
        # Brokers are unfenced on a heartbeat: beat more often so start-up returns sooner.
        "broker.heartbeat.interval.ms": 500,
    }
    if secure is not None:
        settings |= secure.server_properties(HOST, node.port, node.controller_port)
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def _java_cmd(
    java: str, libs: Path, node: _Node, heap: str, main: list[str], *, c1_only: bool
) -> list[str]:
    # C1-only JIT starts a JVM markedly faster on 2 cores but caps peak throughput.
    jit = ["-XX:TieredStopAtLevel=1"] if c1_only else []
    return [
        java,
        f"-Xmx{heap}",
        f"-Xms{_half_heap(heap)}",
        "-XX:+UseSerialGC",
        *jit,
        "-XX:-UsePerfData",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
        "-Dlog4j2.disable.jmx=true",
        f"-Dkafka.logs.dir={node.logs}",
        "-cp",
        f"{libs}/*",
        *main,
    ]


def _format_nodes(
    java: str, libs: Path, nodes: list[_Node], cluster_id: str, extra: list[str] | None = None
) -> None:
    """`kafka-storage format` every node (in parallel: each is a JVM start); `extra` adds
    arguments such as the SCRAM credentials of a secure cluster."""
    if len(nodes) == 1:
        quorum = ["--standalone"]
    else:
        quorum = [
            "--initial-controllers",
            ",".join(f"{n.index}@{HOST}:{n.controller_port}:{n.directory_id}" for n in nodes),
        ]
    running = []
    for node in nodes:
        cmd = _java_cmd(
            java,
            libs,
            node,
            "256m",
            [
                "kafka.tools.StorageTool",
                "format",
                "--config",
                str(node.config),
                "--cluster-id",
                cluster_id,
                *quorum,
                *(extra or []),
            ],
            c1_only=True,
        )
        running.append(
            (node, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        )
    try:
        for node, proc in running:
            out, _ = proc.communicate(timeout=120)
            if proc.returncode != 0:
                raise BrokerUnavailable(
                    f"`kafka-storage format` failed for node {node.index} "
                    f"(exit {proc.returncode}):\n{_tail(out.decode(errors='replace'))}"
                )
    finally:
        for _, proc in running:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _stop_procs(
    procs: list[subprocess.Popen[bytes]],
    grace: float = _STOP_GRACE_S,
    last_grace: float | None = None,
) -> None:
    """SIGTERM every JVM at once, wait up to `grace` seconds in total, then SIGKILL.

    `last_grace` caps the wait once a single node is left: when a whole cluster stops, the
    last Raft leader waits a hard-coded 5 s for a successor that cannot be elected.
    """
    live = [p for p in procs if p.poll() is None]
    for proc in live:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    capped = False
    while True:
        alive = [p for p in live if p.poll() is None]
        if not alive or time.monotonic() >= deadline:
            break
        if last_grace is not None and not capped and len(alive) == 1 and len(live) > 1:
            deadline, capped = min(deadline, time.monotonic() + last_grace), True
        time.sleep(0.05)
    for proc in live:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _kill_procs(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _metadata_brokers(bootstrap: str, timeout: float, security: dict | None = None) -> int:
    """How many brokers a real Metadata request reports (0 when the request fails);
    `security`: aiokafka security arguments (a secure cluster's admin)."""
    from aiokafka.admin import AIOKafkaAdminClient

    async def probe() -> int:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap,
            request_timeout_ms=max(int(timeout * 1000), 1000),
            retry_backoff_ms=100,
            **(security or {}),
        )
        try:
            await admin.start()
            cluster = await admin.describe_cluster()
            return len(cluster.get("brokers", []))
        finally:
            await admin.close()

    result: list[int] = [0]

    def run() -> None:  # own thread, so this works even under a running event loop
        with contextlib.suppress(Exception):
            result[0] = asyncio.run(probe())

    thread = threading.Thread(target=run, name="memstream-kafka-probe", daemon=True)
    thread.start()
    thread.join(timeout + 5)
    return result[0]


def _run_async(coro: Any) -> Any:
    """Run a coroutine to completion in a thread of its own (works under a running loop)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as err:  # re-raised in the caller's thread
            box["error"] = err

    thread = threading.Thread(target=run, name="memstream-kafka-admin", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


class _NodeControl:
    """Faults on one node of a running cluster: kill -9, restart, pause, resume.

    A restart runs the killed node's own command line again (`Popen.args`: same
    server.properties, directory and ports, no re-format), so it starts exactly as at
    first. `pids` is the handle's list, kept current across restarts.
    """

    def __init__(
        self,
        cluster: list[_Node],
        bootstrap: str,
        pids: list[int],
        stopped: threading.Event,
        security: dict | None = None,
    ) -> None:
        self.cluster = cluster
        self.bootstrap = bootstrap
        self.pids = pids
        self.stopped = stopped
        self.security = security  # a secure cluster's admin arguments, for Metadata
        self.paused: set[int] = set()
        self.lock = threading.Lock()

    def _proc(self, index: int) -> subprocess.Popen[bytes]:
        if not 0 <= index < len(self.cluster):
            raise ValueError(f"no node {index}: the cluster has {len(self.cluster)}")
        if self.stopped.is_set():
            raise RuntimeError("the cluster is stopped")
        proc = self.cluster[index].proc
        assert proc is not None
        return proc

    def kill(self, index: int) -> None:
        with self.lock:
            _kill_procs([self._proc(index)])
            self.paused.discard(index)

    def pause(self, index: int) -> None:
        self._signal(index, signal.SIGSTOP)
        self.paused.add(index)

    def resume(self, index: int) -> None:
        self._signal(index, signal.SIGCONT)
        self.paused.discard(index)

    def resume_all(self) -> None:
        """Before a stop: a stopped JVM would sit out the SIGTERM grace period."""
        for index in list(self.paused):
            with contextlib.suppress(RuntimeError, ProcessLookupError):
                self.resume(index)

    def _signal(self, index: int, sig: signal.Signals) -> None:
        with self.lock:
            proc = self._proc(index)
            if proc.poll() is not None:
                raise RuntimeError(f"node {index} is not running (exit {proc.returncode})")
            os.killpg(proc.pid, sig)

    def restart(self, index: int, timeout: float = 90.0) -> None:
        with self.lock:
            node, old = self.cluster[index], self._proc(index)
            if old.poll() is None:
                raise RuntimeError(f"node {index} is still running: kill_node({index}) first")
            with (node.directory / "console.log").open("ab") as console:
                node.proc = subprocess.Popen(
                    old.args,
                    stdin=subprocess.DEVNULL,
                    stdout=console,
                    stderr=subprocess.STDOUT,
                    cwd=node.directory,
                    start_new_session=True,
                )
            if index < len(self.pids):
                self.pids[index] = node.proc.pid
        deadline = time.monotonic() + timeout
        port_open = seen = 0
        while time.monotonic() < deadline:
            code = node.proc.poll()
            if code is not None:
                raise BrokerUnavailable(
                    f"Kafka node {index} exited with code {code} on restart:\n{node.log_tail()}"
                )
            if not port_open:
                port_open = wait_for_port(HOST, node.port, 0.2)
                continue
            seen = _metadata_brokers(
                self.bootstrap, min(5.0, max(deadline - time.monotonic(), 1.0)), self.security
            )
            if seen >= len(self.cluster):
                return
            time.sleep(0.1)
        raise BrokerUnavailable(
            f"Kafka node {index} not back within {timeout:.0f} s (port open: "
            f"{bool(port_open)}, brokers in metadata: {seen}):\n{node.log_tail(20)}"
        )

    def faults(self) -> NodeFaults:
        return NodeFaults(
            kill=self.kill, restart=self.restart, pause=self.pause, resume=self.resume
        )
