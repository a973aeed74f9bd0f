"""Token vectors kept at ingest for the late-interaction rerank: a side file next to the store.

The rerank (`retrieval.late`) needs every candidate's contextual piece vectors. Computing them
at query time was 75% of a hybrid search (a model run over up to `rerank_window` texts and
their contexts); the ingest path has the text's vectors from the same forward pass as its
pooled vector (`OnnxEmbedder.embed_with_tokens`). They are kept here as int8 with one float16
scale per piece (about 390 bytes a piece, a quarter of float32), per tenant, memory and part
(its text as embedded, its context as stored). The rerank thus scores a memory on the text
that was embedded (personal values as placeholders), like the dense and lexical sides; a
memory without kept vectors (stored before, or by another process) is embedded at query
time. The file is a cache of derived data: losing it costs speed, never a result.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from uuid import UUID

import numpy as np

from memstream.models.embedding import TokenVectors
from memstream.store.sqlite_file import SqliteFile

_SCHEMA = (
    """
    create table if not exists token_vectors (
        tenant text not null,
        memory_id text not null,
        part integer not null,
        tokens text not null,
        scales blob not null,
        codes blob not null,
        primary key (tenant, memory_id, part)
    ) without rowid
    """,
    "create index if not exists token_vectors_memory on token_vectors (memory_id)",
)
_SEP = "\x1f"  # between word pieces; the tokenizer never emits control characters
TEXT, CONTEXT = 0, 1
"""Which part of a memory vectors are of."""


def quantise(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-piece symmetric int8: (codes int8 (n, dim), scales float16 (n,))."""
    v = vectors.astype(np.float32)
    scales = np.maximum(np.abs(v).max(axis=1), 1e-8) / 127.0
    codes = np.clip(np.rint(v / scales[:, None]), -127, 127).astype(np.int8)
    return codes, scales.astype(np.float16)


def dequantise(codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """float32, the dtype the rerank scores in (a float16 step cost more than the read)."""
    vectors = codes.astype(np.float32)
    vectors *= scales.astype(np.float32)[:, None]
    return vectors


class TokenVectorStore(SqliteFile):
    """`put` at ingest, `get` at query time, `delete_memories` with the memories."""

    def __init__(self, path: Path, dim: int = 384) -> None:
        # a cache of derived data: a crash may lose the last writes, never corrupt the file
        super().__init__(path, _SCHEMA, ("synchronous=normal",))
        self.dim = dim

    def put(self, entries: Sequence[tuple[str, UUID | str, int, TokenVectors]]) -> None:
        """Keep `(tenant, memory id, part, token vectors)` per entry, in one transaction."""
        rows = []
        for tenant, memory_id, part, tv in entries:
            if not tv.tokens:
                continue
            codes, scales = quantise(tv.vectors)
            rows.append(
                (
                    tenant,
                    str(memory_id),
                    part,
                    _SEP.join(tv.tokens),
                    scales.tobytes(),
                    codes.tobytes(),
                )
            )
        if not rows:
            return
        with self._write() as db:
            db.executemany("insert or replace into token_vectors values (?, ?, ?, ?, ?, ?)", rows)

    def get(
        self, tenant: str, keys: Iterable[tuple[UUID | str, int]]
    ) -> dict[tuple[str, int], TokenVectors]:
        """The kept vectors of those `(memory id, part)` of the tenant that have some."""
        want = set(dict.fromkeys((str(m), p) for m, p in keys))
        if not want:
            return {}
        ids = sorted({m for m, _ in want})
        marks = ",".join("?" * len(ids))
        with self._lock:
            rows = self._db.execute(
                "select memory_id, part, tokens, scales, codes from token_vectors"
                f" where tenant = ? and memory_id in ({marks})",
                [tenant, *ids],
            ).fetchall()
        out: dict[tuple[str, int], TokenVectors] = {}
        for memory_id, part, tokens, scales, codes in rows:
            if (memory_id, part) not in want:
                continue
            pieces = tuple(tokens.split(_SEP))
            matrix = np.frombuffer(codes, dtype=np.int8).reshape(len(pieces), self.dim)
            out[(memory_id, part)] = TokenVectors(
                dequantise(matrix, np.frombuffer(scales, dtype=np.float16)), pieces
            )
        return out

    def delete_memories(self, memory_ids: Iterable[UUID | str]) -> int:
        """Forget the vectors kept for these memories (erasure, deletion)."""
        ids = [(str(i),) for i in memory_ids]
        if not ids:
            return 0
        with self._write() as db:
            cur = db.executemany("delete from token_vectors where memory_id = ?", ids)
            return cur.rowcount

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("select count(*) from token_vectors").fetchone()[0])
