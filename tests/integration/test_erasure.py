"""Erasure has one meaning (issue 12): after `memstream erase`, the subject's memories are
gone and its values unrecoverable, live, after a restart, after a replay of the topic,
after a replay of the archive and after `--swap`, in search, deliveries and the archive
alike; everyone else's memories are untouched in every case."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import qdrant_edge as qe
import zstandard

from memstream.broker import BrokerHandle
from memstream.broker.base import free_port
from memstream.privacy.keystore import KeyStore, subject_id
from memstream.schemas import Memory
from memstream.services.auth import TokenStore
from memstream.services.stack import spawn_worker, stop_process, wait_for_http
from memstream.store import CollectionSet
from memstream.streams.app import archived_topics
from memstream.streams.privacy_stage import load_master_key
from tests.integration.conftest import start_group_at_end
from tests.integration.test_api import _auth, _collect, _until, _wait_subscriptions
from tests.integration.test_store_sink import _publish, _wait_consumed

JANE = ["Jane Roe", "jane.roe@example.org", "+1 415 555 0142"]
TEXTS = [
    "Jane Roe asked us to send the contract to jane.roe@example.org by Friday.",
    "Call Jane Roe on +1 415 555 0142 about the renewal.",
    "Omar Haddad approved the budget for the data platform.",
    "The quarterly report is due on the first Monday of the month.",
]


def _serve(broker: BrokerHandle, data_dir: Path, group: str, port: int):  # type: ignore[no-untyped-def]
    proc = spawn_worker(
        broker.bootstrap,
        log_path=data_dir / "worker.log",
        MEMSTREAM_DATA_DIR=str(data_dir),
        MEMSTREAM_CONSUMER_GROUP=group,
        MEMSTREAM_SERVE="true",
        MEMSTREAM_WEB_PORT=str(port),
        MEMSTREAM_LEARNER_ENABLED="false",
        MEMSTREAM_LOG_LEVEL="WARNING",
    )
    wait_for_http(f"http://127.0.0.1:{port}/healthz", 90)
    return proc


def _cli(data_dir: Path, *args: str) -> str:
    env = {**os.environ, "MEMSTREAM_DATA_DIR": str(data_dir), "MEMSTREAM_LOG_LEVEL": "WARNING"}
    done = subprocess.run(
        [sys.executable, "-m", "memstream", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _version_ids(data_dir: Path, version: int, tenant: str) -> set[str]:
    """The tenant's memory ids in one store version."""
    with CollectionSet(data_dir / "store").open(version) as store:
        records, _ = store.shard.scroll(qe.ScrollRequest(limit=10_000, with_payload=True))
    return {r.payload["memory_id"] for r in records if r.payload["tenant"] == tenant}


async def _search_ids(url: str, token: str) -> tuple[set[str], str]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as api:
        found: dict[str, str] = {}
        for q in ("contract renewal Jane", "budget data platform", "quarterly report Monday"):
            r = await api.get("/v1/search", params={"q": q, "k": 20}, headers=_auth(token))
            assert r.status_code == 200, r.text
            found |= {h["memory_id"]: h["text"] for h in r.json()["results"]}
    return set(found), json.dumps(found)


