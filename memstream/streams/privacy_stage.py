"""The privacy stage: find personal data and apply the topic's policy before anything is
embedded, indexed or stored.

Default policy `seal`: each personal value is replaced by a numbered placeholder and kept
only as ciphertext under its subject's key (crypto-shredding, `memstream.privacy.shred`);
the embedding and the lexical index see typed placeholders only. Readers with the `pii`
clearance get the values back, others the placeholders; erasing a subject deletes its key,
so no copy anywhere, in the store or the log, can be read again, and an event that holds a
value of an erased subject is not kept at all (`ErasedSubject`). `redact` and
`pseudonymize` keep no value at all, `drop` rejects the event (`pii_dropped`), `allow`
stores it as sent.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from memstream.privacy.detect import PiiDetector, PiiSpan
from memstream.privacy.keystore import KeyStore
from memstream.privacy.policy import DROP_REASON, PrivacyPolicy, apply_policy
from memstream.privacy.secrets import scrub_secrets, scrub_value
from memstream.privacy.shred import Sealed, redacted, reveal, seal, subjects
from memstream.schemas.events import Memory, Observation
from memstream.store.base import Caller
from memstream.streams.validate import InvalidEvent

PII_CLEARANCE = "pii"
E = TypeVar("E", Memory, Observation)


@dataclass
class Protected:
    """An event's free text as the pipeline may keep it: the text, its context, and the
    structured fields (topic, tags, metadata), each scanned."""

    text: str  # stored (for `seal`: numbered placeholders)
    embed_text: str  # embedded and indexed lexically: never a personal value unless `allow`
    context: str | None = None
    sealed: Sealed | None = None
    subjects: list[str] = field(default_factory=list)
    pii_types: list[str] = field(default_factory=list)
    action: str = "allow"
    topic: str | None = None
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def unscanned(cls, event: Memory | Observation) -> Protected:
        """The event as sent (no privacy stage)."""
        p = event.payload
        context = getattr(p, "context", None)
        return cls(p.text, p.text, context, topic=p.topic, tags=list(p.tags), metadata=p.metadata)


def field_strings(event: Memory | Observation) -> list[str]:
    """Every string of the structured fields that may carry personal data: the topic, the
    tags, and the keys and string values of the metadata."""
    p = event.payload
    found = ([p.topic] if p.topic else []) + list(p.tags)
    stack: list[Any] = [p.metadata]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            found.extend(value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str):
            found.append(value)
    return found


def _phrase(value: str) -> bool:
    """A structured value that reads like prose (two words or more): scanned in full."""
    return len(value.split()) >= 2


def _map_strings(value: Any, fn: Callable[[str], str]) -> Any:
    """`value` (JSON) with `fn` applied to every string, keys included."""
    if isinstance(value, dict):
        return {fn(k): _map_strings(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_strings(v, fn) for v in value]
    return fn(value) if isinstance(value, str) else value


@dataclass(frozen=True)
class ErasedSubject:
    """The outcome for an event whose text holds a value of an erased subject: it is
    neither stored nor dead-lettered (a dead letter would keep its raw bytes), so erasure
    means the same live and after every replay: such memories are gone."""

    subjects: list[str]


def load_master_key(data_dir: Path, configured: str | None = None, *, create: bool = True) -> bytes:
    """`MEMSTREAM_MASTER_KEY` (hex) or `<data dir>/master.key`, created (0600) on first use
    when `create`; FileNotFoundError otherwise."""
    if configured:
        return bytes.fromhex(configured)
    path = data_dir / "master.key"
    if not path.exists() and not create:
        raise FileNotFoundError(f"no master key at {path} (and MEMSTREAM_MASTER_KEY is unset)")
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


def without_secrets(event: E) -> E:
    """The event with every secret (keys, tokens, passwords) in its free text replaced by
    a typed placeholder, irreversibly: `memstream.privacy.secrets`."""
    p = event.payload
    fields: dict[str, Any] = {
        "text": scrub_secrets(p.text),
        "topic": scrub_secrets(p.topic) if p.topic else p.topic,
        "tags": [scrub_secrets(t) for t in p.tags],
        "metadata": scrub_value(p.metadata),
    }
    if getattr(p, "context", None):
        fields["context"] = scrub_secrets(p.context)  # type: ignore[attr-defined]
    changed = {k: v for k, v in fields.items() if v != getattr(p, k)}
    if not changed:
        return event
    return event.model_copy(update={"payload": p.model_copy(update=changed)})


class PrivacyStage:
    def __init__(
        self, detector: PiiDetector, policy: PrivacyPolicy, master_key: bytes, keystore: KeyStore
    ) -> None:
        self.detector = detector
        self.policy = policy
        self.master_key = master_key
        self.keystore = keystore
        # one-word labels (a tag "ci", a topic "kafka") give NER nothing to go on but its
        # guesses: they get the pattern recognizers only (e-mails, phones, cards, ...)
        self.patterns = PiiDetector("fast")

    def process(
        self, events: list[Memory | Observation]
    ) -> list[Protected | InvalidEvent | ErasedSubject]:
        texts = [e.payload.text for e in events]
        contexts = [getattr(e.payload, "context", None) or "" for e in events]
        strings = sorted({v for e in events for v in field_strings(e)})  # tags repeat a lot
        phrases = [v for v in strings if _phrase(v)]
        labels = [v for v in strings if not _phrase(v)]
        spans = self.detector.detect_batch(texts + contexts + phrases)
        field_spans = dict(zip(phrases, spans[2 * len(events) :], strict=True))
        field_spans |= dict(zip(labels, self.patterns.detect_batch(labels), strict=True))
        out: list[Protected | InvalidEvent] = []
        for i, event in enumerate(events):
            action = self.policy.action_for(event.payload.topic, event.scope)
            kinds = self.policy.sealed_types(event.tenant, event.payload.topic)
            found = self._kept(spans[i], kinds)
            context = self._context(
                contexts[i], self._kept(spans[len(events) + i], kinds), action, event.tenant
            )
            in_fields = {v: self._kept(field_spans[v], kinds) for v in field_strings(event)}
            in_fields = {v: f for v, f in in_fields.items() if f}
            types = sorted(
                {s.entity_type for s in found}
                | {s.entity_type for f in in_fields.values() for s in f}
            )
            if action == "drop" and types:
                out.append(
                    InvalidEvent(
                        DROP_REASON, f"personal data ({', '.join(types)}) on a drop-policy topic"
                    )
                )
                continue
            fields = self._fields(event, in_fields, action)
            if action == "seal" and found:
                sealed = seal(
                    texts[i],
                    found,
                    tenant=event.tenant,
                    keystore=self.keystore,
                    master_key=self.master_key,
                )
                erased = sorted({v.subject_id for v in sealed.values if v.ciphertext_b64 is None})
                if erased:
                    # it holds a value of an erased subject: the memory is not kept, and
                    # neither is any raw copy of it (the archive's is keyed by the event id)
                    self.keystore.erase_records(event.tenant, [str(event.event_id)])
                    out.append(ErasedSubject(erased))
                    continue
                out.append(
                    Protected(
                        sealed.text,
                        redacted(sealed),
                        context,
                        sealed,
                        subjects(sealed),
                        types,
                        action,
                        **fields,
                    )
                )
            else:
                result = apply_policy(texts[i], found, action, event.tenant, self.master_key)
                text = result.text if result.text is not None else ""
                out.append(Protected(text, text, context, None, [], types, action, **fields))
        return out

    def _kept(self, spans: list[PiiSpan], sealed: frozenset[str]) -> list[PiiSpan]:
        """The spans the action applies to: of the types sealed for this event."""
        return [s for s in spans if s.entity_type in sealed]

    def _fields(
        self, event: Memory | Observation, in_fields: dict[str, list[PiiSpan]], action: str
    ) -> dict[str, Any]:
        """Topic, tags and metadata as they may be kept. They are filter keys and labels,
        not prose, so a personal value in them is never kept, not even sealed: under every
        action but `allow` it becomes its typed placeholder (`pseudonymize`: its pseudonym)."""
        p = event.payload
        if action == "allow" or not in_fields:
            return {"topic": p.topic, "tags": list(p.tags), "metadata": p.metadata}
        how = "pseudonymize" if action == "pseudonymize" else "redact"

        def clean(value: str) -> str:
            spans = in_fields.get(value)
            if not spans:
                return value
            return apply_policy(value, spans, how, event.tenant, self.master_key).text or ""

        tags = list(dict.fromkeys(clean(t)[:64] for t in p.tags))
        return {
            "topic": clean(p.topic)[:128] if p.topic else p.topic,
            "tags": tags,
            "metadata": _map_strings(p.metadata, clean),
        }

    def _context(self, context: str, spans: list[PiiSpan], action: str, tenant: str) -> str | None:
        if not context:
            return None
        if action == "allow":
            return context
        # context is search help only: its personal values are never kept, sealed or not
        return apply_policy(context, spans, "redact", tenant, self.master_key).text

    def visible_text(
        self, text: str, sealed: dict | Sealed | None, tenant: str, caller: Caller
    ) -> tuple[str, bool]:
        """(what `caller` may read, whether personal values were withheld)."""
        if sealed is None:
            return text, False
        record = sealed if isinstance(sealed, Sealed) else Sealed.model_validate(sealed)
        if PII_CLEARANCE in caller.clearance and caller.tenant == tenant:
            return reveal(record, tenant=tenant, keystore=self.keystore), False
        return redacted(record), True
