"""Worker roles: parsing, what each set does, and the consumer group each set gets."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from memstream.settings import Settings
from memstream.streams.roles import ROLES, Roles


def test_all_is_every_role_and_keeps_the_group() -> None:
    roles = Roles.parse("all")
    assert roles.everything and roles.names == frozenset(ROLES)
    assert roles.consumer_group("memstream-worker") == "memstream-worker"
    assert not roles.reads_indexed()  # stores and matches in the pipeline's own pass
    assert Settings().worker_roles() == roles


@pytest.mark.parametrize(
    ("text", "group", "reads_indexed", "needs_store"),
    [
        ("model", "g", False, False),
        ("sink", "g-sink", True, True),
        ("match", "g-match", True, False),
        ("api", "g-api", False, True),
        ("sink, match,api", "g-sink-match-api", True, True),
        ("api,sink,match", "g-sink-match-api", True, True),
        ("model,sink", "g", False, True),
    ],
)
def test_each_set_of_roles(text: str, group: str, reads_indexed: bool, needs_store: bool) -> None:
    roles = Roles.parse(text)
    assert roles.consumer_group("g") == group
    assert roles.reads_indexed() is reads_indexed
    assert roles.needs_store is needs_store


@pytest.mark.parametrize("bad", ["", "modl", "all,model", " , "])
def test_unknown_or_mixed_roles_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        Roles.parse(bad)
    with pytest.raises(ValidationError):
        Settings(role=bad)


def test_settings_normalise_the_role() -> None:
    assert Settings(role="api, sink").role == "sink,api"
    assert Settings(role="model,sink,match,api").role == "all"
