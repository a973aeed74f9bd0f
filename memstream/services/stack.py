"""The embedded stack `memstream up` runs, and how every other command finds it.

A stack is a broker (Apache Kafka persisted under `<data dir>/kafka` by default, or Tansu
in memory), the topic catalogue and one worker process serving the API. While it runs, a
state file `<data dir>/stack.json` says where it is (broker address, API URL, pids, broker
epoch), and `<cache dir>/stacks/<pid>.json` points at that data dir, so `erase`, `dlq`,
`replay`, `doctor` and the SDK find a running stack from any directory
(`find_stack`); an explicit `--bootstrap` or `MEMSTREAM_KAFKA_BOOTSTRAP` still wins.

`up` supervises its worker: a worker that exits is restarted with backoff, after its log's
last lines are shown; after `MAX_RESTARTS` restarts within `RESTART_WINDOW_S`, or if the
worker dies before the stack was ready, `up` stops everything and exits non-zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from memstream.broker import BrokerHandle, BrokerUnavailable, external_broker, start_broker
from memstream.settings import Settings
from memstream.streams.admin import ensure_topics

STATE_FILE = "stack.json"
MAX_RESTARTS = 5
RESTART_WINDOW_S = 300.0
_PR_SET_PDEATHSIG = 1


class StackError(RuntimeError):
    """The stack cannot start or keep running; the message says why and where to look."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Children get SIGTERM when `up` dies, even by SIGKILL: no orphaned worker holding
    the store's lock and the API port."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn_worker(
    bootstrap: str, *, log_path: Path | None = None, tied: bool = False, **env: str
) -> subprocess.Popen[bytes]:
    """Start `memstream worker` in a child process pointed at `bootstrap`; with `tied`,
    the child is stopped when this process dies."""
    child_env = {**os.environ, "MEMSTREAM_KAFKA_BOOTSTRAP": bootstrap, **env}
    out = (
        os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
        if log_path
        else subprocess.DEVNULL
    )
    return subprocess.Popen(
        [sys.executable, "-m", "memstream", "worker"],
        env=child_env,
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_die_with_parent if tied else None,
    )


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15) -> int:
    """SIGTERM, wait, then SIGKILL: the worker commits its offsets on SIGTERM."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- the state file ------------------------------------------------------------------------


@dataclass
class StackState:
    """What `<data dir>/stack.json` holds while a stack runs."""

    data_dir: str
    bootstrap: str
    api_url: str
    broker: str
    persistent: bool
    epoch: str
    up_pid: int
    worker_pid: int | None = None
    broker_pids: list[int] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)

    @property
    def alive(self) -> bool:
        return pid_alive(self.up_pid)

    def write(self) -> None:
        path = Path(self.data_dir) / STATE_FILE
        tmp = path.with_name(STATE_FILE + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(asdict(self), handle, indent=2)
        os.replace(tmp, path)
        registry = _registry_dir()
        registry.mkdir(parents=True, exist_ok=True)
        (registry / f"{self.up_pid}.json").write_text(json.dumps({"data_dir": self.data_dir}))

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (Path(self.data_dir) / STATE_FILE).unlink()
        with contextlib.suppress(FileNotFoundError):
            (_registry_dir() / f"{self.up_pid}.json").unlink()

    @classmethod
    def read(cls, data_dir: Path) -> StackState | None:
        """The state file in `data_dir`, or None (missing or unreadable)."""
        try:
            data = json.loads((Path(data_dir) / STATE_FILE).read_text())
            return cls(**data)
        except (OSError, ValueError, TypeError):
            return None


def _registry_dir() -> Path:
    base = os.environ.get("MEMSTREAM_CACHE_DIR")
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "memstream") / "stacks"


def running_stacks() -> list[StackState]:
    """Every live stack of this user, from the registry (stale entries are removed)."""
    found = []
    registry = _registry_dir()
    for entry in sorted(registry.glob("*.json")) if registry.is_dir() else []:
        try:
            data_dir = Path(json.loads(entry.read_text())["data_dir"])
        except (OSError, ValueError, KeyError):
            continue
        state = StackState.read(data_dir)
        if state is not None and state.alive and str(state.up_pid) == entry.stem:
            found.append(state)
        elif not (entry.stem.isdigit() and pid_alive(int(entry.stem))):
            with contextlib.suppress(OSError):
                entry.unlink()
    return found


def find_stack(settings: Settings) -> StackState | None:
    """The running stack these settings mean: the one in their data dir, else, when the
    data dir was not chosen (no `MEMSTREAM_DATA_DIR`) and holds no stack, the only one
    running for this user. None when there is none (or several to choose from)."""
    state = StackState.read(settings.data_dir)
    if state is not None and state.alive:
        return state
    if "data_dir" in settings.model_fields_set:
        return None
    stacks = running_stacks()
    return stacks[0] if len(stacks) == 1 else None


def stack_settings(settings: Settings) -> tuple[Settings, StackState | None]:
    """`settings` pointed at the running stack they mean (its data dir, its broker unless
    one is set), and that stack; unchanged when none is running."""
    state = find_stack(settings)
    if state is None:
        return settings, None
    update: dict[str, object] = {"data_dir": Path(state.data_dir)}
    if not settings.kafka_bootstrap:
        update["kafka_bootstrap"] = state.bootstrap
    return settings.model_copy(update=update), state


def where_to_look(settings: Settings) -> str:
    """For error messages: what `find_stack` looked at."""
    return f"no running stack in {settings.data_dir.resolve()} ({STATE_FILE})" + (
        "" if "data_dir" in settings.model_fields_set else f" nor in {_registry_dir()}"
    )


# --- the stack ------------------------------------------------------------------------------


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            return True
        except OSError:
            return False


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.strip().splitlines()[-lines:])


class Stack:
    """Broker (embedded unless `kafka_bootstrap` is set) plus one supervised worker."""

    def __init__(self, settings: Settings, say: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.say = say
        self.broker: BrokerHandle | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.state: StackState | None = None
        self.restarts: list[float] = []

    @property
    def bootstrap(self) -> str:
        if self.broker is None:
            raise RuntimeError("stack not started")
        return self.broker.bootstrap

    @property
    def url(self) -> str:
        return f"http://{self.settings.api_host}:{self.settings.web_port}"

    @property
    def worker_log(self) -> Path:
        return self.settings.data_dir / "worker.log"

    def start(self) -> Stack:
        settings = self.settings
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._clear_stale()
        if not _port_free(settings.api_host, settings.web_port):
            raise StackError(
                f"the API port {settings.api_host}:{settings.web_port} is already in use: "
                "pass --port or set MEMSTREAM_WEB_PORT"
            )
        if settings.kafka_bootstrap:
            self.broker = external_broker(settings.kafka_bootstrap)
        else:
            self.broker = start_broker(
                settings.broker_kind,
                data_dir=settings.data_dir / "kafka" if settings.broker_kind == "kafka" else None,
            )
        try:
            asyncio.run(
                ensure_topics(
                    self.broker.bootstrap,
                    partitions=settings.partitions,
                    replication_factor=settings.replication_factor,
                )
            )
            # an archive segment is named by the broker's incarnation: a persistent cluster
            # keeps its id; a memory-only broker starts its offsets at 0 again every time
            epoch = self.broker.cluster_id or f"{self.broker.kind}-{time.time_ns()}"
            self.state = StackState(
                data_dir=str(settings.data_dir.resolve()),
                bootstrap=self.broker.bootstrap,
                api_url=self.url,
                broker=self.broker.label,
                persistent=self.broker.persistent,
                epoch=epoch,
                up_pid=os.getpid(),
                broker_pids=list(self.broker.pids),
            )
            self._spawn()
        except BaseException:
            self.stop()
            raise
        return self

    def _clear_stale(self) -> None:
        """A stack that was killed leaves its state file; refuse a live one, and stop what
        a dead one left running (it holds this data dir's store and ports)."""
        old = StackState.read(self.settings.data_dir)
        if old is None:
            return
        if old.alive and old.up_pid != os.getpid():
            raise StackError(
                f"a stack already runs from {self.settings.data_dir} (pid {old.up_pid}, "
                f"{old.api_url}); stop it first"
            )
        for pid in [old.worker_pid, *old.broker_pids]:
            if pid_alive(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)  # type: ignore[arg-type]
        old.remove()

    def _spawn(self) -> None:
        assert self.state is not None
        self.worker = spawn_worker(
            self.bootstrap,
            log_path=self.worker_log,
            tied=True,
            MEMSTREAM_SERVE="true",
            MEMSTREAM_WEB_PORT=str(self.settings.web_port),
            MEMSTREAM_DATA_DIR=str(self.settings.data_dir),
            MEMSTREAM_BROKER_EPOCH=self.state.epoch,
        )
        self.state.worker_pid = self.worker.pid
        self.state.write()

    def check(self) -> None:
        """StackError if the worker died before the stack was ready."""
        if self.worker is not None and self.worker.poll() is not None:
            raise StackError(
                f"the worker exited with status {self.worker.returncode}; last lines of "
                f"{self.worker_log}:\n{log_tail(self.worker_log)}"
            )

    def supervise(self, stop: Callable[[], bool], poll_s: float = 0.5) -> None:
        """Until `stop()`: restart a worker that exits, with backoff; StackError after
        MAX_RESTARTS restarts within RESTART_WINDOW_S."""
        while not stop():
            time.sleep(poll_s)
            if self.worker is None or self.worker.poll() is None or stop():
                continue
            code = self.worker.returncode
            now = time.monotonic()
            self.restarts = [t for t in self.restarts if now - t < RESTART_WINDOW_S]
            if len(self.restarts) >= MAX_RESTARTS:
                raise StackError(
                    f"the worker exited {len(self.restarts) + 1} times within "
                    f"{RESTART_WINDOW_S:.0f} s (last status {code}); last lines of "
                    f"{self.worker_log}:\n{log_tail(self.worker_log)}"
                )
            wait = min(30.0, 2.0 ** len(self.restarts))
            self.say(
                f"worker exited with status {code}; restarting in {wait:.0f} s. Last lines "
                f"of {self.worker_log}:\n{log_tail(self.worker_log, 10)}"
            )
            self.restarts.append(now)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and not stop():
                time.sleep(0.1)
            if not stop():
                self._spawn()

    def stop(self) -> None:
        if self.worker is not None:
            stop_process(self.worker)
            self.worker = None
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        if self.state is not None:
            self.state.remove()
            self.state = None

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def wait_for_http(url: str, timeout: float, alive: Callable[[], None] | None = None) -> None:
    """Poll `url` until it answers 200 (TimeoutError otherwise); `alive()` may raise to
    give up early (a worker that died)."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None:
            alive()
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


__all__ = [
    "BrokerUnavailable",
    "Stack",
    "StackError",
    "StackState",
    "find_stack",
    "running_stacks",
    "spawn_worker",
    "stack_settings",
    "stop_process",
    "wait_for_http",
]
