"""Self-scoring: run the model's self-evaluation methods over a study, idempotent and resumable.

For every (prompt, method) the service builds the method's input from storage, runs the method
unless `method_run` says this exact response set was already scored by this model and method
version, and stores the verdicts, any checklist or new responses and the `method_run` record in
one transaction.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

from app.services.context import AppContext, EngineConfig, ServiceError
from app.services.engine_meter import MeteredEngine, engine_model
from app.services.in_flight import run_in_flight
from app.services.labelling import label_sources
from backend.engines.base import Engine, EngineError, EngineInfo
from backend.methods.base import (
    ChecklistItemInput,
    Method,
    MethodInput,
    MethodResult,
    ResponseInput,
    method_seed,
)
from backend.methods.checklist import ChecklistMethod
from backend.methods.registry import get_method, parse_method_list
from storage import checklists, judgments, method_runs, prompts, responses, studies
from storage import jobs as job_rows
from storage.models import MAX_RESPONSES, Job, JudgmentIn, Response, ResponseIn, Study


def _response_input(r: Response) -> ResponseInput:
    return ResponseInput(**r.model_dump(include=set(ResponseInput.model_fields)))


def method_input(ctx: AppContext, study: Study, prompt_id: int, method: Method, info: EngineInfo) -> MethodInput:
    prompt = prompts.get_prompt(ctx.db, prompt_id)
    shown = sorted(responses.label_set(ctx.db, prompt_id, label_sources(ctx.db, study), study.id)[:MAX_RESPONSES],
                   key=lambda r: r.id)
    checklist = checklists.get_checklist(ctx.db, prompt_id, author=info.model_id, method="checklist",
                                         version=ChecklistMethod.checklist_version)
    # The top-k the shown responses were sampled with: teacher-forced scoring asks for as many alternatives.
    runs = {r.run_id for r in shown}
    ks = [run.top_logprobs for run in studies.list_runs(ctx.db, study.id, include_live=True) if run.id in runs]
    return MethodInput(
        prompt_id=prompt_id, prompt_external_id=prompt.external_id, messages=prompts.chat(prompt),
        reference=prompt.reference, responses=[_response_input(r) for r in shown],
        derived=[_response_input(r) for r in responses.derived_responses(ctx.db, prompt_id)],
        checklist=[ChecklistItemInput(id=i.id, question=i.question) for i in checklist.items] if checklist else [],
        answer_extraction=study.config.answer_extraction, seed=method_seed(prompt.external_id, method.id),
        context_length=info.context_length, **({"top_logprobs": max(ks)} if ks else {}))


def _idempotency_key(judge: str, method: str, version: str, parts: tuple) -> str:
    return hashlib.sha256(f"{judge}|{method}|{version}|{parts}".encode()).hexdigest()[:40]


def verdict_rows(study_id: int, prompt_id: int, judge: str, method: Method, result: MethodResult,
                 item_ids: list[int]) -> list[JudgmentIn]:
    """A method's verdicts as judgments of `judge`; `item_ids[i]` is the id of checklist item i."""
    rows = []
    for v in result.verdicts:
        item = item_ids[v.checklist_item] if v.checklist_item is not None else None
        rows.append(JudgmentIn(
            study_id=study_id, prompt_id=prompt_id, judge_kind="model", judge=judge, method=v.method,
            method_version=method.version, template_version=f"{method.id}.v{method.version}",
            response_id=v.response_id, response_b_id=v.response_b_id, checklist_item_id=item, variant=v.variant,
            shown_order=v.shown_order, value=v.value, label=v.label, prob=v.prob, dist=v.dist,
            rationale=v.rationale, source="model", status=v.status, error=v.error,
            idempotency_key=_idempotency_key(judge, v.method, method.version,
                                             (prompt_id, v.response_id, v.response_b_id, item, v.variant))))
    return rows


