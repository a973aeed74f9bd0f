"""`memstream privacy preview`: what the worker would store and show, before a policy is on.

Each text goes through the worker's own privacy stage, built from the same settings
(`build_privacy_stage`), as a memory of a preview tenant; the key store is a temporary one,
so a preview never creates or touches real subject keys.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from memstream.privacy.categories import category_of
from memstream.settings import Settings

PREVIEW_TENANT = "privacy-preview"


def preview(texts: list[str], settings: Settings, topic: str | None = None) -> list[dict[str, Any]]:
    """Per text: what a reader without the `pii` clearance would see, and every span found
    (`type`, `start`, `end`, `category`, `action`: the policy's action for what it seals,
    `remove` for secrets, `keep` for the rest)."""
    from memstream.privacy.keystore import KeyStore
    from memstream.privacy.secrets import find_secrets
    from memstream.schemas.events import Memory
    from memstream.store.base import Caller
    from memstream.streams.app import build_privacy_stage
    from memstream.streams.privacy_stage import ErasedSubject, Protected, without_secrets

    with tempfile.TemporaryDirectory(prefix="memstream-preview-") as tmp:
        keystore = KeyStore(Path(tmp) / "keys.db")
        stage = build_privacy_stage(settings.model_copy(update={"master_key": "00" * 32}), keystore)
        events = [
            Memory(tenant=PREVIEW_TENANT, agent_id="preview", payload={"text": t, "topic": topic})
            for t in texts
        ]
        scrubbed = [without_secrets(e) for e in events]
        protected = stage.process(scrubbed)
        reader = Caller(PREVIEW_TENANT, "reader")
        out = []
        for text, event, result in zip(texts, scrubbed, protected, strict=True):
            action = stage.policy.action_for(topic, event.scope)
            sealed = stage.policy.sealed_types(PREVIEW_TENANT, topic)
            spans = [
                {
                    "type": s.entity_type,
                    "start": s.start,
                    "end": s.end,
                    "category": "secret",
                    "action": "remove",
                }
                for s in find_secrets(text)
            ]
            secret_at = {i for s in spans for i in range(s["start"], s["end"])}
            for s in stage.detector.detect(text):  # offsets into the text as given
                if not secret_at.intersection(range(s.start, s.end)):
                    spans.append(
                        {
                            "type": s.entity_type,
                            "start": s.start,
                            "end": s.end,
                            "category": category_of(s.entity_type),
                            "action": action if s.entity_type in sealed else "keep",
                        }
                    )
            if isinstance(result, Protected):
                visible, _ = stage.visible_text(result.text, result.sealed, PREVIEW_TENANT, reader)
            elif isinstance(result, ErasedSubject):
                visible = None
            else:
                visible = None  # rejected: the event would be dead-lettered (`drop` policy)
            out.append(
                {
                    "text": text,
                    "visible": visible,
                    "rejected": None
                    if isinstance(result, Protected)
                    else getattr(result, "reason", "erased"),
                    "spans": sorted(spans, key=lambda s: (s["start"], s["end"])),
                }
            )
        keystore.close()
    return out
