"""Erasure survives replay: after `memstream erase`, re-processing the whole log into a new
collection brings none of the subject's personal values back (crypto-shredding)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import qdrant_edge as qe

from memstream.broker import BrokerHandle
from memstream.privacy.keystore import KeyStore, subject_id
from memstream.privacy.shred import Sealed, reveal
from memstream.schemas import Memory
from memstream.stack import spawn_worker, stop_process
from memstream.store import open_store
from memstream.streams.privacy_stage import load_master_key
from tests.integration.test_store_sink import _publish, _wait_consumed

JANE = ["Jane Roe", "jane.roe@example.org", "+1 415 555 0142"]


def _worker(broker: BrokerHandle, data_dir: Path, group: str, store: Path):
    return spawn_worker(
        broker.bootstrap,
        log_path=data_dir / f"{group}.log",
        MEMSTREAM_DATA_DIR=str(data_dir),
        MEMSTREAM_STORE=str(store),
        MEMSTREAM_CONSUMER_GROUP=group,
        MEMSTREAM_LEARNER_ENABLED="false",
        MEMSTREAM_LOG_LEVEL="WARNING",
    )


def _payloads(store_dir: Path) -> list[dict]:
    store = open_store(str(store_dir))
    try:
        records, _ = store.shard.scroll(qe.ScrollRequest(limit=10_000, with_payload=True))  # type: ignore[attr-defined]
        return [r.payload for r in records]
    finally:
        store.close()


async def test_erased_subject_never_comes_back_from_a_replay(
    topics: BrokerHandle, tmp_path: Path
) -> None:
    tenant = f"gdpr-{uuid.uuid4().hex[:6]}"
    texts = [
        "Jane Roe asked us to send the contract to jane.roe@example.org by Friday.",
        "Call Jane Roe on +1 415 555 0142 about the renewal.",
        "Omar Haddad approved the budget for the data platform.",
        "The quarterly report is due on the first Monday of the month.",
    ]
    events = [
        Memory(tenant=tenant, agent_id="crm-bot", scope="tenant", payload={"text": t})
        for t in texts
    ]
    last = await _publish(topics.bootstrap, events)

    first, second = tmp_path / "store-live", tmp_path / "store-replayed"
    worker = _worker(topics, tmp_path, f"live-{tenant}", first)
    try:
        await _wait_consumed(topics.bootstrap, f"live-{tenant}", last)
        env = {**os.environ, "MEMSTREAM_DATA_DIR": str(tmp_path), "MEMSTREAM_LOG_LEVEL": "WARNING"}
        out = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "memstream",
                "erase",
                "--tenant",
                tenant,
                "--bootstrap",
                topics.bootstrap,
                *[arg for value in JANE for arg in ("--subject", value)],
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        out = out.stdout
        erased = [e["subject_id"] for e in json.loads(out)["erasures"]]
        master = load_master_key(tmp_path)
        assert erased == [subject_id(tenant, v, master) for v in JANE]
        keys = KeyStore(tmp_path / "keys.db")
        for _ in range(240):
            if all(keys.erased(tenant, s) for s in erased):
                break
            await asyncio.sleep(0.5)
        assert all(keys.erased(tenant, s) for s in erased), "the worker never processed the erasure"
    finally:
        assert stop_process(worker) == 0

    live = _payloads(first)
    assert live and not any(set(erased) & set(p.get("subjects") or []) for p in live)
    assert not any(value in json.dumps(live) for value in JANE)

    # replay: a fresh group re-reads the whole log into a new collection, same key store
    worker = _worker(topics, tmp_path, f"replay-{tenant}", second)
    try:
        await _wait_consumed(topics.bootstrap, f"replay-{tenant}", last)
    finally:
        assert stop_process(worker) == 0
    replayed = [p for p in _payloads(second) if p["tenant"] == tenant]
    assert len(replayed) == len(texts)  # every memory is back, the subject's values are not
    dumped = json.dumps(replayed)
    revealed = [
        reveal(Sealed.model_validate(p["sealed"]), tenant=tenant, keystore=keys)
        if p["sealed"]
        else p["text"]
        for p in replayed
    ]
    for value in JANE:
        assert value not in dumped
        assert not any(value in text for text in revealed), value
    assert any("Omar Haddad" in text for text in revealed)  # others' values still readable
