"""What every broker launcher hands back: where to connect, what runs, how to stop it."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from memstream.broker.kafka.secure import SecureSetup


class BrokerUnavailable(RuntimeError):
    """A broker cannot be started here; the message names what is missing and how to get it."""


@dataclass(frozen=True)
class NodeFaults:
    """What a launcher hands a BrokerHandle to inject faults into one node at a time."""

    kill: Callable[[int], None]
    restart: Callable[[int, float], None]
    pause: Callable[[int], None]
    resume: Callable[[int], None]


@dataclass
class BrokerHandle:
    """A running (or external) Kafka-compatible broker.

    `kind` is `apache-kafka`, `tansu` or `external`; `bootstrap` is a comma-separated
    `host:port` list ready for any Kafka client.
    """

    kind: str
    version: str
    bootstrap: str
    nodes: int = 1
    supports_compaction: bool = True
    cluster_id: str | None = None
    """Stays the same across restarts of a persistent broker; None where unknown."""
    persistent: bool = True
    """Whether the log survives a restart (Tansu keeps it in memory)."""
    pids: list[int] = field(default_factory=list)
    """The broker's processes, where this process started them."""
    secure: SecureSetup | None = None
    """A locked-down cluster's CA and principals (`start_kafka(secure=True)`), else None."""
    _stop: Callable[[], None] | None = field(default=None, repr=False)
    _kill: Callable[[], None] | None = field(default=None, repr=False)
    _node_faults: NodeFaults | None = field(default=None, repr=False)
    """Per-node fault operations, where the launcher can inject them (Apache Kafka)."""

    @property
    def label(self) -> str:
        """`apache-kafka 4.4.0`, `tansu 0.6.0`: what tests and benchmarks print."""
        return f"{self.kind} {self.version}"

    def stop(self) -> None:
        if self._stop is not None:
            stop, self._stop = self._stop, None
            stop()

    def kill(self) -> None:
        """SIGKILL the broker's processes (fault tests): no clean shutdown."""
        if self._kill is not None:
            self._kill()

    # Per-node faults (fault tests and `memstream bench faults`): node i is the i-th
    # `host:port` of `bootstrap`, which is also its Kafka `node.id`.

    def kill_node(self, index: int) -> None:
        """SIGKILL node `index` (its whole process group): no clean shutdown."""
        self._faults("kill_node").kill(index)

    def restart_node(self, index: int, timeout: float = 90.0) -> None:
        """Start a killed node again from its own directory and ports (same configuration,
        no re-format); returns once Metadata lists every node again."""
        self._faults("restart_node").restart(index, timeout)

    def pause_node(self, index: int) -> None:
        """SIGSTOP node `index`: its sockets stay open but it answers nothing (a partition
        from the cluster, as its peers and clients see it)."""
        self._faults("pause_node").pause(index)

    def resume_node(self, index: int) -> None:
        """SIGCONT a paused node."""
        self._faults("resume_node").resume(index)

    def _faults(self, operation: str) -> NodeFaults:
        if self._node_faults is None:
            raise NotImplementedError(
                f"{operation}: a {self.kind} broker does not support per-node faults "
                "(only an Apache Kafka cluster this process started does)"
            )
        return self._node_faults

    def __enter__(self) -> BrokerHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the usual bind-to-0 trick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    """Poll until something accepts TCP connections on host:port, or the timeout passes."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def require_binary(name: str, hint: str) -> str:
    """Path of an executable on PATH, or BrokerUnavailable naming it and how to install it."""
    path = shutil.which(name)
    if path is None:
        raise BrokerUnavailable(f"`{name}` not found on PATH: {hint}")
    return path
