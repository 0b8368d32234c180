"""Model iterations: which model a new one was trained from, and on which export (Self-Rewarding, CREAM).

`critlab generate` / `critlab score` with --parent-model / --trained-on-export link the model of the engine
they run with before their job starts, so a refused link starts no job."""

from __future__ import annotations

from backend.engines.base import EngineError
from app.services.context import AppContext, EngineConfig, ServiceError
from storage import model_registry
from storage.models import ModelIdentity


def link_model(ctx: AppContext, engine_cfg: EngineConfig | None, parent_model_id: str | None,
               trained_on_export_id: int | None) -> ModelIdentity | None:
    """Record the lineage of the model `engine_cfg` runs (None: nothing given, nothing done). The engine is
    loaded here, as the job would load it, because a GGUF's model id carries its SHA-256 and is only known
    then."""
    if parent_model_id is None and trained_on_export_id is None:
        return None
    try:
        model_id = ctx.engine(engine_cfg).info().model_id
    except EngineError as e:
        raise ServiceError(f"cannot load the model to link it to its parent: {e}") from e
    try:
        return model_registry.set_lineage(ctx.db, model_id, parent_model_id, trained_on_export_id)
    except model_registry.LineageError as e:
        raise ServiceError(str(e)) from e