def store_result(ctx: AppContext, study: Study, inp: MethodInput, method: Method, info: EngineInfo,
                 result: MethodResult, duration_ms: int) -> int:
    """Store one method run in one transaction; returns the number of judgments written."""
    judge = info.model_id
    with ctx.db.write():
        item_ids = [i.id for i in inp.checklist]
        if result.checklist is not None:
            item_ids = [i.id for i in checklists.create_checklist(
                ctx.db, inp.prompt_id, judge, result.checklist, method=method.id,
                version=getattr(method, "checklist_version", method.version)).items]
        # A rerun on a changed response set writes the same revisions again (fixed seeds): keep one.
        known = {(r.parent_id, r.origin, r.text) for r in responses.derived_responses(ctx.db, inp.prompt_id)}
        fresh = [r for r in result.new_responses if (r.parent_id, r.origin, r.text) not in known]
        if fresh:
            responses.insert_responses(ctx.db, [
                ResponseIn(prompt_id=inp.prompt_id, origin=r.origin, parent_id=r.parent_id, text=r.text,
                           engine=info.engine, model_id=info.model_id,
                           metadata={**r.metadata, "method": method.id, "method_version": method.version})
                for r in fresh])
        written = judgments.record_new(ctx.db, verdict_rows(study.id, inp.prompt_id, judge, method, result, item_ids))
        failed = [v.error for v in result.verdicts if v.status == "failed"]
        method_runs.mark_done(ctx.db, inp.prompt_id, method.id, method.version, judge, input_key(method, inp),
                              status="failed" if failed and len(failed) == len(result.verdicts) else "ok",
                              error=failed[0] if failed else None, duration_ms=duration_ms)
    return len(written)


def input_key(method: Method, inp: MethodInput) -> str:
    ids = [r.id for r in inp.responses] + ([r.id for r in inp.derived] if method.uses_derived else [])
    return method_runs.responses_key(ids)


def score_prompt(ctx: AppContext, study: Study, prompt_id: int, method: Method, engine: Engine,
                 info: EngineInfo) -> int | None:
    """Run one method on one prompt unless already done; returns judgments written (None = skipped)."""
    inp = method_input(ctx, study, prompt_id, method, info)
    if not inp.responses:
        return None
    key = input_key(method, inp)
    if method_runs.is_done(ctx.db, prompt_id, method.id, method.version, info.model_id, key):
        return None
    t0 = time.perf_counter()
    result = method.run(inp, engine)
    return store_result(ctx, study, inp, method, info, result, int((time.perf_counter() - t0) * 1000))


def chosen_methods(method_ids: list[str] | str | None) -> list[str]:
    """Method ids from a list or an "id,id" string (None: the default list), or ServiceError naming the bad one."""
    try:
        return parse_method_list(method_ids if isinstance(method_ids, str) or method_ids is None
                                 else ",".join(method_ids))
    except ValueError as e:
        raise ServiceError(str(e)) from e


def start_scoring(ctx: AppContext, study_name: str, method_ids: list[str] | str | None = None,
                  engine_cfg: EngineConfig | None = None, *, created_by: str | None = None,
                  background: bool = True) -> Job:
    """A job that runs the methods over every prompt of the study that has responses."""
    study = studies.get_study(ctx.db, study_name)
    ids = chosen_methods(method_ids)
    engine_cfg = engine_cfg or ctx.default_engine
    prompt_ids = [p.id for p in prompts.list_prompts(ctx.db, study.id)]
    job = job_rows.create_job(ctx.db, "score", study_id=study.id, total=len(prompt_ids) * len(ids),
                              params={"methods": ids, "engine": engine_cfg.engine}, created_by=created_by)

    def work() -> None:
        run_scoring(ctx, job.id, study, prompt_ids, ids, engine_cfg)

    if background:
        ctx.submit_job(job.id, work)
    else:
        work()
    return job_rows.get_job(ctx.db, job.id)


