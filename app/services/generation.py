"""Generation runs: sample N responses per prompt, resumable, as a background job."""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Callable

from app.services.context import AppContext, EngineConfig, ServiceError
from app.services.engine_meter import MeteredEngine, engine_model
from app.services.in_flight import run_in_flight
from backend.engines.base import Engine, EngineError, EngineInfo, Sample, SampleParams, logprob_mode_for
from backend.token_stats import token_stats
from storage import jobs as job_rows
from storage import prompts as prompt_rows
from storage import responses as response_rows
from storage import studies
from storage.models import GenerationRun, Job, Prompt, ResponseIn, SamplingSettings

log = logging.getLogger(__name__)


def sample_seed(seed_base: int, prompt_external_id: str, index: int) -> int:
    """The seed of one sample: fixed by the run's seed base, the prompt and the sample's index, so a
    resumed run draws exactly what an uninterrupted one would have.

    >>> sample_seed(7, "q1", 0) == sample_seed(7, "q1", 0) != sample_seed(7, "q1", 1)
    True
    """
    digest = hashlib.sha256(f"{seed_base}:{prompt_external_id}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def _describe(run: GenerationRun) -> str:
    return (f"run #{run.id} ({run.engine}, {run.model_id}, n={run.n}, temperature={run.temperature}, "
            f"top_p={run.top_p}, max_tokens={run.max_tokens}, seed={run.seed_base})")


def resolve_run(ctx: AppContext, study_name: str, settings: SamplingSettings, engine_cfg: EngineConfig,
                new_run: bool) -> GenerationRun:
    """The run these settings belong to: the matching existing run, or a new one.

    Different settings on a study that already has a run need `new_run`, so nobody mixes two
    sampling set-ups in one comparison by accident.
    """
    study = studies.get_study(ctx.db, study_name)
    engine = ctx.engine(engine_cfg)
    info = engine.info()
    if not new_run:
        run = studies.find_run(ctx.db, study.id, info.engine, info.model_id, settings, settings.seed)
        if run is not None:
            return run
        existing = studies.list_runs(ctx.db, study.id)
        if existing:
            raise ServiceError(
                f"study {study.name!r} already has {_describe(existing[-1])}; these settings differ "
                f"({info.engine}, {info.model_id}, n={settings.n}, temperature={settings.temperature}, "
                f"top_p={settings.top_p}, max_tokens={settings.max_tokens}, seed={settings.seed}). "
                "Repeat the same settings to fill what is missing, or pass --new-run to start a second run.")
    seed_base = settings.seed if settings.seed is not None else random.SystemRandom().randrange(2**32)
    return studies.create_run(ctx.db, study.id, info.engine, info.model_id, settings, seed_base,
                              seeds_honoured=info.seeds_honoured,
                              logprob_mode=logprob_mode_for(info, settings.temperature))


def start_generation(ctx: AppContext, study_name: str, settings: SamplingSettings,
                     engine_cfg: EngineConfig | None = None, *, new_run: bool = False,
                     created_by: str | None = None, background: bool = True) -> Job:
    """Create (or reuse) the run and a job that fills its missing samples."""
    engine_cfg = engine_cfg or ctx.default_engine
    params = {"settings": settings.model_dump(), "engine": engine_cfg.engine}
    try:
        run = resolve_run(ctx, study_name, settings, engine_cfg, new_run)
    except EngineError as e:  # unreachable server, missing model: a failed job says why, in the UI too
        study = studies.get_study(ctx.db, study_name)
        job = job_rows.create_job(ctx.db, "generate", study_id=study.id, params=params, created_by=created_by)
        job_rows.update_job(ctx.db, job.id, status="failed", error=str(e))
        return job_rows.get_job(ctx.db, job.id)
    missing = response_rows.missing_samples(ctx.db, run.id, run.study_id, run.n)
    job = job_rows.create_job(ctx.db, "generate", study_id=run.study_id, run_id=run.id, total=len(missing),
                              params=params, created_by=created_by)
    if background:
        ctx.submit_job(job.id, lambda: run_generation(ctx, job.id, engine_cfg))
    else:
        run_generation(ctx, job.id, engine_cfg)
    return job_rows.get_job(ctx.db, job.id)


STOP_AFTER = 3  # failed prompts in a row that stop a generation job from starting more


def run_generation(ctx: AppContext, job_id: int, engine_cfg: EngineConfig) -> None:
    """Fill the run's missing samples. Prompts are sampled as many at a time as the engine serves in
    parallel (`concurrency`, SGLang; one at a time otherwise), and each prompt's samples are stored as soon
    as they exist, in this thread (the database has one writer). A prompt that fails (after the engine's
    own retries) is skipped and named in the job's error, so one prompt the server always refuses (too
    long, say) cannot block the rest on every rerun; `STOP_AFTER` failures in a row (a dead or refusing
    server) stop new prompts from starting, and those already in flight are still stored. So a failure or
    a crash loses at most the prompts in flight, and a rerun samples exactly what is missing."""
    job = job_rows.get_job(ctx.db, job_id)
    run = studies.get_run(ctx.db, job.run_id)
    missing = response_rows.missing_samples(ctx.db, run.id, run.study_id, run.n)
    by_prompt: dict[int, list[int]] = {}
    for prompt_id, index in missing:
        by_prompt.setdefault(prompt_id, []).append(index)
    done = job.total - len(missing)
    job_rows.update_job(ctx.db, job_id, status="running", done=done,
                        message=f"sampling {len(missing)} responses for {len(by_prompt)} prompts")
    failures: list[str] = []
    in_a_row = 0  # failures since the last prompt that succeeded
    cancelled = False
    meter: MeteredEngine | None = None
    info: EngineInfo | None = None
    try:
        info = ctx.engine(engine_cfg).info()
        engine = meter = MeteredEngine(ctx.engine(engine_cfg))
        if (info.engine, info.model_id) != (run.engine, run.model_id):
            raise ServiceError(f"{_describe(run)} was sampled with {run.engine}/{run.model_id}, but the engine "
                               f"now serves {info.engine}/{info.model_id}; start a new run instead")
        mode = logprob_mode_for(info, run.temperature)
        if run.logprob_mode is not None and mode != run.logprob_mode:  # one run, one logprob mode
            raise ServiceError(f"{_describe(run)} has {run.logprob_mode} logprobs, but the engine now gives "
                               f"{mode} ones (is SGLANG_RETURN_ORIGINAL_LOGPROB / --sglang-raw-logprobs set as "
                               "before?); set it as before, or start a new run")
        vocab = getattr(engine, "vocab_size", None)
        width = max(1, int(getattr(engine, "concurrency", 1) or 1))
        params = SampleParams(temperature=run.temperature, top_p=run.top_p, max_tokens=run.max_tokens)
        def prepare(item: tuple[int, list[int]]) -> tuple[tuple[Prompt, list[int], list[int]],
                                                          Callable[[], list[Sample]]]:
            prompt = prompt_rows.get_prompt(ctx.db, item[0])
            seeds = [sample_seed(run.seed_base, prompt.external_id, i) for i in item[1]]
            return (prompt, item[1], seeds), lambda: _sample_prompt(engine, prompt, len(seeds), params,
                                                                    run.top_logprobs, seeds)

        def store(item: tuple[Prompt, list[int], list[int]], samples: list[Sample]) -> None:
            nonlocal done, in_a_row
            prompt, indices, seeds = item
            in_a_row = 0
            response_rows.insert_responses(ctx.db, [
                ResponseIn(prompt_id=prompt.id, run_id=run.id, sample_index=i, origin="sampled",
                           text=s.text, engine=info.engine, model_id=info.model_id, seed=seed,
                           params={"temperature": run.temperature, "top_p": run.top_p,
                                   "max_tokens": run.max_tokens, "seed": seed},
                           finish_reason=s.finish_reason,
                           stats=token_stats(s.tokens, vocab_size=vocab, logprob_mode=mode))
                for i, seed, s in zip(indices, seeds, samples)])
            done += len(indices)
            job_rows.update_job(ctx.db, job_id, done=done, message=f"{done} / {job.total} responses")

        def fail(item: tuple[Prompt, list[int], list[int]], e: Exception, in_flight: int) -> None:
            nonlocal in_a_row
            prompt = item[0]
            if isinstance(e, EngineError):
                failures.append(f"prompt {prompt.external_id!r}: {e}")
            else:  # a bug: the other prompts' samples are still worth keeping
                log.error("sampling prompt %s failed", prompt.external_id, exc_info=e)
                failures.append(f"prompt {prompt.external_id!r}: {type(e).__name__}: {e}")
            in_a_row += 1
            if in_a_row >= STOP_AFTER and in_flight:
                job_rows.update_job(ctx.db, job_id, done=done,
                                    message=f"stopping after a failure; {in_flight} prompts still in flight")

        def stop() -> bool:
            nonlocal cancelled
            cancelled = cancelled or ctx.cancelled(job_id)
            return cancelled or in_a_row >= STOP_AFTER

        run_in_flight(width, by_prompt.items(), prepare, store, fail, stop, f"generate-{job_id}")
    except (EngineError, ServiceError) as e:
        failures.insert(0, str(e))
    finally:  # before the final status: an ended job always has its figures
        if meter is not None and info is not None:
            job_rows.record_figures(ctx.db, job_id, engine_model(info), meter.figures())
    if failures:
        more = f" (and {len(failures) - 1} more failed prompts)" if len(failures) > 1 else ""
        job_rows.update_job(ctx.db, job_id, status="failed", done=done,
                            error=f"{failures[0]}{more} ({done} of {job.total} responses are stored; "
                                  "run again to finish)")
    elif cancelled:
        job_rows.update_job(ctx.db, job_id, status="cancelled", done=done, message=f"cancelled after {done} samples")
    else:
        job_rows.update_job(ctx.db, job_id, status="done", done=done, message=f"{done} / {job.total} responses")


def _sample_prompt(engine: Engine, prompt: Prompt, n: int, params: SampleParams, top_logprobs: int,
                   seeds: list[int]) -> list[Sample]:
    """One prompt's samples; a sample the engine aborted fails the prompt (it is sampled again on a rerun)."""
    samples = engine.sample([prompt_rows.chat(prompt)], n, params, top_logprobs=top_logprobs, seeds=[seeds])[0]
    failed = [s for s in samples if s.finish_reason in ("abort", "error")]
    if failed:
        raise EngineError(f"the engine aborted a sample: {failed[0].error}")
    return samples
