"""Client-side validation happens before anything is sent: no broker needed to see it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from memstream import Client, EventTooLarge


async def test_bad_scope_is_refused_before_sending() -> None:
    client = Client("127.0.0.1:1", tenant="acme", agent_id="a1")
    with pytest.raises(ValidationError, match="scope"):
        await client.publish_memory("x", scope="the whole world")


async def test_bad_feedback_outcome_is_refused() -> None:
    client = Client("127.0.0.1:1", tenant="acme", agent_id="a1")
    with pytest.raises(ValidationError, match="outcome"):
        await client.publish_feedback("01a21282-27da-7215-8f25-f66f28f9d876", "meh")


async def test_too_large_event_is_refused() -> None:
    client = Client("127.0.0.1:1", tenant="acme", agent_id="a1", max_event_bytes=2048)
    with pytest.raises(EventTooLarge, match="limit is 2048"):
        await client.publish_observation("y" * 4096)


async def test_unstarted_client_says_so() -> None:
    client = Client("127.0.0.1:1", tenant="acme", agent_id="a1")
    with pytest.raises(RuntimeError, match="not started"):
        await client.publish_memory("fine")
