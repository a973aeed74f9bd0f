"""Versioned Edge collections: `root/memories_v<N>/` shard directories and an `ALIAS` file.

A replay builds `v<N+1>` from the Kafka log while `v<N>` serves, then `swap(N+1)` points
the alias at it in one atomic rename; readers pick the new version up on their next
`open_live()`. Old versions stay on disk until `drop(version)`.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from memstream.store.edge import EdgeStore
from memstream.store.faults import DEFAULT_MIN_FREE_BYTES

PREFIX = "memories_v"
ALIAS_FILE = "ALIAS"
_VERSION = re.compile(rf"^{PREFIX}(\d+)$")


class CollectionSet:
    def __init__(
        self, root: Path | str, *, dim: int = 384, min_free_bytes: int = DEFAULT_MIN_FREE_BYTES
    ) -> None:
        self.root = Path(root)
        self.dim = dim
        self.min_free_bytes = min_free_bytes  # see EdgeStore
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, version: int) -> Path:
        return self.root / f"{PREFIX}{version}"

    def versions(self) -> list[int]:
        """Versions present on disk, ascending."""
        found = []
        for child in self.root.iterdir():
            match = _VERSION.match(child.name)
            if match and child.is_dir():
                found.append(int(match.group(1)))
        return sorted(found)

    def create_version(self) -> int:
        """A fresh, empty version numbered after every existing one (live or not)."""
        versions = self.versions()
        version = (versions[-1] if versions else 0) + 1
        self.path(version).mkdir()  # fails if a concurrent creator took the number
        return version

    def live_version(self) -> int | None:
        try:
            name = (self.root / ALIAS_FILE).read_text().strip()
        except FileNotFoundError:
            return None
        match = _VERSION.match(name)
        if not match:
            raise ValueError(f"{self.root / ALIAS_FILE} names {name!r}, not {PREFIX}<N>")
        return int(match.group(1))

    def swap(self, version: int) -> None:
        """Point the alias at `version` (atomic: write a temp file, fsync, rename)."""
        if not self.path(version).is_dir():
            raise FileNotFoundError(f"no version {version} under {self.root}")
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".alias-")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(f"{PREFIX}{version}\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.root / ALIAS_FILE)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def open(self, version: int) -> EdgeStore:
        return EdgeStore(self.path(version), dim=self.dim, min_free_bytes=self.min_free_bytes)

    def open_live(self) -> EdgeStore:
        version = self.live_version()
        if version is None:
            raise FileNotFoundError(f"no live version under {self.root} (no {ALIAS_FILE} file)")
        return self.open(version)

    def ensure_live(self) -> int:
        """The live version, creating and swapping to v1 on first use."""
        version = self.live_version()
        if version is None:
            version = self.create_version()
            self.swap(version)
        return version

    def drop(self, version: int) -> None:
        """Delete an old version's directory; never the live one."""
        if version == self.live_version():
            raise ValueError(f"version {version} is live")
        shutil.rmtree(self.path(version))
