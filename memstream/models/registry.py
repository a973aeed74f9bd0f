"""Versioned ONNX models on disk, and a scorer that hot-swaps to the newest one.

Layout: `<directory>/<name>/v<N>.onnx`, `v<N>.json` (metadata) and `CURRENT` (the served
version number). Every file is written to a temporary name and moved into place with
`os.replace`, so a reader sees the old or the new file, never half of one; `CURRENT` moves
last, after the version it names is complete. One publisher per registry is assumed (the
feedback learner); readers may be many processes.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from memstream.logging import get_logger
from memstream.models.valuation import FEATURE_VERSION, N_FEATURES, cold_start_score

log = get_logger("memstream.models.registry")

_VERSION_FILE = re.compile(r"^v(\d+)\.onnx$")


def _write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a fsynced temporary file in the same directory."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ModelRegistry:
    """Numbered versions of one model in a directory; `CURRENT` says which one serves."""

    def __init__(self, directory: Path, name: str) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise ValueError(f"model name {name!r} must be a plain file name")
        self.name = name
        self.path = Path(directory) / name
        self.path.mkdir(parents=True, exist_ok=True)
        self.current_file = self.path / "CURRENT"

    def versions(self) -> list[int]:
        """All published version numbers, ascending."""
        found = (_VERSION_FILE.match(p.name) for p in self.path.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def publish(self, onnx_bytes: bytes, metadata: dict[str, Any]) -> int:
        """Store a new version (model, then metadata, then CURRENT) and return its number."""
        if not onnx_bytes:
            raise ValueError("refusing to publish an empty model")
        version = max(self.versions(), default=0) + 1
        # Reserve the number without overwriting: a hard link fails if the name exists.
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".publish.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(onnx_bytes)
                fh.flush()
                os.fsync(fh.fileno())
            while True:
                try:
                    os.link(tmp, self.path / f"v{version}.onnx")
                    break
                except FileExistsError:
                    version += 1
        finally:
            Path(tmp).unlink(missing_ok=True)
        meta = {**metadata, "name": self.name, "version": version, "published_at": time.time()}
        _write_atomic(self.path / f"v{version}.json", json.dumps(meta, indent=2).encode())
        _write_atomic(self.current_file, f"{version}\n".encode())
        log.info("model published", model=self.name, version=version)
        return version

    def current_version(self) -> int | None:
        """The served version, or None before the first publish (or if CURRENT is garbage)."""
        try:
            text = self.current_file.read_text().strip()
        except FileNotFoundError:
            return None
        try:
            return int(text)
        except ValueError:
            log.warning("unreadable CURRENT file", model=self.name, content=text[:64])
            return None

    def load(self, version: int) -> bytes:
        """The ONNX bytes of `version` (FileNotFoundError if it was never published)."""
        return (self.path / f"v{int(version)}.onnx").read_bytes()

    def metadata(self, version: int) -> dict[str, Any]:
        return json.loads((self.path / f"v{int(version)}.json").read_text())


Scores = np.ndarray
Fallback = Callable[[np.ndarray], np.ndarray]


class HotSwapScorer:
    """Scores with the registry's current version and follows `CURRENT` without a restart.

    At most every `check_every_s` seconds a `score` call reads `CURRENT` (a few bytes); when
    it names a new version, that version is loaded into an onnxruntime session, checked on
    a dry run (shape, feature version, scores in [0, 1]), and swapped in with one attribute assignment, so concurrent callers see the
    old or the new model, never a mix. A version that fails to load is logged and skipped
    (the old one keeps serving) until `CURRENT` changes again. Before any version exists the
    `fallback` (the cold-start heuristic) serves, labelled `<name>:cold-start`.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        fallback: Fallback = cold_start_score,
        check_every_s: float = 5.0,
        *,
        n_features: int = N_FEATURES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.fallback = fallback
        self.check_every_s = check_every_s
        self.n_features = n_features
        self._clock = clock
        self._last_check = -float("inf")
        self._refresh_lock = threading.Lock()
        self._rejected: int | None = None
        # (session or None, version or None, label): swapped as one object.
        self._active: tuple[ort.InferenceSession | None, int | None, str] = (
            None,
            None,
            f"{registry.name}:cold-start",
        )

    @property
    def version(self) -> int | None:
        return self._active[1]

    @property
    def label(self) -> str:
        return self._active[2]

    def _load(self, version: int) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # a dot product per row; threads only add overhead
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(
            self.registry.load(version), options, providers=["CPUExecutionProvider"]
        )
        (inp,) = session.get_inputs()
        (out,) = session.get_outputs()
        if inp.name != "features" or out.name != "score" or inp.shape[-1] != self.n_features:
            raise ValueError(
                f"expects input 'features' [N, {self.n_features}] and output 'score', "
                f"got {inp.name} {inp.shape} -> {out.name} {out.shape}"
            )
        meta = session.get_modelmeta().custom_metadata_map
        if meta.get("feature_version", str(FEATURE_VERSION)) != str(FEATURE_VERSION):
            raise ValueError(
                f"trained on feature version {meta['feature_version']}, "
                f"this process computes version {FEATURE_VERSION}"
            )
        probe = session.run(["score"], {"features": np.zeros((2, self.n_features), np.float32)})
        result = np.asarray(probe[0])
        if result.shape != (2,) or not np.all((result >= 0) & (result <= 1)):
            raise ValueError(f"dry run gave {result!r}, not two scores in [0, 1]")
        return session

    def refresh(self) -> bool:
        """Read CURRENT now and swap if it names a new, loadable version; True if swapped."""
        if not self._refresh_lock.acquire(blocking=False):
            return False  # another thread is loading; keep serving meanwhile
        try:
            self._last_check = self._clock()
            version = self.registry.current_version()
            if version is None or version == self._active[1] or version == self._rejected:
                return False
            try:
                session = self._load(version)
            except Exception as exc:
                self._rejected = version
                log.error(
                    "model version not loadable; keeping the one in service",
                    model=self.registry.name,
                    version=version,
                    serving=self._active[2],
                    error=f"{type(exc).__name__}: {exc}",
                )
                return False
            self._active = (session, version, f"{self.registry.name}:v{version}")
            log.info("model swapped in", model=self.registry.name, version=version)
            return True
        finally:
            self._refresh_lock.release()

    def score(self, features: np.ndarray) -> tuple[Scores, str]:
        """(scores (N,) float32 in [0, 1], label of what scored them, e.g. `valuation:v3`)."""
        if self._clock() - self._last_check >= self.check_every_s:
            self.refresh()
        x = np.asarray(features, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        session, _, label = self._active  # one read: a concurrent swap cannot split it
        if session is None:
            return np.asarray(self.fallback(x), dtype=np.float32), label
        if x.shape[0] == 0:
            return np.zeros(0, dtype=np.float32), label
        (scores,) = session.run(["score"], {"features": np.ascontiguousarray(x)})
        return np.asarray(scores, dtype=np.float32), label
