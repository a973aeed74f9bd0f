"""The privacy stage: find personal data and apply the topic's policy before anything is
embedded, indexed or stored.

Default policy `seal`: each personal value is replaced by a numbered placeholder and kept
only as ciphertext under its subject's key (crypto-shredding, `memstream.privacy.shred`);
the embedding and the lexical index see typed placeholders only. Readers with the `pii`
clearance get the values back, others the placeholders; erasing a subject deletes its key,
so no copy anywhere, in the store or the log, can be read again. `redact` and
`pseudonymize` keep no value at all, `drop` rejects the event (`pii_dropped`), `allow`
stores it as sent.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from memstream.privacy.detect import PiiDetector, PiiSpan
from memstream.privacy.keystore import KeyStore
from memstream.privacy.policy import DROP_REASON, PrivacyPolicy, apply_policy
from memstream.privacy.shred import Sealed, redacted, reveal, seal, subjects
from memstream.schemas.events import Memory, Observation
from memstream.store.base import Caller
from memstream.streams.validate import InvalidEvent

PII_CLEARANCE = "pii"


@dataclass
class Protected:
    """An event's text as the pipeline may keep it."""

    text: str  # stored (for `seal`: numbered placeholders)
    embed_text: str  # embedded and indexed lexically: never a personal value unless `allow`
    context: str | None = None
    sealed: Sealed | None = None
    subjects: list[str] = field(default_factory=list)
    pii_types: list[str] = field(default_factory=list)
    action: str = "allow"


def load_master_key(data_dir: Path, configured: str | None = None) -> bytes:
    """`MEMSTREAM_MASTER_KEY` (hex) or `<data dir>/master.key`, created (0600) on first use."""
    if configured:
        return bytes.fromhex(configured)
    path = data_dir / "master.key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


class PrivacyStage:
    def __init__(
        self, detector: PiiDetector, policy: PrivacyPolicy, master_key: bytes, keystore: KeyStore
    ) -> None:
        self.detector = detector
        self.policy = policy
        self.master_key = master_key
        self.keystore = keystore

    def process(self, events: list[Memory | Observation]) -> list[Protected | InvalidEvent]:
        texts = [e.payload.text for e in events]
        contexts = [getattr(e.payload, "context", None) or "" for e in events]
        spans = self.detector.detect_batch(texts + contexts)
        out: list[Protected | InvalidEvent] = []
        for i, event in enumerate(events):
            action = self.policy.action_for(event.payload.topic, event.scope)
            found = [s for s in spans[i] if s.entity_type not in self.policy.ignore_entity_types]
            context = self._context(contexts[i], spans[len(events) + i], action, event.tenant)
            types = sorted({s.entity_type for s in found})
            if action == "drop" and found:
                out.append(
                    InvalidEvent(
                        DROP_REASON, f"personal data ({', '.join(types)}) on a drop-policy topic"
                    )
                )
            elif action == "seal" and found:
                sealed = seal(
                    texts[i],
                    found,
                    tenant=event.tenant,
                    keystore=self.keystore,
                    master_key=self.master_key,
                )
                out.append(
                    Protected(
                        sealed.text,
                        redacted(sealed),
                        context,
                        sealed,
                        subjects(sealed),
                        types,
                        action,
                    )
                )
            else:
                result = apply_policy(texts[i], found, action, event.tenant, self.master_key)
                text = result.text if result.text is not None else ""
                out.append(Protected(text, text, context, None, [], types, action))
        return out

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
