"""Student models distilled from a team's memories."""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, HTTPException, Path, Query

from memstream.schemas.answers import ModelVersion
from memstream.services.api.backend import Backend
from memstream.services.api.identity import Reader


def add_model_routes(api: FastAPI, backend: Backend) -> None:
    @api.get("/v1/models/{name}", response_model=ModelVersion, response_model_exclude_none=True)
    async def student_model(
        name: Annotated[str, Path(min_length=1, max_length=128)],
        who: Reader,
        version: Annotated[int | None, Query(ge=1, description="default: the current one")] = None,
        include_model: Annotated[bool, Query(description="the ONNX bytes, base64")] = True,
    ) -> ModelVersion:
        """A student policy distilled from the team's experience (docs/distillation.md): its
        ONNX model (`observation` float32 [N, d] -> `probabilities`), version and lineage.
        Members of the model's team only; another tenant's models do not exist here."""
        try:
            found = backend.student(who, name, version, include_model)
        except PermissionError as err:
            raise HTTPException(403, str(err)) from err
        if found is None:
            raise HTTPException(404, f"no model {name!r} (or no such version) in your tenant")
        return found