async def test_erasure_means_the_same_live_after_restart_and_after_every_replay(
    topics: BrokerHandle, tmp_path: Path
) -> None:
    tenant = f"gdpr-{uuid.uuid4().hex[:6]}"
    group, port = f"erase-{tenant}", free_port()
    url = f"http://127.0.0.1:{port}"
    await start_group_at_end(topics.bootstrap, group)
    await start_group_at_end(topics.bootstrap, f"{group}-archive", archived_topics())
    started = datetime.now(UTC).isoformat()
    reader = TokenStore(tmp_path / "tokens.db").create(tenant, "reader", clearance=["pii"])
    worker = _serve(topics, tmp_path, group, port)
    got: list[dict] = []
    cursors: list[str] = []
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as api:
            r = await api.post(
                "/v1/subscriptions",
                json={"query": "anything", "min_score": -1.0},
                headers=_auth(reader),
            )
            assert r.status_code == 200, r.text
            await _wait_subscriptions(api, reader, 1)
        stream = asyncio.create_task(_collect(url, reader, got, cursors=cursors))
        await asyncio.sleep(1.0)
        events = [
            Memory(tenant=tenant, agent_id="crm-bot", scope="tenant", payload={"text": t})
            for t in TEXTS
        ]
        last = await _publish(topics.bootstrap, events)
        ids = [str(e.event_id) for e in events]
        janes, others = set(ids[:2]), set(ids[2:])
        await _wait_consumed(topics.bootstrap, group, last)
        assert await _until(lambda: set(ids) <= {x["payload"]["memory_id"] for x in got})
        stream.cancel()
        assert any("Jane Roe" in x["payload"]["text"] for x in got)  # cleared: in clear
        before, _ = await _search_ids(url, reader)
        assert janes <= before

        out = await asyncio.to_thread(
            _cli,
            tmp_path,
            "erase",
            "--tenant",
            tenant,
            "--bootstrap",
            topics.bootstrap,
            *[a for v in JANE for a in ("--subject", v)],
        )
        erased = [e["subject_id"] for e in json.loads(out)["erasures"]]
        assert erased == [subject_id(tenant, v, load_master_key(tmp_path)) for v in JANE]
        keys = KeyStore(tmp_path / "keys.db")
        assert await _until(lambda: all(keys.erased(tenant, s) for s in erased), 120)

        async def check(where: str) -> None:
            """The state every case must end in: Jane's memories gone, the others there,
            none of Jane's values anywhere a reader can reach."""
            found, texts = await _search_ids(url, reader)
            assert not found & janes and others <= found, where
            assert not any(value in texts for value in JANE), where
            history: list[dict] = []
            partition = cursors[0].split(":")[0]
            task = asyncio.create_task(_collect(url, reader, history, cursor=f"{partition}:-1"))
            await asyncio.sleep(3.0)
            task.cancel()
            assert history and not any(v in json.dumps(history) for v in JANE), where

        await check("live")
        # restart
        assert stop_process(worker) == 0
        worker = _serve(topics, tmp_path, group, port)
        await check("after a restart")
        # a replay of the topic, and one of the archive, each into a new version
        summary = json.loads(
            await asyncio.to_thread(
                _cli,
                tmp_path,
                "replay",
                "--topic",
                "memstream.memories",
                "--from",
                started,
                "--bootstrap",
                topics.bootstrap,
                "--into",
                "new",
                "--json",
            )
        )
        assert summary["skipped_erased"] >= 2
        assert _version_ids(tmp_path, summary["version"], tenant) == others
        summary = json.loads(
            await asyncio.to_thread(
                _cli,
                tmp_path,
                "replay",
                "--from-archive",
                str(tmp_path / "archive"),
                "--into",
                "new",
                "--json",
            )
        )
        assert summary["skipped_erased"] >= 2
        # read before the swap: once live, the worker holds the version (one writer)
        assert _version_ids(tmp_path, summary["version"], tenant) == others
        summary = json.loads(
            await asyncio.to_thread(
                _cli,
                tmp_path,
                "replay",
                "--from-archive",
                str(tmp_path / "archive"),
                "--into",
                str(summary["version"]),
                "--swap",
                "--json",
            )
        )
        assert summary["swapped"]
        await asyncio.sleep(2.0)  # the live worker follows the alias
        await check("after replay --from-archive --swap")
    finally:
        assert stop_process(worker) == 0, (tmp_path / "worker.log").read_text()[-3000:]
    # the archive: nothing in clear, and the erased memories' copies cannot be opened
    raw = b"".join(
        zstandard.ZstdDecompressor().decompressobj().decompress(p.read_bytes())
        for p in (tmp_path / "archive").rglob("*.zst")
    )
    assert not any(v.encode() in raw for v in JANE)
    assert all(keys.record_key(tenant, i) is None for i in janes)
    assert all(keys.record_key(tenant, i) is not None for i in others)
