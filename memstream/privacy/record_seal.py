"""Encrypt raw event copies with a key per record, so that erasure reaches them.

The archive keeps the input topics (`memstream.memories`, `memstream.observations`) and
dead letters, which hold personal values as agents sent them. Each such record is stored
as AES-256-GCM ciphertext under a random key of its own in the key store, found by
`(tenant, record id)`: the event id, so every copy of one event (at-least-once produce,
its dead letter) shares one key. Erasing a subject destroys the keys of the memories that
held its values; their archived copies are then noise, in every segment, for good.
Records that cannot be read as an event (garbage) are keyed by where they were on the log,
under the system tenant.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic_core import from_json

from memstream.privacy.keystore import KeyStore
from memstream.schemas.topics import DEAD_LETTER, MEMORIES, OBSERVATIONS
from memstream.streams.validate import SYSTEM_TENANT

SEALED_TOPICS = frozenset({MEMORIES.name, OBSERVATIONS.name, DEAD_LETTER.name})
"""Topics whose records carry raw personal data: archived encrypted, per record."""
NONCE_BYTES = 12
_AAD = b"memstream-record-v1\x00"


@dataclass(frozen=True, slots=True)
class RecordRef:
    tenant: str
    record_id: str

    @property
    def kid(self) -> str:
        """How an archived copy names its key: `<tenant>/<record id>`."""
        return f"{self.tenant}/{self.record_id}"

    @classmethod
    def parse(cls, kid: str) -> RecordRef:
        tenant, _, record_id = kid.partition("/")
        return cls(tenant, record_id)


def record_ref(topic: str, partition: int, offset: int, value: bytes | None) -> RecordRef:
    """The key a record is sealed with: its event's (for a dead letter: the rejected
    event's) tenant and id where readable, else its place on the log."""
    try:
        data = from_json(value or b"")
    except ValueError:
        data = None
    if isinstance(data, dict):
        tenant, event_id = data.get("tenant"), data.get("event_id")
        parents = data.get("parent_ids")
        if topic == DEAD_LETTER.name and isinstance(parents, list) and parents:
            event_id = parents[0]
        if isinstance(tenant, str) and isinstance(event_id, str) and "/" not in tenant:
            if 0 < len(tenant) <= 128 and 0 < len(event_id) <= 64:
                return RecordRef(tenant, event_id)
    return RecordRef(SYSTEM_TENANT, f"{topic}:{partition}:{offset}")


class RecordSealer:
    """Seals and opens raw record copies with per-record keys from a `KeyStore`."""

    def __init__(self, keystore: KeyStore) -> None:
        self.keystore = keystore

    def seal(
        self, records: Sequence[tuple[str, int, int, bytes | None]]
    ) -> list[tuple[bytes | None, str]]:
        """(ciphertext, kid) per (topic, partition, offset, value): one key-store
        transaction for the batch. The ciphertext is None for a record already erased."""
        refs = [record_ref(t, p, o, v) for t, p, o, v in records]
        keys = self.keystore.record_keys([(r.tenant, r.record_id) for r in refs])
        out: list[tuple[bytes | None, str]] = []
        for (_, _, _, value), ref in zip(records, refs, strict=True):
            key = keys[(ref.tenant, ref.record_id)]
            if key is None or value is None:
                out.append((None, ref.kid))
                continue
            nonce = secrets.token_bytes(NONCE_BYTES)
            sealed = AESGCM(key).encrypt(nonce, value, _AAD + ref.kid.encode())
            out.append((nonce + sealed, ref.kid))
        return out

    def open(self, kid: str, sealed: bytes | None) -> bytes | None:
        """The original bytes, or None when the record's key is gone (erased) or the copy
        does not authenticate."""
        if not sealed or len(sealed) <= NONCE_BYTES:
            return None
        ref = RecordRef.parse(kid)
        key = self.keystore.record_key(ref.tenant, ref.record_id)
        if key is None:
            return None
        try:
            return AESGCM(key).decrypt(
                sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], _AAD + kid.encode()
            )
        except InvalidTag:
            return None
