"""Per-subject data keys, so that erasing a subject survives any replay of the log.

Personal values are sealed (AES-256-GCM, see :mod:`memstream.privacy.shred`) with one random
256-bit key per ``(tenant, subject_id)``. The Kafka log and the store only ever hold
ciphertext; erasing a subject deletes its key here ("crypto-shredding"), after which no copy
of the ciphertext, in any topic, snapshot or rebuilt store, can be decrypted again.

The same file holds one random key per *record* (`record_keys`): copies of raw events kept
outside the log, in the archive, are encrypted with it, and erasing a subject destroys the
keys of the records that held its values (`erase_records`), so those copies go too.

Erasure leaves a tombstone ``(tenant, subject_id, erased_at)``: a replay that re-processes
raw input must not quietly mint a fresh key for an erased subject, so
``key_for(create=True)`` answers ``None`` for it and sealing stores no value at all.

The store is one SQLite file in WAL mode: several worker processes may share it (writes
take ``BEGIN IMMEDIATE``; readers never block writers). ``secure_delete`` is on and the WAL
is checkpointed after each erasure, so a deleted key is overwritten in the database file
rather than left in a free page or an old WAL frame.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from pathlib import Path

from memstream.privacy.policy import normalise, tenant_key
from memstream.store.sqlite_file import SqliteFile

KEY_BYTES = 32  # AES-256
SUBJECT_HEX = 32  # 128-bit subject ids: short in every sealed record, collisions negligible

_SCHEMA = (
    """
    create table if not exists subject_keys (
        tenant text not null,
        subject_id text not null,
        key blob not null,
        created_at text not null,
        primary key (tenant, subject_id)
    ) without rowid
    """,
    """
    create table if not exists record_keys (
        tenant text not null,
        record_id text not null,
        key blob,
        created_at text not null,
        primary key (tenant, record_id)
    ) without rowid
    """,
    """
    create table if not exists erasures (
        tenant text not null,
        subject_id text not null,
        erased_at text not null,
        primary key (tenant, subject_id)
    ) without rowid
    """,
)


def subject_id(tenant: str, value: str, master_key: bytes) -> str:
    """The subject a personal value belongs to: ``HMAC-SHA256(tenant key, normalised value)``.

    Keyed by the tenant's HKDF key (as for pseudonyms), so the same value maps to the same
    subject within a tenant, tenants never share a subject id, and nobody without the master
    secret can test a guessed value against an id. A subject is a *value* (one name, one
    e-mail address), not a person: erasing a person means erasing each of their values.
    """
    key = tenant_key(master_key, tenant)
    digest = hmac.new(key, b"subject\x00" + normalise(value).encode("utf-8"), hashlib.sha256)
    return digest.hexdigest()[:SUBJECT_HEX]


def _now() -> str:
    return datetime.now(UTC).isoformat()


class KeyStore(SqliteFile):
    """One random data key per ``(tenant, subject_id)``, with erasure tombstones."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, _SCHEMA, ("secure_delete=on", "synchronous=full"))

    def key_for(
        self,
        tenant: str,
        subject_id: str,
        create: bool = True,
        *,
        allow_new_after_erasure: bool = False,
    ) -> bytes | None:
        """The subject's key; a new one is made when ``create`` and there is none.

        ``None`` when there is no key and ``create`` is false, or when the subject was erased
        and ``allow_new_after_erasure`` is false (a replay must not bring it back). A key made
        after erasure cannot open anything sealed before it: the old ciphertexts fail
        authentication under the new key.
        """
        with self._lock:
            row = self._db.execute(
                "select key from subject_keys where tenant = ? and subject_id = ?",
                (tenant, subject_id),
            ).fetchone()
        if row is not None or not create:
            return None if row is None else bytes(row[0])
        with self._write() as db:  # re-check under the write lock: another process may race
            row = db.execute(
                "select key from subject_keys where tenant = ? and subject_id = ?",
                (tenant, subject_id),
            ).fetchone()
            if row is not None:
                return bytes(row[0])
            tomb = db.execute(
                "select 1 from erasures where tenant = ? and subject_id = ?", (tenant, subject_id)
            ).fetchone()
            if tomb is not None and not allow_new_after_erasure:
                return None
            key = secrets.token_bytes(KEY_BYTES)
            db.execute(
                "insert into subject_keys values (?, ?, ?, ?)", (tenant, subject_id, key, _now())
            )
            return key

    def erase(self, tenant: str, subject_id: str) -> bool:
        """Delete the subject's key for good and leave a tombstone; True if a key existed.

        The tombstone is written even when no key exists yet, so that an erasure request that
        arrives before (a replay of) the subject's data still keeps it from being sealed.
        """
        with self._write() as db:
            cur = db.execute(
                "delete from subject_keys where tenant = ? and subject_id = ?",
                (tenant, subject_id),
            )
            db.execute(
                "insert or replace into erasures values (?, ?, ?)", (tenant, subject_id, _now())
            )
            deleted = cur.rowcount > 0
        with self._lock:  # move the change out of the WAL and zero the old frames' file
            self._db.execute("pragma wal_checkpoint(truncate)")
        return deleted

    def erased(self, tenant: str, subject_id: str) -> bool:
        """True when the subject was erased and has no key since (none re-made after)."""
        with self._lock:
            row = self._db.execute(
                "select exists(select 1 from erasures where tenant = ? and subject_id = ?),"
                " exists(select 1 from subject_keys where tenant = ? and subject_id = ?)",
                (tenant, subject_id, tenant, subject_id),
            ).fetchone()
        return bool(row[0]) and not row[1]

    # --- record keys: raw copies of events kept outside the log (the archive) -------------

    def record_keys(self, ids: list[tuple[str, str]]) -> dict[tuple[str, str], bytes | None]:
        """The key of each `(tenant, record_id)`, made where there is none, in one
        transaction; None for a record erased before (its copy must not be kept)."""
        wanted = list(dict.fromkeys(ids))
        out: dict[tuple[str, str], bytes | None] = {}
        with self._write() as db:
            for tenant, record_id in wanted:
                row = db.execute(
                    "select key from record_keys where tenant = ? and record_id = ?",
                    (tenant, record_id),
                ).fetchone()
                if row is not None:
                    out[(tenant, record_id)] = None if row[0] is None else bytes(row[0])
                    continue
                key = secrets.token_bytes(KEY_BYTES)
                db.execute(
                    "insert into record_keys values (?, ?, ?, ?)", (tenant, record_id, key, _now())
                )
                out[(tenant, record_id)] = key
        return out

    def record_key(self, tenant: str, record_id: str) -> bytes | None:
        """The record's key, or None (never made, or erased)."""
        with self._lock:
            row = self._db.execute(
                "select key from record_keys where tenant = ? and record_id = ?",
                (tenant, record_id),
            ).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def erase_records(self, tenant: str, record_ids: list[str]) -> int:
        """Destroy the keys of these records for good (a tombstone stays, so no new key is
        ever made for them); returns how many keys existed."""
        if not record_ids:
            return 0
        erased = 0
        with self._write() as db:
            for record_id in dict.fromkeys(record_ids):
                cur = db.execute(
                    "update record_keys set key = null where tenant = ? and record_id = ?"
                    " and key is not null",
                    (tenant, record_id),
                )
                erased += cur.rowcount
                db.execute(
                    "insert or ignore into record_keys values (?, ?, null, ?)",
                    (tenant, record_id, _now()),
                )
        with self._lock:
            self._db.execute("pragma wal_checkpoint(truncate)")
        return erased

    def count(self, tenant: str | None = None) -> int:
        """How many live keys there are, in one tenant or all."""
        with self._lock:
            if tenant is None:
                row = self._db.execute("select count(*) from subject_keys").fetchone()
            else:
                row = self._db.execute(
                    "select count(*) from subject_keys where tenant = ?", (tenant,)
                ).fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> KeyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
