"""The worker embeds, values and compresses every valid memory before indexing it, records
the model versions, and learns from feedback, swapping the new valuation model in live."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid

import numpy as np

from memstream import Client
from memstream.broker import BrokerHandle
from memstream.models.compression import BYTES_PER_VECTOR, CODEC_NAME, decode_vector
from memstream.models.embedding import OnnxEmbedder
from memstream.schemas.topics import INDEXED
from tests.integration.conftest import Worker, read_topic


async def _indexed(bootstrap: str, ids: set[str], timeout: float = 90) -> dict[str, dict]:
    records = await read_topic(
        bootstrap,
        INDEXED.name,
        lambda rs: ids <= {r.key.decode() for r in rs},
        timeout=timeout,
        settle=0.5,
    )
    return {r.key.decode(): json.loads(r.value) for r in records if r.key.decode() in ids}


async def test_memories_are_embedded_valued_and_compressed(
    broker: BrokerHandle, worker: Worker
) -> None:
    tenant = f"models-{uuid.uuid4().hex[:6]}"
    texts = [
        "The staging database moved to eu-west-2 on Monday; ask jane.roe@example.org.",
        "The staging database moved to eu-west-2 on Monday; ask jane.roe@example.org.",
        "Invoice exports fail when the CSV has more than 65k rows.",
    ]
    async with Client(broker.bootstrap, tenant=tenant, agent_id="writer") as client:
        ids = [str(await client.publish_memory(t, scope="team:ops")) for t in texts]
    records = await _indexed(broker.bootstrap, set(ids))
    assert set(records) == set(ids)

    embedder = OnnxEmbedder(prefer="cpu")
    for memory_id in ids:
        record = records[memory_id]
        payload = record["payload"]
        assert record["event_id"] == memory_id and record["tenant"] == tenant
        # personal data is sealed: placeholders in the text, values only as ciphertext;
        # ordinary content (a weekday, a region) is kept as written
        assert "jane.roe" not in json.dumps(payload)
        if "staging" in payload["text"]:
            assert "eu-west-2 on Monday" in payload["text"]
        assert payload["pii_action"] == "seal"
        embedded = re.sub(r"#\d+>", ">", payload["text"])  # what the model saw
        code = base64.b64decode(payload["vector_b64"])
        assert len(code) == BYTES_PER_VECTOR == 192
        assert float(decode_vector(code) @ embedder.embed([embedded])[0]) > 0.97
        assert 0.0 <= payload["usefulness"] <= 1.0
        assert payload["models"]["embedding"].startswith("minilm-l6-v2@")
        assert payload["models"]["codec"] == CODEC_NAME
        assert payload["models"]["valuation"].startswith("valuation:")
    assert records[ids[0]]["payload"]["subjects"]  # the sealed values' subjects
    assert records[ids[1]]["payload"]["duplicate_of"] == ids[0]
    assert records[ids[2]]["payload"]["duplicate_of"] is None
    assert records[ids[1]]["payload"]["novelty"] < 0.05 < records[ids[2]]["payload"]["novelty"]


async def test_feedback_trains_a_model_that_the_worker_swaps_in(
    broker: BrokerHandle, worker: Worker
) -> None:
    """The worker fixture runs with learner_min_labels=8: eight labels publish version 1."""
    tenant = f"learn-{uuid.uuid4().hex[:6]}"
    async with Client(broker.bootstrap, tenant=tenant, agent_id="teacher") as client:
        ids = [
            str(await client.publish_memory(f"fact number {i} about topic {i % 3}"))
            for i in range(12)
        ]
        await _indexed(broker.bootstrap, set(ids))
        for i, memory_id in enumerate(ids):
            await client.publish_feedback(memory_id, "helped" if i % 2 else "wrong")

    registry = worker.data_dir / "models" / "valuation"
    for _ in range(120):
        if (registry / "CURRENT").exists():
            break
        await asyncio.sleep(0.5)
    assert (registry / "CURRENT").exists(), "the learner never published a model"
    version = int((registry / "CURRENT").read_text())
    meta = json.loads((registry / f"v{version}.json").read_text())
    assert meta["n_seen"] >= 8

    label = None
    async with Client(broker.bootstrap, tenant=tenant, agent_id="teacher") as client:
        for _ in range(20):  # the worker checks the registry every 0.5 s
            memory_id = str(await client.publish_memory(f"a later fact {uuid.uuid4().hex}"))
            label = (await _indexed(broker.bootstrap, {memory_id}))[memory_id]["payload"]["models"][
                "valuation"
            ]
            if label != "valuation:cold-start":
                break
            await asyncio.sleep(0.5)
    assert label is not None and label.startswith("valuation:v"), label
    assert np.isfinite(float(label.removeprefix("valuation:v")))
