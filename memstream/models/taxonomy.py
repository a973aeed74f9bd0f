"""Each tenant's taxonomy for tag-by-example: tags with a few example texts each, and the
memories agents tagged themselves with those tags (learned examples).

In `<data dir>/taxonomy.db`, shared by the worker roles (like tokens.db): an admin sets a
tenant's taxonomy with `PUT /v1/taxonomy`, which replaces it and forgets what was learned
under the old one; the model stage appends learned examples and follows what other
workers append (`SqliteFile.rows_since`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from memstream.store.sqlite_file import SqliteFile

TAXONOMY_FILE = "taxonomy.db"
MAX_TAGS = 100
MAX_EXAMPLES_PER_TAG = 50
MAX_EXAMPLE_CHARS = 2000

_SCHEMA = (
    "create table if not exists examples (tenant text not null, generation integer not null,"
    " tag text not null, text text not null, learned integer not null)",
    "create index if not exists examples_tenant on examples (tenant, generation)",
    "create table if not exists generations (tenant text primary key, generation integer)",
)


class TaxonomyBook:
    def __init__(self, path: Path) -> None:
        self.file = SqliteFile(path, _SCHEMA)

    def set(self, tenant: str, taxonomy: Mapping[str, Sequence[str]]) -> int:
        """Replace the tenant's taxonomy; returns its new generation."""
        with self.file.transaction() as db:
            row = db.execute(
                "select generation from generations where tenant = ?", (tenant,)
            ).fetchone()
            generation = (row[0] if row else 0) + 1
            db.execute(
                "insert or replace into generations (tenant, generation) values (?, ?)",
                (tenant, generation),
            )
            db.execute("delete from examples where tenant = ?", (tenant,))
            db.executemany(
                "insert into examples values (?, ?, ?, ?, 0)",
                [
                    (tenant, generation, tag, text)
                    for tag, texts in taxonomy.items()
                    for text in texts
                ],
            )
        return generation

    def generation(self, tenant: str) -> int:
        """0 when the tenant has no taxonomy."""
        rows = self.file.rows("select generation from generations where tenant = ?", (tenant,))
        return int(rows[0][0]) if rows else 0  # type: ignore[call-overload]

    def taxonomy(self, tenant: str) -> dict[str, list[str]]:
        """The tags and their given examples (not the learned ones)."""
        out: dict[str, list[str]] = {}
        for tag, text in self.file.rows(
            "select tag, text from examples where tenant = ? and learned = 0 order by rowid",
            (tenant,),
        ):
            out.setdefault(str(tag), []).append(str(text))
        return out

    def learned_since(self, tenant: str, after: int) -> tuple[list[tuple[str, str]], int]:
        """(tag, text) learned for the tenant's current taxonomy after rowid `after`, and the
        last rowid seen."""
        rows = self.file.rows(
            "select rowid, tag, text from examples where tenant = ? and learned = 1 "
            "and rowid > ? order by rowid",
            (tenant, after),
        )
        last = int(rows[-1][0]) if rows else after  # type: ignore[call-overload]
        return [(str(r[1]), str(r[2])) for r in rows], last

    def learn(self, tenant: str, generation: int, examples: list[tuple[str, str]]) -> None:
        """Keep agent-tagged texts as examples of the generation they were tagged under."""
        if not examples:
            return
        with self.file.transaction() as db:
            db.executemany(
                "insert into examples values (?, ?, ?, ?, 1)",
                [(tenant, generation, tag, text[:MAX_EXAMPLE_CHARS]) for tag, text in examples],
            )


def validate_taxonomy(taxonomy: Mapping[str, Sequence[str]]) -> None:
    """ValueError with the reason when a taxonomy cannot be used."""
    if not taxonomy:
        raise ValueError("a taxonomy needs at least one tag")
    if len(taxonomy) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags")
    for tag, texts in taxonomy.items():
        if not tag.strip() or len(tag) > 64:
            raise ValueError(f"tag {tag[:70]!r}: 1 to 64 characters")
        if not texts or len(texts) > MAX_EXAMPLES_PER_TAG:
            raise ValueError(f"tag {tag!r}: 1 to {MAX_EXAMPLES_PER_TAG} example texts")
        if any(not t.strip() or len(t) > MAX_EXAMPLE_CHARS for t in texts):
            raise ValueError(f"tag {tag!r}: examples of 1 to {MAX_EXAMPLE_CHARS} characters")
