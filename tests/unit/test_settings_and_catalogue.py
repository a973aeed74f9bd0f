from __future__ import annotations

from pathlib import Path

import pytest

from memstream.schemas.topics import CATALOGUE, INPUT_KINDS, SUBSCRIPTIONS, TOPICS
from memstream.settings import Settings


def test_env_overrides_toml_overrides_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert Settings().partitions == 3
    (tmp_path / "memstream.toml").write_text("partitions = 6\nbatch_size = 64\n")
    assert (Settings().partitions, Settings().batch_size) == (6, 64)
    monkeypatch.setenv("MEMSTREAM_PARTITIONS", "9")
    assert (Settings().partitions, Settings().batch_size) == (9, 64)


def test_bad_setting_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMSTREAM_BROKER_KIND", "rabbit")
    with pytest.raises(ValueError, match="broker_kind"):
        Settings()


def test_catalogue_names_are_unique_and_inputs_are_in_it() -> None:
    assert len(TOPICS) == len(CATALOGUE) == 13
    assert set(INPUT_KINDS) <= set(TOPICS)
    assert all(name.startswith("memstream.") for name in TOPICS)


def test_compaction_only_where_supported() -> None:
    assert SUBSCRIPTIONS.broker_config(True)["cleanup.policy"] == "compact"
    assert "cleanup.policy" not in SUBSCRIPTIONS.broker_config(False)
    assert all(
        "cleanup.policy" not in spec.broker_config(True)
        for spec in CATALOGUE
        if spec is not SUBSCRIPTIONS
    )
