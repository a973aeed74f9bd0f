"""Write the JSON Schema of every event kind to `schemas/`, for producers in other languages."""

from __future__ import annotations

import json
from pathlib import Path

from memstream.schemas.events import EVENT_MODELS


def render_schemas() -> dict[str, str]:
    """File name -> JSON text, one file per event kind; deterministic so a test can diff it."""
    return {
        f"{kind}.schema.json": json.dumps(model.model_json_schema(), indent=2, sort_keys=True)
        + "\n"
        for kind, model in sorted(EVENT_MODELS.items())
    }


def export_schemas(directory: Path) -> list[Path]:
    """Write the files of `render_schemas` into `directory`; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_schemas().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written


def stale_schemas(directory: Path) -> list[str]:
    """Names of files in `directory` that differ from (or are missing against) the models."""
    stale = [
        name
        for name, text in render_schemas().items()
        if not (directory / name).is_file() or (directory / name).read_text() != text
    ]
    expected = set(render_schemas())
    stale += sorted(p.name for p in directory.glob("*.schema.json") if p.name not in expected)
    return stale
