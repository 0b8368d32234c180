"""Bootstrap intervals say how many resamples they rest on (finding 2 of the statistics issue): every interval
carries `n_valid`; below 95% valid resamples it is marked, below 50% it is withheld with the reason."""

from __future__ import annotations

import uuid

import numpy as np
import polars as pl

from storage import judgments
from storage.analysis.report import build_report, interval_text, report_markdown
from storage.analysis.report.build import _jsonable
from storage.analysis.report.figures import _figure
from storage.analysis.report.intervals import _Boot
from storage.db import Database
from storage.models import JudgmentIn, StudyConfig
from storage.studies import create_study
from tests.builders import make_prompt, make_responses

N_BOOT, SEED = 400, 3


def _pairwise_study(db: Database) -> int:
    """Ten prompts; two annotators both say 'first' on every pair except prompt q5, where both say 'tie'.
    Cohen's κ between them is defined only in resamples that draw q5 (elsewhere both used one label)."""
    s = create_study(db, "iv", config=StudyConfig(questions=["pairwise"]))
    rows = []
    for i in range(10):
        pid = make_prompt(db, s.id, f"q{i}")
        a, b = make_responses(db, pid, ["first answer", "second answer"])
        for who in ("ann1", "ann2"):
            rows.append(JudgmentIn(study_id=s.id, prompt_id=pid, judge_kind="human", judge=who, method="pairwise",
                                   response_id=a, response_b_id=b, label="tie" if i == 5 else str(a),
                                   shown_order=[a, b], idempotency_key=uuid.uuid4().hex))
    judgments.record(db, rows)
    return s.id


def test_an_interval_on_part_of_the_resamples_says_so(db: Database) -> None:
    rep = build_report(db, _pairwise_study(db), n_boot=N_BOOT, seed=SEED)
    (pair,) = rep["pairwise"]["kappa_matrix"]["pairs"]
    kappa = pair["kappa"]
    # The resamples, drawn as documented (numpy default_rng(seed), prompts in id order), that contain q5.
    draws = np.random.default_rng(SEED).integers(0, 10, size=(N_BOOT, 10), dtype=np.int32)
    expected = int((draws == 5).any(axis=1).sum())
    assert 0.5 * N_BOOT <= expected < 0.95 * N_BOOT  # the case this test is about
    assert (kappa["n_valid"], kappa["n_resamples"], kappa["ci_partial"]) == (expected, N_BOOT, True)
    assert kappa["ci"] is not None and "ci_reason" not in kappa
    agreement = pair["agreement"]  # defined in every resample: no mark
    assert agreement["n_valid"] == N_BOOT and "ci_partial" not in agreement
    assert f"† ({expected}/{N_BOOT} resamples)" in report_markdown(rep)


def test_an_interval_on_fewer_than_half_of_the_resamples_is_withheld() -> None:
    """A metric defined only in resamples that draw prompt 1 at least twice (about 26% of them with 5 prompts):
    its interval is null with the reason, and the printed figure says there is none."""
    boot = _Boot(N_BOOT, SEED)
    ids = pl.Series([1, 2, 3, 4, 5])
    ci = boot.weighted(ids, lambda counts, group: np.where(counts[:, 0] >= 2, 1.0, np.nan))
    fig = _figure("made_up", ["a", "b"], 1.0, 5, ci)
    assert not boot.run()
    out = _jsonable(fig)
    draws = np.random.default_rng(SEED).integers(0, 5, size=(N_BOOT, 5), dtype=np.int32)
    expected = int(((draws == 0).sum(axis=1) >= 2).sum())
    assert expected < 0.5 * N_BOOT
    assert (out["ci"], out["n_valid"], out["n_resamples"]) == (None, expected, N_BOOT)
    assert f"only {expected} of {N_BOOT} resamples" in out["ci_reason"] and "ci_partial" not in out
    assert interval_text(out) == f"no interval ({expected}/{N_BOOT} resamples)"
    assert interval_text({"ci": [0.1, 0.9], "n_valid": N_BOOT, "n_resamples": N_BOOT}) == "[0.100, 0.900]"
