"""How commands find a running stack (issue 12): the state file in the data dir, the
per-user registry, and tokens that name only what exists."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from memstream.services.auth import InvalidIdentity, TokenStore
from memstream.services.stack import StackState, find_stack, running_stacks, stack_settings
from memstream.settings import Settings


def _state(data_dir: Path, pid: int) -> StackState:
    data_dir.mkdir(parents=True, exist_ok=True)
    return StackState(
        data_dir=str(data_dir),
        bootstrap="127.0.0.1:19092",
        api_url="http://127.0.0.1:18700",
        broker="apache-kafka 4.4.0",
        persistent=True,
        epoch="abc",
        up_pid=pid,
    )


@pytest.fixture(autouse=True)
def _own_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMSTREAM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MEMSTREAM_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)


def test_a_live_stack_is_found_from_its_data_dir_or_from_anywhere(tmp_path: Path) -> None:
    state = _state(tmp_path / "stack", os.getpid())  # this process stands for `up`
    state.write()
    mode = (tmp_path / "stack" / "stack.json").stat().st_mode
    assert mode & 0o077 == 0
    assert find_stack(Settings(data_dir=tmp_path / "stack")) == state
    # no data dir chosen, none here: the only running stack is the one meant
    found = find_stack(Settings())
    assert found is not None and found.bootstrap == "127.0.0.1:19092"
    settings, _ = stack_settings(Settings())
    assert settings.data_dir == tmp_path / "stack" and settings.kafka_bootstrap
    # a chosen data dir that holds no stack means no stack, not someone else's
    assert find_stack(Settings(data_dir=tmp_path / "elsewhere")) is None
    state.remove()
    assert find_stack(Settings()) is None


def test_a_dead_stack_is_not_found_and_its_registry_entry_goes(tmp_path: Path) -> None:
    dead = _state(tmp_path / "dead", 2**22 + 12345)  # no such pid
    dead.write()
    assert find_stack(Settings(data_dir=tmp_path / "dead")) is None
    assert running_stacks() == []
    assert not list((tmp_path / "cache" / "stacks").glob("*.json"))


def test_tokens_name_known_clearances_and_valid_ids_only(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.db")
    assert store.create("acme", "a", ["ops"], ["pii", "admin"]).startswith("ms_")
    for tenant, agent, clearance in [("", "a", []), ("acme", "", []), ("acme", "a", ["root"])]:
        with pytest.raises(InvalidIdentity):
            store.create(tenant, agent, [], clearance)
