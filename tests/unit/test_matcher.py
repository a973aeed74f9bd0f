from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import numpy as np

from memstream.schemas import Indexed, Subscription
from memstream.services.matcher import SubscriptionIndex

DIM = 384


def _unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def _sub(
    agent: str, sub_id: str, *, tenant: str = "t", teams: tuple[str, ...] = (), **payload: object
) -> Subscription:
    return Subscription(
        tenant=tenant,
        agent_id=agent,
        payload={"subscription_id": sub_id, "query": "q", "teams": list(teams), **payload},
    )


def _record(
    agent: str = "writer", scope: str = "tenant", tenant: str = "t", **payload: object
) -> Indexed:
    base = {
        "source_kind": "memory",
        "text": "a memory",
        "vector_codec": "rlm4-384-v1",
        "vector_b64": base64.b64encode(bytes(192)).decode(),
        "usefulness": 0.5,
        "novelty": 1.0,
        "features": [0.0],
        "models": {},
    }
    return Indexed(tenant=tenant, agent_id=agent, scope=scope, payload={**base, **payload})


def test_visibility_own_memories_filters_and_threshold() -> None:
    index = SubscriptionIndex()
    q = _unit(1)
    index.upsert(_sub("ops-member", "s1", teams=("ops",), min_score=0.5), q)
    index.upsert(_sub("outsider", "s2", min_score=0.5), q)
    index.upsert(_sub("writer", "s3", min_score=0.5), q)  # the author itself
    index.upsert(_sub("picky", "s4", min_score=0.5, filters={"tags": ["billing"]}), q)
    index.upsert(_sub("strict", "s5", min_score=0.999), q)
    index.upsert(_sub("other-tenant", "s6", tenant="u", min_score=0.5), q)
    near = q * 0.9 + _unit(2) * 0.1
    near /= np.linalg.norm(near)

    team = index.match(_record(scope="team:ops"), near)
    assert [d.payload.recipient for d in team] == ["ops-member"]
    everyone = index.match(_record(scope="tenant", tags=["billing"]), near)
    assert sorted(d.payload.recipient for d in everyone) == ["ops-member", "outsider", "picky"]
    assert index.match(_record(scope="tenant"), _unit(3)) == []  # unrelated memory


def test_cancel_expiry_and_rate_limit() -> None:
    clock = [0.0]
    index = SubscriptionIndex(clock=lambda: clock[0])
    q = _unit(1)
    index.upsert(_sub("a", "s1", min_score=0.0, max_per_minute=2), q)
    index.upsert(
        _sub("b", "s2", min_score=0.0, expires_at=datetime.now(UTC) - timedelta(seconds=1)), q
    )
    sent = [len(index.match(_record(), q)) for _ in range(3)]
    assert sent == [1, 1, 0]  # b expired; a limited to 2 a minute
    clock[0] = 61.0
    assert len(index.match(_record(), q)) == 1
    index.upsert(_sub("a", "s1", active=False), q)
    assert index.match(_record(), q) == [] and len(index) == 1
