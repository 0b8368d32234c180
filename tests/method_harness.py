"""Shared set-ups for method tests: exact runs on the scripted engine, small runs on the real model."""

from __future__ import annotations

from backend.engines.base import Engine
from backend.methods.base import MethodInput, ResponseInput
from backend.methods.registry import get_method
from app.services import scoring
from app.services.context import AppContext
from storage.db import Database
from storage.models import StudyConfig
from storage import studies
from tests.builders import make_prompt, make_responses


def method_input(texts: list[str], *, question: str = "What is 2 + 2?", reference: str | None = None,
                 first_id: int = 1, **kw) -> MethodInput:
    """A MethodInput with responses numbered first_id, first_id + 1, ..."""
    return MethodInput(prompt_id=1, prompt_external_id="q1", messages=[{"role": "user", "content": question}],
                       reference=reference,
                       responses=[ResponseInput(id=first_id + i, text=t) for i, t in enumerate(texts)], **kw)


def score_study(db: Database, engine: Engine, method_id: str, texts: list[str], *,
                question: str = "What is 2 + 2? Answer with a number.", reference: str | None = "4",
                answer_extraction: str = "none") -> tuple[AppContext, int, int]:
    """One prompt with `texts` as its responses, scored by one method through the real service.

    Returns (ctx, judgments written by the first run, judgments written by a rerun)."""
    ctx = AppContext(db=db, engine_factory=lambda cfg: engine)
    study = studies.create_study(db, "m", config=StudyConfig(answer_extraction=answer_extraction))
    pid = make_prompt(db, study.id, "q1", question)
    if reference is not None:
        with db.write() as cur:
            cur.execute("UPDATE prompt SET reference = ? WHERE id = ?", [reference, pid])
    make_responses(db, pid, texts)
    study = studies.get_study(db, "m")
    method = get_method(method_id)
    info = engine.info()
    first = scoring.score_prompt(ctx, study, pid, method, engine, info) or 0
    again = scoring.score_prompt(ctx, study, pid, method, engine, info) or 0
    return ctx, first, again
