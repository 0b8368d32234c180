"""`build_report`: loads the study once, builds every section (a failing one says why instead of failing
the report), computes the intervals together and returns plain JSON types (`_jsonable`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl

from storage.analysis.report.annotators_section import _annotators
from storage.analysis.report.best_of_n_section import _best_of_n
from storage.analysis.report.bias_section import _bias
from storage.analysis.report.calibration_section import _calibration
from storage.analysis.report.checklist_section import _checklist
from storage.analysis.report.disagreements_section import _disagreements
from storage.analysis.report.figures import FORMAT, LEVEL, METHOD_OF, STAGES, _num, _unavailable
from storage.analysis.report.headline import _headline
from storage.analysis.report.intervals import _CI, _Boot, _with_interval
from storage.analysis.report.judges_section import _judges
from storage.analysis.report.iterations_section import _iterations
from storage.analysis.report.loading import MethodInfo, _load, _no_method_info
from storage.analysis.report.pairwise_section import _pairwise
from storage.analysis.report.planning_section import _planning
from storage.analysis.report.ppi_section import _ppi
from storage.analysis.report.rankings_section import _rankings
from storage.analysis.report.ratings_section import _ratings, _scores
from storage.analysis.report.response_rankings import LEFT_OUT as RESPONSES_LEFT_OUT
from storage.analysis.report.response_rankings import _response_rankings
from storage.analysis.report.reveal_section import _reveal
from storage.analysis.report.scaling_section import _scaling
from storage.analysis.report.self_correction_section import _self_correction
from storage.analysis.settings_section import settings_changes
from storage.db import Database


def _jsonable(x: Any) -> Any:
    """Plain JSON types: numpy scalars → Python, nan/inf → None, floats to 12 significant digits, tuples → lists,
    frames → records."""
    t = type(x)  # exact types first: a report holds some 10⁵ values, nearly all of these
    if t is str or x is None or t is bool or t is int:
        return x
    if t is float:
        # 12 significant digits: sums in another order (polars group-bys) must not change the report's bytes
        return float(f"{x:.12g}") if math.isfinite(x) else None
    if t is dict:
        if "ci" in x and isinstance(x["ci"], _CI):
            x = _with_interval(x)
        return {k if type(k) is str else str(k): _jsonable(v) for k, v in x.items()}
    if t is list:
        return [_jsonable(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, _CI):
        return _jsonable(x.pair())
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, pl.DataFrame):
        return [_jsonable(r) for r in x.to_dicts()]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        v = _num(x)
        return None if v is None else float(f"{v:.12g}")
    return x


def _section(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001 - one failing section must not take the report down
        return _unavailable(f"could not compute: {type(e).__name__}: {e}")


def build_report(db: Database, study_id: int, *, stage: str = "blind", n_boot: int = 1000,
                 seed: int = 0, method_info: MethodInfo = _no_method_info, extended: bool = True,
                 annotator_models: bool = False, judges: bool = False, response_rankings: bool = False,
                 pre_seed: int | None = None,
                 pre_threshold: float = 0.5) -> dict[str, Any]:
    """The agreement report of a study as a JSON-ready dict (``"format": "critlab.agreement/3"``; keys in
    docs/formats.md). `stage` picks the human labels ('blind', the default, or 'revealed'); intervals are
    percentile bootstraps over prompts with `n_boot` resamples (0 = none) drawn with numpy default_rng(`seed`).
    `method_info(method_id)` gives the method table's mapping (compared_with, metric_family, score_column, ...)
    of a model method, or None when unknown; the app passes `app.services.agreement.method_info`, since
    storage does not import the method classes.

    `extended` builds the sections `ppi`, `rankings`, `annotators`, `bias`, `planning`, `judges`,
    `self_correction`, `scaling` and `iterations` (`EXTENDED`; False: each says it was left out, for timing the
    report without them); `annotator_models` fits Dawid–Skene and MACE in the `annotators` section (EM over every
    categorical human vote: opt-in). `judges` builds the `judges` section (every judge beside every generator,
    and PRE): it re-reads the study's figures on each generator's, each exam's and each held-out subset, which
    on a large study costs about half the report again, so it is opt-in; `pre_seed` (default: the study id)
    draws the PRE exam and `pre_threshold` is the exam score a judge needs to vote. `response_rankings` adds
    `rankings.responses`, one Bradley–Terry fit per prompt and judge (opt-in for the same reason)."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    d = _load(db, study_id, stage, method_info)
    boot = _Boot(int(n_boot), int(seed))
    cfg = d.study.config
    rep: dict[str, Any] = {
        "format": FORMAT,
        "study": {"id": d.study.id, "name": d.study.name, "stage": stage, "blind": cfg.blind, "reveal": cfg.reveal,
                  "overlap": cfg.overlap, "questions": list(cfg.questions), "rating_scale": list(cfg.rating_scale)},
        "bootstrap": {"n_resamples": boot.n, "seed": boot.seed, "level": LEVEL, "unit": "prompt",
                      "method": "percentile"},
        "counts": d.counts,
        "gold": d.gold,
        "methods": [{"method": m, "known": info is not None,
                     **{k: (info or {}).get(k) for k in ("compared_with", "human_question", "metric_family",
                                                          "metrics", "score_column")}}
                    for m, info in sorted(d.mapping.items()) if m not in METHOD_OF],
    }
    for key, fn in (("pairwise", _pairwise), ("ratings", _ratings), ("scores", _scores), ("best_of_n", _best_of_n),
                    ("calibration", _calibration), ("checklist", _checklist), ("reveal", _reveal)):
        boot.section = key
        rep[key] = _section(fn, d, boot)
    rep["disagreements"] = _section(_disagreements, d)
    for key, error in boot.run().items():
        rep[key] = _unavailable(f"could not compute: {error}")
    rep["headline"] = _section(_headline, d, rep)
    rep["settings_history"] = settings_changes(db, study_id)
    order = ["format", "study", "bootstrap", "counts", "gold", "methods", "settings_history", "headline", "pairwise",
             "ratings", "scores", "best_of_n", "calibration", "checklist", "reveal", "disagreements"]
    out = _jsonable({k: rep[k] for k in order})
    if not extended:
        left_out = _unavailable("left out: build_report(..., extended=False)")
        return {**out, **{k: left_out for k in EXTENDED}}
    # built on the finished figures (intervals computed): bias reads the order-swap figures, planning the headline
    out["ppi"] = _jsonable(_section(_ppi, d))
    out["rankings"] = _jsonable(_section(_rankings, d))
    if out["rankings"].get("available"):
        out["rankings"]["responses"] = (_jsonable(_section(_response_rankings, d)) if response_rankings
                                        else _unavailable(RESPONSES_LEFT_OUT))
    out["annotators"] = _jsonable(_section(_annotators, d, annotator_models))
    out["bias"] = _jsonable(_section(_bias, d, out))
    out["planning"] = _jsonable(_section(_planning, out))
    out["judges"] = (_jsonable(_section(_judges, db, d, out, boot.n, boot.seed, pre_seed, pre_threshold)) if judges
                     else _unavailable(JUDGES_LEFT_OUT))
    # their own bootstraps (same n and seed): built after the batch above has run
    out["self_correction"] = _jsonable(_section(_self_correction, db, d, boot.n, boot.seed))
    out["scaling"] = _jsonable(_section(_scaling, d, boot.n, boot.seed))
    out["iterations"] = _jsonable(_section(_iterations, db, d, boot.n, boot.seed))
    return out


JUDGES_LEFT_OUT = ("left out: opt in with critlab agreement --judges, the Agreement tab's 'Judges side by side' "
                   "box or build_report(..., judges=True)")
EXTENDED = ("ppi", "rankings", "annotators", "bias", "planning", "judges", "self_correction", "scaling",
            "iterations")
