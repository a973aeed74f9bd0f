"""PII detection and scrubbing for memories, before they are embedded and stored."""

from __future__ import annotations

from memstream.privacy.detect import ENTITY_MAP, PiiDetector, PiiSpan, canonical, merge_spans
from memstream.privacy.policy import (
    DROP_REASON,
    PrivacyPolicy,
    Scrubber,
    ScrubResult,
    apply_policy,
    pseudonym,
    tenant_key,
)

__all__ = [
    "DROP_REASON",
    "ENTITY_MAP",
    "PiiDetector",
    "PiiSpan",
    "PrivacyPolicy",
    "ScrubResult",
    "Scrubber",
    "apply_policy",
    "canonical",
    "merge_spans",
    "pseudonym",
    "tenant_key",
]
