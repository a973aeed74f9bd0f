"""The Faust app: validate -> model stage -> `indexed`, rejects to `dead-letter`; the learner.

Topics carry raw bytes (`value_serializer="raw"`) so that undecodable input reaches our own
`validate_event` instead of crashing Faust's codec. Events are taken in batches
(`Stream.take_events`: up to `batch_size` events or `batch_window_ms`), validated, then
embedded, valued and compressed as one batch in a worker thread. Outputs go to the
producer before the batch is acked, and Faust flushes the producer before it commits
offsets, so delivery is at-least-once. One module per stage (validate, privacy, model,
sink, match), the agents, and the wiring (`create_app`).
"""

from memstream.streams.app.model import (
    annotation_stages,
    embed_protected,
    embed_timed,
    enrich_or_reject,
)
from memstream.streams.app.outcomes import (
    LEARNER_STAGE,
    MODEL_STAGE,
    SINK_STAGE,
    VALIDATE_STAGE,
    Outcome,
    loop_run,
)
from memstream.streams.app.privacy import (
    Screened,
    build_privacy_stage,
    privacy_executor,
    protect,
    protect_in_child,
    protect_timed,
)
from memstream.streams.app.sink import removal_adapter
from memstream.streams.app.wiring import (
    CONSUMER_METADATA_MAX_AGE_MS,
    DERIVED_TOPICS,
    Worker,
    archived_topics,
    broker_urls,
    create_app,
)

__all__ = [
    "CONSUMER_METADATA_MAX_AGE_MS",
    "DERIVED_TOPICS",
    "LEARNER_STAGE",
    "MODEL_STAGE",
    "SINK_STAGE",
    "VALIDATE_STAGE",
    "Outcome",
    "Screened",
    "Worker",
    "annotation_stages",
    "archived_topics",
    "broker_urls",
    "build_privacy_stage",
    "create_app",
    "embed_protected",
    "embed_timed",
    "enrich_or_reject",
    "loop_run",
    "privacy_executor",
    "protect",
    "protect_in_child",
    "protect_timed",
    "removal_adapter",
]
