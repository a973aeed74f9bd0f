"""Which ONNX Runtime execution providers to ask for, and what actually runs.

CUDA is asked for when `onnxruntime-gpu` is installed and reports it; ONNX Runtime then
falls back to CPU by itself when no GPU or CUDA library is present. What the session
really uses is read back with `session.get_providers()`, never assumed.
"""

from __future__ import annotations

import os
from typing import Literal

import onnxruntime as ort

Preference = Literal["auto", "cuda", "cpu"]


def requested_providers(prefer: Preference = "auto") -> list[str]:
    """Providers to pass to InferenceSession, best first; CPU is always the last resort."""
    available = ort.get_available_providers()
    if prefer != "cpu" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if prefer == "cuda":
        raise RuntimeError(
            "CUDA was asked for but this onnxruntime has no CUDAExecutionProvider "
            f"(available: {available}); install memstream[gpu] on a machine with a GPU"
        )
    return ["CPUExecutionProvider"]


def allowed_cores() -> int | None:
    """Cores this process may run on when that is fewer than the machine has (a worker
    started under `taskset` or a container CPU set), else None. ONNX Runtime sizes its pool
    by the machine's cores and pins a thread to each; on one allowed core two threads
    would take turns on it."""
    try:
        allowed = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return None
    return allowed if allowed < (os.cpu_count() or allowed) else None


def session_options(threads: int | None = None, spin: bool = True) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    threads = threads or allowed_cores()
    if threads:
        options.intra_op_num_threads = threads
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: a CPU-only machine logs CUDA misses at 2
    return options


def make_session(
    model: str | bytes,
    prefer: Preference = "auto",
    threads: int | None = None,
    *,
    spin: bool = True,
) -> ort.InferenceSession:
    """`spin=False` when other threads share the cores (the worker's PII scan): ONNX
    Runtime's idle worker threads then sleep instead of busy-waiting between runs."""
    return ort.InferenceSession(
        model, sess_options=session_options(threads, spin), providers=requested_providers(prefer)
    )
