"""What a scoring job would cost before it starts: engine calls per method for the prompts whose
scores are not stored yet, and the time they take at the speed this engine's last finished jobs had.

Calls come from each method's `planned_calls` on the same inputs the scoring job builds (minus the
texts), and "already stored" is the same `method_run` check the job makes, so a rerun shows 0 calls.
Seconds per call come from the job of this engine and model that ended last having made calls of that
kind (reads and generations are measured apart: a generation takes 10-100x a read); before any such job
the time is unknown.
"""

from __future__ import annotations

from pydantic import BaseModel

from app.services.context import AppContext, EngineConfig
from app.services.engine_meter import engine_model
from app.services.labelling import label_sources
from app.services.scoring import chosen_methods, input_key
from backend.methods.base import ChecklistItemInput, EngineCalls, MethodInput, ResponseInput, method_seed
from backend.methods.checklist import ChecklistMethod
from backend.methods.registry import get_method
from storage import checklists, jobs, method_runs, prompts, responses, studies
from storage.models import MAX_RESPONSES


class MethodEstimate(BaseModel):
    method: str
    prompts: int  # prompts with responses to judge
    stored: int  # of those, already scored by this model and method version
    reads: int
    generations: int
    seconds: float | None  # None: no finished job has measured a kind of call this method makes


class Rate(BaseModel):
    """Seconds per call of one kind, as measured on one job."""

    seconds_per_call: float
    job_id: int
    calls: int


class ScoreEstimate(BaseModel):
    study: str
    engine: str  # "engine:model id"
    methods: list[MethodEstimate]
    read_rate: Rate | None
    generation_rate: Rate | None
    n_prompts: int = 0
    without_responses: int = 0  # prompts not counted: no responses yet (a generation job may still be running)

    @property
    def reads(self) -> int:
        return sum(m.reads for m in self.methods)

    @property
    def generations(self) -> int:
        return sum(m.generations for m in self.methods)

    @property
    def seconds(self) -> float | None:
        """The whole job, or None when a kind of call it needs has no measured speed yet."""
        parts = [m.seconds for m in self.methods]
        return None if any(p is None for p in parts) else sum(p for p in parts if p is not None)


def _seconds(calls: EngineCalls, read: Rate | None, generation: Rate | None) -> float | None:
    total = 0.0
    for n, rate in ((calls.reads, read), (calls.generations, generation)):
        if n:
            if rate is None:
                return None
            total += n * rate.seconds_per_call
    return total


def _rate(ctx: AppContext, model: str, kind: str) -> Rate | None:
    found = jobs.latest_rate(ctx.db, model, kind)
    if found is None:
        return None
    job_id, tally = found
    per_call = tally.per_call()
    return Rate(seconds_per_call=per_call, job_id=job_id, calls=tally.calls) if per_call is not None else None


def _response(r: responses.ResponseFigures) -> ResponseInput:
    return ResponseInput(text="", **r.model_dump(include=set(ResponseInput.model_fields) - {"text"}))


def estimate_scoring(ctx: AppContext, study_name: str, method_ids: list[str] | str | None = None,
                     engine_cfg: EngineConfig | None = None) -> ScoreEstimate:
    """The calls and time `start_scoring(study_name, method_ids, engine_cfg)` would need now."""
    study = studies.get_study(ctx.db, study_name)
    ids = chosen_methods(method_ids)
    info = ctx.engine(engine_cfg or ctx.default_engine).info()
    model = engine_model(info)
    sets = responses.study_label_sets(ctx.db, study.id, label_sources(ctx.db, study))
    done = method_runs.done_keys(ctx.db, study.id, info.model_id)
    items = checklists.item_counts(ctx.db, study.id, author=info.model_id, method=ChecklistMethod.id,
                                   version=ChecklistMethod.checklist_version)
    base = []  # one input per prompt with responses, as scoring.method_input builds it (without texts)
    all_prompts = prompts.list_prompts(ctx.db, study.id)
    for p in all_prompts:
        label, derived = sets.get(p.id, ([], []))
        shown = sorted(label[:MAX_RESPONSES], key=lambda r: r.id)
        if not shown:
            continue
        base.append(MethodInput(
            prompt_id=p.id, prompt_external_id=p.external_id, messages=prompts.chat(p), reference=p.reference,
            responses=[_response(r) for r in shown], derived=[_response(r) for r in derived],
            checklist=[ChecklistItemInput(id=0, question="") for _ in range(items.get(p.id, 0))],
            answer_extraction=study.config.answer_extraction, context_length=info.context_length))
    read, generation = _rate(ctx, model, "reads"), _rate(ctx, model, "generations")
    out = []
    for method_id in ids:
        method = get_method(method_id)
        stored, reads, gens = 0, 0, 0
        for inp in base:
            if (inp.prompt_id, method.id, method.version, input_key(method, inp)) in done:
                stored += 1
                continue
            calls = method.planned_calls(inp.model_copy(update={"seed": method_seed(inp.prompt_external_id,
                                                                                       method.id)}))
            reads += calls.reads
            gens += calls.generations
        out.append(MethodEstimate(method=method.id, prompts=len(base), stored=stored, reads=reads, generations=gens,
                                  seconds=_seconds(EngineCalls(reads, gens), read, generation)))
    return ScoreEstimate(study=study.name, engine=model, methods=out, read_rate=read, generation_rate=generation,
                         n_prompts=len(all_prompts), without_responses=len(all_prompts) - len(base))
