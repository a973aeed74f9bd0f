"""Seal personal values with per-subject keys, so erasure survives replay (crypto-shredding).

``seal`` replaces each PII span with a typed, numbered placeholder (``<PERSON#1>``) and keeps
the value only as AES-256-GCM ciphertext under its subject's key (:mod:`.keystore`). What
goes to the durable log and the store is the :class:`Sealed` record; erasing a subject
deletes its key, and from then on every copy of its ciphertext is noise.

Decryption fails closed: a missing key, a wrong tenant, a tampered or malformed record all
give the typed placeholder (``<PERSON>``), never an exception and never the value.
The associated data binds tenant, subject id, placeholder number and entity type, so a
ciphertext cannot be moved to another tenant, subject or place in the text.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, ConfigDict, Field

from memstream.privacy.detect import PiiSpan
from memstream.privacy.keystore import KeyStore, subject_id

SEAL_VERSION = 1
NONCE_BYTES = 12  # 96-bit random nonces: one key seals few values, far from the 2^32 limit
PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*)#(\d+)>")


class SealedValue(BaseModel):
    """One distinct value of a text: ``<entity_type#index>`` stands for it.

    ``nonce_b64``/``ciphertext_b64`` are ``None`` when the subject was already erased when
    the text was sealed: the value was never stored.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int = Field(ge=1)
    entity_type: str
    subject_id: str
    nonce_b64: str | None = None
    ciphertext_b64: str | None = None


class Sealed(BaseModel):
    """A text safe to keep in the log and the store: placeholders plus sealed values."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = SEAL_VERSION
    text: str
    values: list[SealedValue] = Field(default_factory=list)


def _aad(tenant: str, subject: str, index: int, entity_type: str) -> bytes:
    return f"memstream-seal-v{SEAL_VERSION}\x00{tenant}\x00{subject}\x00{index}\x00{entity_type}".encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _non_overlapping(spans: Sequence[PiiSpan]) -> list[PiiSpan]:
    """Sorted spans with overlaps folded into the earlier one (as ``apply_policy`` does)."""
    out: list[PiiSpan] = []
    for s in sorted(spans, key=lambda s: (s.start, -s.end)):
        if s.end <= s.start:
            continue
        if out and s.start < out[-1].end:
            prev = out[-1]
            if s.end > prev.end:
                out[-1] = PiiSpan(prev.start, s.end, prev.entity_type, prev.score)
            continue
        out.append(s)
    return out


def seal(
    text: str,
    spans: Sequence[PiiSpan],
    *,
    tenant: str,
    keystore: KeyStore,
    master_key: bytes,
) -> Sealed:
    """Replace each span with ``<TYPE#n>`` and seal its value under its subject's key.

    ``n`` numbers distinct ``(type, value)`` pairs in order of first appearance, so repeats
    of a value share a placeholder and one ciphertext. Values of erased subjects get a
    placeholder and no ciphertext; their keys are not re-created (``key_for`` refuses).
    """
    numbered: dict[tuple[str, str], int] = {}
    values: list[SealedValue] = []
    keys: dict[str, bytes | None] = {}
    parts: list[str] = []
    pos = 0
    for s in _non_overlapping(spans):
        value = text[s.start : s.end]
        parts.append(text[pos : s.start])
        pos = s.end
        index = numbered.get((s.entity_type, value))
        if index is None:
            index = numbered[(s.entity_type, value)] = len(numbered) + 1
            subject = subject_id(tenant, value, master_key)
            if subject not in keys:
                keys[subject] = keystore.key_for(tenant, subject, create=True)
            key = keys[subject]
            if key is None:  # erased: the value is gone for good
                values.append(
                    SealedValue(index=index, entity_type=s.entity_type, subject_id=subject)
                )
            else:
                nonce = secrets.token_bytes(NONCE_BYTES)
                ct = AESGCM(key).encrypt(
                    nonce, value.encode("utf-8"), _aad(tenant, subject, index, s.entity_type)
                )
                values.append(
                    SealedValue(
                        index=index,
                        entity_type=s.entity_type,
                        subject_id=subject,
                        nonce_b64=_b64(nonce),
                        ciphertext_b64=_b64(ct),
                    )
                )
        parts.append(f"<{s.entity_type}#{index}>")
    parts.append(text[pos:])
    return Sealed(text="".join(parts), values=values)


def _open(value: SealedValue, tenant: str, keystore: KeyStore) -> str | None:
    """The plaintext, or None for any reason at all (erased, wrong tenant, tampered)."""
    if value.nonce_b64 is None or value.ciphertext_b64 is None:
        return None
    key = keystore.key_for(tenant, value.subject_id, create=False)
    if key is None:
        return None
    try:
        nonce = base64.b64decode(value.nonce_b64, validate=True)
        ct = base64.b64decode(value.ciphertext_b64, validate=True)
        aad = _aad(tenant, value.subject_id, value.index, value.entity_type)
        return AESGCM(key).decrypt(nonce, ct, aad).decode("utf-8")
    except (InvalidTag, ValueError, binascii.Error, UnicodeDecodeError):
        return None


def reveal(sealed: Sealed, *, tenant: str, keystore: KeyStore) -> str:
    """The text with every value whose key still exists put back; others as ``<TYPE>``."""
    by_index = {v.index: v for v in sealed.values}
    opened: dict[int, str | None] = {}

    def sub(m: re.Match[str]) -> str:
        etype, index = m.group(1), int(m.group(2))
        value = by_index.get(index)
        if value is None or value.entity_type != etype:
            return m.group(0) if value is None else f"<{etype}>"
        if index not in opened:
            opened[index] = _open(value, tenant, keystore)
        plain = opened[index]
        return f"<{etype}>" if plain is None else plain

    return PLACEHOLDER.sub(sub, sealed.text)


def redacted(sealed: Sealed) -> str:
    """Typed placeholders only (``<PERSON>``), never touching a key: the view without PII
    clearance, and the same form ``apply_policy(..., "redact")`` produces."""
    known = {(v.entity_type, v.index) for v in sealed.values}

    def sub(m: re.Match[str]) -> str:
        if (m.group(1), int(m.group(2))) in known:
            return f"<{m.group(1)}>"
        return m.group(0)

    return PLACEHOLDER.sub(sub, sealed.text)


def subjects(sealed: Sealed) -> list[str]:
    """The distinct subject ids a sealed text mentions, in order: index them for erasure."""
    return list(dict.fromkeys(v.subject_id for v in sealed.values))
