"""The benches' starting point: the bundled sample study's first prompts, sampled on the embedded engine."""

from __future__ import annotations

import os
import time
from importlib import resources

from app.services import generation
from app.services.context import AppContext
from app.services.ops import run_op
from storage.models import SamplingSettings

STUDY = "sample"


def sample_study(ctx: AppContext, db_path: str, prompts: int, n: int, max_tokens: int) -> tuple[int, float]:
    """Import the first `prompts` bundled sample prompts as study `sample` (through a file beside `db_path`, as
    `critlab import prompts` reads one) and sample `n` responses each with seed 0; (responses, seconds)."""
    lines = resources.files("app.data").joinpath("sample_prompts.jsonl").read_text().splitlines()[:prompts]
    sub = os.path.join(os.path.dirname(db_path), "prompts.jsonl")
    with open(sub, "w") as f:
        f.write("\n".join(lines) + "\n")
    run_op(ctx, "bench", "import_prompts", {"study": STUDY, "path": sub})
    t = time.perf_counter()
    job = generation.start_generation(ctx, STUDY, SamplingSettings(n=n, max_tokens=max_tokens, seed=0),
                                      background=False)
    return job.done, time.perf_counter() - t