def run_scoring(ctx: AppContext, job_id: int, study: Study, prompt_ids: list[int], ids: list[str],
                engine_cfg: EngineConfig) -> None:
    progress = _Progress(ctx, job_id, len(prompt_ids) * len(ids))
    job_rows.update_job(ctx.db, job_id, status="running", message=f"scoring with {', '.join(ids)}")
    meter: MeteredEngine | None = None
    info: EngineInfo | None = None

    def finish(**fields: Any) -> None:
        if meter is not None and info is not None:  # before the status: an ended job always has its figures
            job_rows.record_figures(ctx.db, job_id, engine_model(info), meter.figures())
        job_rows.update_job(ctx.db, job_id, done=progress.done, **fields)

    try:
        engine = ctx.engine(engine_cfg)
        info = engine.info()
        meter = MeteredEngine(engine)
        # Method by method, so a study's cheap signals are all there before the slow ones start.
        for method_id in ids:
            if not _score_method(ctx, job_id, study, prompt_ids, get_method(method_id), meter, info, progress):
                finish(status="cancelled")
                return
    except (EngineError, ServiceError) as e:
        finish(status="failed",
               error=f"{e} ({progress.done} of {progress.total} runs are stored; run again to finish)")
        return
    except BaseException:
        finish()  # the job runner marks it failed; what was measured is kept
        raise
    finish(status="done", message=f"{progress.done} / {progress.total} (prompt, method) runs, "
                                  f"{progress.written} new judgments")


class _Progress:
    def __init__(self, ctx: AppContext, job_id: int, total: int) -> None:
        self.ctx, self.job_id, self.total, self.done, self.written = ctx, job_id, total, 0, 0

    def step(self, method_id: str, written: int) -> None:
        self.done += 1
        self.written += written
        job_rows.update_job(self.ctx.db, self.job_id, done=self.done,
                            message=f"{method_id}: {self.done} / {self.total} (prompt, method) runs, "
                                    f"{self.written} judgments")


def _timed_run(method: Method, inp: MethodInput, engine: Engine) -> tuple[MethodResult, int]:
    t0 = time.perf_counter()
    result = method.run(inp, engine)
    return result, int((time.perf_counter() - t0) * 1000)


def _score_method(ctx: AppContext, job_id: int, study: Study, prompt_ids: list[int], method: Method, engine: Engine,
                  info: EngineInfo, progress: _Progress) -> bool:
    """Run one method over the prompts, as many at once as the engine takes requests (an SGLang server's
    concurrency; one on the embedded engine, whose work queue is serial anyway). Inputs are read and
    results stored in this thread: the database has one writer. The first failure stops new prompts;
    those in flight are still stored. Returns False when the job was cancelled."""
    failure: EngineError | ServiceError | None = None
    cancelled = False

    def prepare(prompt_id: int) -> tuple[MethodInput, Callable[[], tuple[MethodResult, int]]] | None:
        inp = method_input(ctx, study, prompt_id, method, info)
        if not inp.responses or method_runs.is_done(ctx.db, prompt_id, method.id, method.version, info.model_id,
                                                    input_key(method, inp)):
            progress.step(method.id, 0)
            return None
        return inp, lambda: _timed_run(method, inp, engine)

    def store(inp: MethodInput, timed: tuple[MethodResult, int]) -> None:
        progress.step(method.id, store_result(ctx, study, inp, method, info, *timed))

    def fail(_: MethodInput, e: Exception, _in_flight: int) -> None:
        nonlocal failure
        if not isinstance(e, (EngineError, ServiceError)):
            raise e  # a bug, not a failing engine: the job ends with it once the calls in flight are done
        failure = failure or e

    def stop() -> bool:
        nonlocal cancelled
        cancelled = cancelled or ctx.cancelled(job_id)
        return cancelled or failure is not None

    run_in_flight(max(1, int(getattr(engine, "concurrency", 1) or 1)), prompt_ids, prepare, store, fail, stop,
                  f"score-{job_id}")
    if failure is not None:
        raise failure
    return not cancelled
