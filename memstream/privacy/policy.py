"""What to do with PII once found: redact, pseudonymize, drop the event, or allow.

Pseudonyms are keyed: ``HMAC-SHA256(tenant_key, entity_type || normalised value)`` with a
per-tenant key derived from one master secret via HKDF-SHA256 (RFC 5869, tenant id as the
``info``). The same person gets the same placeholder within a tenant, so memories about them
can still be linked, while tenants cannot correlate pseudonyms with each other, and nobody
without the master secret can test a guessed value against a pseudonym.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, Field

from memstream.privacy.detect import PiiDetector, PiiSpan, as_text

Action = Literal["seal", "redact", "pseudonymize", "drop", "allow"]
"""`seal` keeps values encrypted per subject (memstream.privacy.shred); apply_policy treats
it as `redact`, since sealing needs the key store."""
DROP_REASON = "pii_dropped"
PSEUDONYM_HEX = 6  # hex digits shown in a pseudonym placeholder (24 bits)


class PrivacyPolicy(BaseModel):
    """Per-topic and per-scope PII handling. Scope overrides beat topic overrides beat default.

    `sealed` names what the action applies to, as categories and/or entity types
    (`memstream.privacy.categories`): by default the direct identifiers; a tenant or a topic
    may add more (`tenant_sealed`, `topic_sealed`: `{"acme": ["quasi"]}`). Everything else
    found is kept as ordinary content."""

    default_action: Action = "redact"
    topics: dict[str, Action] = Field(default_factory=dict)
    scopes: dict[str, Action] = Field(default_factory=dict)
    ignore_entity_types: set[str] = Field(default_factory=set)
    sealed: list[str] = Field(default_factory=lambda: ["direct"])
    tenant_sealed: dict[str, list[str]] = Field(default_factory=dict)
    topic_sealed: dict[str, list[str]] = Field(default_factory=dict)

    def sealed_types(self, tenant: str | None = None, topic: str | None = None) -> frozenset[str]:
        """The entity types the action applies to for an event of `tenant` on `topic`."""
        from memstream.privacy.categories import sealed_types

        names = [*self.sealed, *self.tenant_sealed.get(tenant or "", [])]
        names += self.topic_sealed.get(topic or "", [])
        return sealed_types(names) - frozenset(self.ignore_entity_types)

    def action_for(self, topic: str | None = None, scope: str | None = None) -> Action:
        """The action for an event on ``topic`` with ``scope`` (most specific wins)."""
        if scope is not None and scope in self.scopes:
            return self.scopes[scope]
        if topic is not None and topic in self.topics:
            return self.topics[topic]
        return self.default_action


@dataclass(slots=True)
class ScrubResult:
    """The text to store (``None`` when dropped) and what was found in it."""

    text: str | None
    spans_found: list[PiiSpan]
    action: Action
    changed: bool
    reason: str | None = None
    replaced: list[PiiSpan] = field(default_factory=list)

    @property
    def dropped(self) -> bool:
        """True when the event must be rejected (reason ``pii_dropped``)."""
        return self.action == "drop" and self.reason == DROP_REASON


def tenant_key(master_key: bytes, tenant: str) -> bytes:
    """Per-tenant 32-byte key: HKDF-SHA256(master_key, salt=b"memstream-pii", info=tenant)."""
    if not master_key:
        raise ValueError("master_key must not be empty")
    prk = hmac.new(b"memstream-pii-v1", master_key, hashlib.sha256).digest()  # HKDF-Extract
    info = b"tenant:" + tenant.encode("utf-8")
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()  # HKDF-Expand, one block


def normalise(value: str) -> str:
    """Case-, width- and whitespace-insensitive form, so "Anna  Smith" == "anna smith"."""
    value = unicodedata.normalize("NFKC", value).casefold()
    return " ".join(value.split())


def pseudonym(value: str, entity_type: str, key: bytes) -> str:
    """Stable placeholder for ``value`` under ``key``, e.g. ``<PERSON:3f9a12>``."""
    digest = hmac.new(key, f"{entity_type}\x00{normalise(value)}".encode(), hashlib.sha256)
    return f"<{entity_type}:{digest.hexdigest()[:PSEUDONYM_HEX]}>"


def apply_policy(
    text: str,
    spans: Sequence[PiiSpan],
    action: Action,
    tenant: str = "",
    key: bytes | None = None,
    ignore_entity_types: set[str] | frozenset[str] = frozenset(),
) -> ScrubResult:
    """Apply ``action`` to ``text`` given detected ``spans`` (sorted, non-overlapping).

    ``key`` is the master secret for ``pseudonymize`` (the tenant key is derived from it).
    """
    kept = [s for s in spans if s.entity_type not in ignore_entity_types]
    if action == "allow" or not kept:
        return ScrubResult(text, kept, action, False)
    if action == "drop":
        return ScrubResult(None, kept, action, True, reason=DROP_REASON)
    if action == "pseudonymize":
        if key is None:
            raise ValueError("pseudonymize needs a key")
        tkey = tenant_key(key, tenant)
    parts: list[str] = []
    pos = 0
    replaced: list[PiiSpan] = []
    for s in sorted(kept, key=lambda s: s.start):
        if s.start < pos:  # overlapping input: extend the previous replacement
            if s.end <= pos:
                continue
            s = PiiSpan(pos, s.end, s.entity_type, s.score)
        parts.append(text[pos : s.start])
        if action in ("redact", "seal"):
            parts.append(f"<{s.entity_type}>")
        else:
            parts.append(pseudonym(text[s.start : s.end], s.entity_type, tkey))
        replaced.append(s)
        pos = s.end
    parts.append(text[pos:])
    return ScrubResult("".join(parts), kept, action, True, replaced=replaced)


class Scrubber:
    """Detect and apply the policy to a batch of ``(text, tenant, topic, scope)`` items."""

    def __init__(self, detector: PiiDetector, policy: PrivacyPolicy, master_key: bytes) -> None:
        if not master_key:
            raise ValueError("master_key must not be empty")
        self.detector = detector
        self.policy = policy
        self.master_key = master_key

    def scrub_batch(
        self, items: Sequence[tuple[str, str, str | None, str | None]]
    ) -> list[ScrubResult]:
        """One :class:`ScrubResult` per item, in order. Items whose action is ``allow`` are
        still scanned, so that ``spans_found`` can be audited."""
        texts = [as_text(text) for text, _tenant, _topic, _scope in items]
        found = self.detector.detect_batch(texts)
        out: list[ScrubResult] = []
        for text, (_raw, tenant, topic, scope), spans in zip(texts, items, found, strict=True):
            action = self.policy.action_for(topic, scope)
            out.append(
                apply_policy(
                    text, spans, action, tenant, self.master_key, self.policy.ignore_entity_types
                )
            )
        return out
