"""The agreement report of a study: every metric of `storage.analysis` fed from the database, as one stable
JSON structure (``"format": "critlab.agreement/1"``, documented in docs/formats.md, "Agreement report (JSON)"),
plus Markdown and self-contained HTML renderings of the same numbers.

Public API: `build_report(db, study_id, stage=..., n_boot=..., seed=...)`, `report_markdown(report)`,
`report_html(report)`.

Conventions (see docs/formats.md for the full key list):

- Every figure is a dict ``{"metric", "judges", "value", "n", "ci", ...}``: the metric's name, the two judges (or
  judge groups) it compares, the value (null when undefined, e.g. κ with one label used), the number of units
  it rests on and the 95% percentile bootstrap interval over prompts (``[low, high]`` or null).
- Humans are compared with the consensus of the OTHER humans (leave-one-out), models with the consensus of
  all humans; the consensus is the plurality label when it is a unique mode (ratings: the mean); units
  without one are counted and left out.
- Only current rows count (``superseded_at IS NULL``); human rows of the chosen `stage` (blind by default,
  so labels given where the model's view was visible never count as blind); model rows with status ok
  (failed ones are counted), the aggregate row (variant NULL) of k-sample methods, and for pairwise the
  per-order rows (variant ``order:<first>-<second>``) combined by `combine_orders`, never the stored
  combined row.
- Which human question a model method is compared with comes from the method classes
  (`get_method(id).compared_with`, ``metric_family``, ``score_column``), passed in as `method_info` by the
  app layer (storage does not import the methods).
- A section without data is ``{"available": false, "reason": "..."}``; a section that fails to compute says
  so the same way (the reason names the error) instead of failing the whole report.
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl

from storage.analysis._frames import PAIR_CLASSES, check_labels, check_unique
from storage.analysis.agreement import (
    _from_confusion,
    fleiss_kappa,
    judge_vs_consensus,
    krippendorff_alpha_counts,
    mtbench_agreement,
    pairwise_kappa,
    rating_agreement,
)
from storage.analysis.bootstrap import BootstrapBatch, Pending
from storage.analysis.calibration import (
    auroc_weighted,
    calibration_report,
    ece_weighted,
)
from storage.analysis.checklist import YES_NO, checklist_agreement, criterion_validity
from storage.analysis.consensus import consensus, rating_consensus, vote_counts
from storage.analysis.pairwise import (
    combine_orders,
    order_swap,
    order_variants,
    pairwise_votes,
)
from storage.analysis.scores import (
    best_of_n_accuracy,
    rank_correlations,
    rank_correlations_per_prompt,
)
from storage.analysis.settings_section import settings_blocks, settings_changes
from storage.db import Database

FORMAT = "critlab.agreement/1"
STAGES = ("blind", "revealed")
LEVEL = 0.95
HUMANS = "humans"
CONSENSUS = "human consensus"
LOO = "other humans (consensus)"
LOO_MEAN = "other humans (mean rating)"
MEAN_RATING = "humans (mean rating)"
RANDOM = "random (1/N)"
CORRECT_CLASSES = ("correct", "incorrect")
TOP_DISAGREED = 20
MAX_LISTED_UNITS = 100
# Model rows stored under another id than their method's (the checklist method's per-item answers).
METHOD_OF = {"checklist_item": "checklist"}
VOTE = ["prompt_id", "unit", "judge", "label"]


# -- small helpers -------------------------------------------------------------------------------------------


def _num(x: Any) -> float | None:
    """A finite float, or None (nan, inf, None)."""
    if x is None:
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _figure(metric: str, judges: Sequence[str], value: Any, n: Any, ci: list[float] | _CI | None = None,
            **extra: Any) -> dict[str, Any]:
    return {"metric": metric, "judges": [str(j) for j in judges], "value": _num(value),
            "n": int(n or 0), "ci": ci, **extra}


def _unavailable(reason: str) -> dict[str, Any]:
    return {"available": False, "reason": reason}


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


# An interval from fewer than this share of the resamples is marked (`ci_partial`); below CI_MIN_SHARE it is
# withheld (null, with `ci_reason`): a metric undefined in most resamples (κ with one class, say) has no
# interval worth printing.
CI_FULL_SHARE = 0.95
CI_MIN_SHARE = 0.5


def _with_interval(fig: dict[str, Any]) -> dict[str, Any]:
    """A figure whose `ci` is still a pending _CI, with its interval: `ci`, `n_valid` (the resamples in which
    the metric was defined) and `n_resamples`, and `ci_partial` / `ci_reason` as CI_FULL_SHARE says."""
    r = fig["ci"].pending.result()
    n, valid = int(r["n_resamples"]), int(r["n_valid"])
    lo, hi = _num(r["low"]), _num(r["high"])
    out = {**fig, "ci": None if lo is None or hi is None else [lo, hi], "n_valid": valid, "n_resamples": n}
    if valid < CI_MIN_SHARE * n:
        out["ci"] = None
        out["ci_reason"] = (f"the metric is defined in only {valid} of {n} resamples (fewer than "
                            f"{CI_MIN_SHARE:.0%}): no interval")
    elif valid < CI_FULL_SHARE * n:
        out["ci_partial"] = True
    return out


def interval_text(fig: dict[str, Any] | None) -> str:
    """A figure's interval as printed: '[0.201, 0.600]', marked '† 682/1000 resamples' when built on fewer than
    95% of them, or why there is none.

    >>> interval_text({"ci": [0.2, 0.6], "n_valid": 1000, "n_resamples": 1000})
    '[0.200, 0.600]'
    >>> interval_text({"ci": [0.2, 0.6], "n_valid": 682, "n_resamples": 1000, "ci_partial": True})
    '[0.200, 0.600]† (682/1000 resamples)'
    >>> interval_text({"ci": None, "n_valid": 120, "n_resamples": 1000, "ci_reason": "..."})
    'no interval (120/1000 resamples)'
    """
    if not fig:
        return ""
    ci = fig.get("ci")
    if ci:
        text = f"[{_f(ci[0])}, {_f(ci[1])}]"
        return text + f"† ({fig['n_valid']}/{fig['n_resamples']} resamples)" if fig.get("ci_partial") else text
    if fig.get("ci_reason"):
        return f"no interval ({fig['n_valid']}/{fig['n_resamples']} resamples)"
    return ""


class _CI:
    """A figure's interval while the report is being built: every interval is computed at once by
    `_Boot.run` (one set of draws per number of prompts, see `BootstrapBatch`) and becomes [low, high] or
    null in `_jsonable`."""

    __slots__ = ("pending",)

    def __init__(self, pending: Pending) -> None:
        self.pending = pending

    def pair(self) -> list[float] | None:
        r = self.pending.result()
        lo, hi = _num(r["low"]), _num(r["high"])
        return None if lo is None or hi is None or r["n_valid"] < CI_MIN_SHARE * r["n_resamples"] else [lo, hi]


class _Boot:
    """Bootstrap settings: prompts resampled `n` times (0 = no intervals) with numpy's default_rng(seed).
    Intervals are registered while the sections are built and computed together by `run`; `section` names
    the section being built, so that an interval that fails to compute makes its section unavailable."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed = n, seed
        self.section = ""
        self._batch = BootstrapBatch(n, seed, LEVEL) if n > 0 else None
        self._pending: list[tuple[str, Pending]] = []

    def _add(self, pending: Pending) -> _CI:
        self._pending.append((self.section, pending))
        return _CI(pending)

    def sums(self, per_prompt: pl.DataFrame, fn: Callable[[dict[str, np.ndarray]], np.ndarray]) -> _CI | None:
        """CI of a metric of per-prompt sums (`bootstrap_ci_from_sums`); `per_prompt` has prompt_id + numbers."""
        if self._batch is None or per_prompt.height == 0:
            return None
        return self._add(self._batch.sums(per_prompt, "prompt_id", fn))

    def sums_many(self, per_prompt: pl.DataFrame,
                  fns: Sequence[Callable[[dict[str, np.ndarray]], np.ndarray]]) -> list[_CI | None]:
        """`sums` for several metrics of the same per-prompt statistics."""
        if self._batch is None or per_prompt.height == 0:
            return [None] * len(fns)
        return [self._add(p) for p in self._batch.sums_many(per_prompt, "prompt_id", fns)]

    def weighted(self, prompt_ids: pl.Series, fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> _CI | None:
        """CI of a metric of rows given as weights per resample (`BootstrapBatch.weighted`), for metrics that
        are not functions of per-prompt sums (AUROC, ECE)."""
        if self._batch is None or prompt_ids.len() == 0:
            return None
        return self._add(self._batch.weighted(prompt_ids, fn))

    def run(self) -> dict[str, str]:
        """Compute every registered interval; returns {section: error} for sections whose intervals failed."""
        if self._batch is not None:
            self._batch.run()
        failed: dict[str, str] = {}
        for section, pending in self._pending:
            if pending.error is not None and section not in failed:
                failed[section] = f"{type(pending.error).__name__}: {pending.error}"
        return failed


def _ratio(num: str, den: str) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    return lambda t: t[num] / t[den]


def _cm_columns(k: int) -> list[str]:
    return [f"c{i}_{j}" for i in range(k) for j in range(k)]


def _cm_per_prompt(rows: pl.DataFrame, true_col: str, pred_col: str, classes: Sequence[str],
                   by: Sequence[str]) -> pl.DataFrame:
    """Per (`by`..., prompt): the confusion-matrix cells c<i>_<j> (truth class i, prediction class j)."""
    aggs = [((pl.col(true_col) == a) & (pl.col(pred_col) == b)).sum().cast(pl.Int64).alias(f"c{i}_{j}")
            for i, a in enumerate(classes) for j, b in enumerate(classes)]
    return rows.group_by(*by, "prompt_id").agg(aggs)


def _cm_metric(k: int, metric: str) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    """A metric of `_from_confusion` (accuracy, kappa, f1_macro ...) from summed confusion cells."""
    def fn(t: dict[str, np.ndarray]) -> np.ndarray:
        cm = np.stack([t[c] for c in _cm_columns(k)], axis=-1).reshape(-1, k, k)
        return _from_confusion(cm)[metric]
    return fn


def _cm_cis(boot: _Boot, pp: pl.DataFrame, k: int, metrics: Sequence[str]) -> dict[str, _CI | None]:
    return dict(zip(metrics, boot.sums_many(pp, [_cm_metric(k, m) for m in metrics])))


def _coincidence_per_prompt(units: pl.DataFrame, counts: np.ndarray) -> pl.DataFrame:
    """Krippendorff's coincidence matrix summed per prompt (columns o<i>_<j>) from `vote_counts`' units and
    count matrix: α of any resample is a function of these sums (units with fewer than two values drop out, as
    in `krippendorff_alpha_counts`)."""
    k = counts.shape[1]
    c = counts.astype(np.float64)
    m = c.sum(axis=1)
    keep = m >= 2
    c, pid = c[keep], units["prompt_id"].to_numpy()[keep]
    w = c / (m[keep] - 1)[:, None]
    o = c[:, :, None] * w[:, None, :]
    idx = np.arange(k)
    o[:, idx, idx] -= w
    prompts, inv = np.unique(pid, return_inverse=True)
    tot = np.zeros((prompts.size, k * k))
    np.add.at(tot, inv.ravel(), o.reshape(-1, k * k))
    return pl.DataFrame({"prompt_id": prompts, **{f"o{i}_{j}": tot[:, i * k + j] for i in range(k) for j in range(k)}})


def _alpha_from_sums(domain: Sequence[Any], level: str) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    """α per resample from summed coincidence matrices (the formula of `krippendorff_alpha_counts`)."""
    k = len(domain)

    def fn(t: dict[str, np.ndarray]) -> np.ndarray:
        o = np.stack([t[f"o{i}_{j}"] for i in range(k) for j in range(k)], axis=-1).reshape(-1, k, k)
        n_v = o.sum(axis=1)
        n = n_v.sum(axis=1)
        e = (n_v[:, :, None] * n_v[:, None, :] - np.eye(k)[None] * n_v[:, None, :]) / (n - 1)[:, None, None]
        if level == "nominal":
            d = np.broadcast_to(1.0 - np.eye(k), o.shape)
        elif level == "interval":
            x = np.asarray(domain, dtype=np.float64)
            d = np.broadcast_to((x[:, None] - x[None, :]) ** 2, o.shape)
        else:
            cs = np.cumsum(n_v, axis=1)
            i = np.arange(k)
            lo, hi = np.minimum.outer(i, i), np.maximum.outer(i, i)
            d = (cs[:, hi] - cs[:, lo] + n_v[:, lo] - (n_v[:, lo] + n_v[:, hi]) / 2.0) ** 2
        num, den = (o * d).sum(axis=(1, 2)), (e * d).sum(axis=(1, 2))
        out = np.full(num.shape, np.nan)
        np.divide(num, den, out=out, where=den != 0)
        return 1.0 - out
    return fn


AlphaLevel = Literal["nominal", "ordinal", "interval"]


def _alphas(votes: pl.DataFrame, levels: Sequence[AlphaLevel], domain: Sequence[Any], judges: list[str],
            boot: _Boot, value_col: str = "label") -> dict[str, dict[str, Any]]:
    """Krippendorff's α figure per level: the value of `krippendorff_alpha_counts` on the count matrix that
    `krippendorff_alpha` builds (checked and counted once for every level), bootstrap CI over coincidence sums."""
    v = votes.select("prompt_id", "unit", "judge", label=pl.col(value_col))
    check_unique(v, ("prompt_id", "unit", "judge"), "votes", "a judge may vote once per unit")
    check_labels(v, "label", domain, "votes")
    units, _, counts = vote_counts(v, domain)
    pairable = int((counts.sum(axis=1) >= 2).sum())
    if pairable == 0 or len(domain) < 2:
        note = "no unit with values from two or more judges" if pairable == 0 else "a single value"
        return {level: _figure(f"krippendorff_alpha_{level}", judges, None, 0, None, note=note) for level in levels}
    cis = boot.sums_many(_coincidence_per_prompt(units, counts), [_alpha_from_sums(domain, lv) for lv in levels])
    out = {}
    for level, ci in zip(levels, cis):
        value = krippendorff_alpha_counts(counts, np.asarray(domain, dtype=np.float64) if level == "interval"
                                          else None, level)
        out[level] = _figure(f"krippendorff_alpha_{level}", judges, value, pairable, ci, n_units_pairable=pairable)
    return out


# -- loading -------------------------------------------------------------------------------------------------

_COLUMNS = """j.id, j.prompt_id, j.judge_kind, j.judge, j.method, j.variant, j.target_key, j.response_id,
       j.response_b_id, j.checklist_item_id, j.shown_order, j.value, j.label, j.prob, j.stage, j.status,
       j.created_at"""
# Current rows on existing prompts (external ids and positions come with `prompts`, joined where shown).
_CURRENT = f"""SELECT {_COLUMNS} FROM judgment j SEMI JOIN prompt p ON p.id = j.prompt_id
WHERE j.study_id = $study AND j.superseded_at IS NULL"""
_MODEL_OK = " AND j.judge_kind = 'model' AND j.status = 'ok'"
# One row per (judge, method, target): the blind one, else the latest. Ranked on the key columns alone, then
# fetched whole: sorting every column inside the window costs three times as much. The model frame needs
# neither the target key nor the shown order.
_MODEL = _CURRENT.replace("j.target_key, ", "").replace("j.shown_order, ", "") + _MODEL_OK + """ AND j.id IN (
    SELECT j.id FROM judgment j SEMI JOIN prompt p ON p.id = j.prompt_id
    WHERE j.study_id = $study AND j.superseded_at IS NULL""" + _MODEL_OK + """
    QUALIFY row_number() OVER (PARTITION BY j.judge, j.method, j.target_key
                               ORDER BY (j.stage = 'blind') DESC, j.created_at DESC, j.id DESC) = 1)
ORDER BY j.created_at, j.id"""


@dataclass
class _Data:
    study: Any
    stage: str
    human: pl.DataFrame  # current human rows of the stage
    human_all: pl.DataFrame  # current human rows of every stage (reveal)
    model: pl.DataFrame  # current ok model rows, one per (judge, method, target)
    prompts: pl.DataFrame  # prompt_id, external_id, position
    responses: pl.DataFrame  # response_id, prompt_id, origin
    items: pl.DataFrame  # item_id, question, prompt_id
    counts: dict[str, Any]
    mapping: dict[str, dict[str, str] | None]
    cache: dict[str, Any] = field(default_factory=dict)  # frames several sections derive alike


def _sql(db: Database, query: str, params: dict[str, Any]) -> pl.DataFrame:
    return db.cursor().sql(query, params=params).pl()


MethodInfo = Callable[[str], "dict[str, str] | None"]


def _no_method_info(method: str) -> dict[str, str] | None:
    return None


def _load(db: Database, study_id: int, stage: str, method_info: MethodInfo) -> _Data:
    from storage.studies import get_study

    study = get_study(db, study_id)
    p = {"study": study_id}
    human_all = _sql(db, _CURRENT + " AND j.judge_kind = 'human' ORDER BY j.created_at, j.id", p)
    human = human_all.filter(pl.col("stage") == stage)
    model = _sql(db, _MODEL, p)
    humans = set(human_all["judge"].unique().to_list())
    clash = sorted(set(model["judge"].unique().to_list()) & humans)
    if clash:  # a model id equal to an annotator's name: keep them apart in every frame
        model = model.with_columns(judge=pl.when(pl.col("judge").is_in(clash))
                                   .then(pl.col("judge") + " (model)").otherwise(pl.col("judge")))
    prompts = _sql(db, "SELECT id AS prompt_id, external_id, position FROM prompt WHERE study_id = $study "
                       "ORDER BY position, id", p)
    responses = _sql(db, "SELECT r.id AS response_id, r.prompt_id, r.origin FROM response r "
                         "JOIN prompt p ON p.id = r.prompt_id WHERE p.study_id = $study ORDER BY r.id", p)
    items = _sql(db, "SELECT ci.id AS item_id, ci.question, c.prompt_id FROM checklist_item ci "
                     "JOIN checklist c ON c.id = ci.checklist_id JOIN prompt p ON p.id = c.prompt_id "
                     "WHERE p.study_id = $study ORDER BY ci.id", p)
    by_kind = _sql(db, """SELECT judge_kind, method, stage, status, count(*)::BIGINT AS n,
                                 count(DISTINCT judge)::BIGINT AS n_judges
                          FROM judgment WHERE study_id = $study AND superseded_at IS NULL
                          GROUP BY ALL ORDER BY ALL""", p)
    hum = (human.group_by("judge").agg(n_prompts=pl.col("prompt_id").n_unique().cast(pl.Int64),
                                       n_judgments=pl.len().cast(pl.Int64)).sort("judge"))
    failed = _sql(db, """SELECT judge, count(*)::BIGINT AS n_failed FROM judgment WHERE study_id = $study
                         AND superseded_at IS NULL AND judge_kind = 'model' AND status = 'failed' GROUP BY judge""", p)
    mod = (model.group_by("judge").agg(methods=pl.col("method").unique().sort(), n_judgments=pl.len().cast(pl.Int64))
           .join(failed, on="judge", how="left").with_columns(pl.col("n_failed").fill_null(0)).sort("judge"))
    methods = sorted(set(model["method"].unique().to_list()))
    mapping = {m: method_info(m) for m in {*methods, *(METHOD_OF.get(m, m) for m in methods)}}
    counts = {
        "n_prompts": prompts.height, "n_responses": responses.height,
        "n_prompts_with_human_labels": human["prompt_id"].n_unique(),
        "humans": hum, "models": mod,
        "judgments": by_kind,
        "n_model_failed": int(failed["n_failed"].sum()) if failed.height else 0,
        "n_human_other_stage": human_all.height - human.height,
        "unmapped_methods": [m for m, info in mapping.items() if info is None],
        "renamed_models": [{"judge": c, "as": f"{c} (model)"} for c in clash],
    }
    return _Data(study=study, stage=stage, human=human, human_all=human_all, model=model, prompts=prompts,
                 responses=responses, items=items, counts=counts, mapping=mapping)


def _with_external(df: pl.DataFrame, prompts: pl.DataFrame) -> pl.DataFrame:
    return df.join(prompts.select("prompt_id", "external_id"), on="prompt_id", how="left", maintain_order="left")


def _response_level() -> pl.Expr:
    """A response-level aggregate row: one response, no pair, no checklist item, no variant (k-sample methods'
    per-sample rows and pairwise per-order rows are left out)."""
    return (pl.col("variant").is_null() & pl.col("response_id").is_not_null() & pl.col("response_b_id").is_null()
            & pl.col("checklist_item_id").is_null())


def _mapped(d: _Data, key: str, values: Sequence[str]) -> list[str]:
    """Stored method ids whose method class has `key` in `values`."""
    return [m for m, info in d.mapping.items() if info is not None and info[key] in values and m not in METHOD_OF]


# -- pairwise ------------------------------------------------------------------------------------------------


def _pairwise_frames(d: _Data) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """(human votes with created_at, model order votes or None) in unit order."""
    if "pairwise" not in d.cache:
        d.cache["pairwise"] = _make_pairwise_frames(d)
    return d.cache["pairwise"]


def _combined_orders(d: _Data, orders: pl.DataFrame) -> pl.DataFrame:
    """`combine_orders` of the model order votes, once per report."""
    if "combined" not in d.cache:
        d.cache["combined"] = combine_orders(orders)
    return d.cache["combined"]


def _make_pairwise_frames(d: _Data) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    ok = pl.col("response_id").is_not_null() & pl.col("response_b_id").is_not_null() & pl.col("label").is_not_null()
    hp = d.human.filter((pl.col("method") == "pairwise") & ok)
    human = (pairwise_votes(hp.select("prompt_id", "judge", "response_id", "response_b_id", "label", "created_at"))
             .select(*VOTE, "created_at") if hp.height else pl.DataFrame())
    mp = d.model.filter((pl.col("method") == "pairwise") & ok & pl.col("variant").str.starts_with("order:"))
    orders = (pairwise_votes(mp.select("prompt_id", "judge", "response_id", "response_b_id", "label"))
              .select("prompt_id", "unit", "judge", "shown", "label") if mp.height else None)
    return human, orders


def _mtbench_row(votes: pl.DataFrame, g1: list[str], g2: list[str], judges: list[str], boot: _Boot,
                 **extra: Any) -> dict[str, Any]:
    pp = mtbench_agreement(votes, g1, g2, by_prompt=True)
    t = {c: int(pp[c].sum()) for c in ("s1_agree", "s1_n", "s2_agree", "s2_n")}
    s1 = _figure("mtbench_agreement_s1", judges, t["s1_agree"] / t["s1_n"] if t["s1_n"] else None, t["s1_n"],
                 boot.sums(pp.select("prompt_id", "s1_agree", "s1_n"), _ratio("s1_agree", "s1_n")),
                 agree=t["s1_agree"], **extra)
    s2 = _figure("mtbench_agreement_s2", judges, t["s2_agree"] / t["s2_n"] if t["s2_n"] else None, t["s2_n"],
                 boot.sums(pp.select("prompt_id", "s2_agree", "s2_n"), _ratio("s2_agree", "s2_n")),
                 agree=t["s2_agree"], **extra)
    return {"judges": judges, **extra, "s1": s1, "s2": s2}


def _vs_consensus_rows(human_votes: pl.DataFrame, model_votes: pl.DataFrame | None, classes: Sequence[str],
                       names: dict[str, dict[str, Any]], boot: _Boot) -> list[dict[str, Any]]:
    """`judge_vs_consensus` rows as figures (with bootstrap CIs from per-prompt confusion cells). `names` maps a
    frame judge name to {"judge": shown name, "order": ...} for models."""
    hv = human_votes.select(VOTE)
    table = judge_vs_consensus(hv, model_votes, classes)
    loo = consensus(hv, classes, leave_one_out=True).select(*VOTE, "consensus")
    parts = [loo]
    if model_votes is not None:
        full = consensus(hv, classes).select("prompt_id", "unit", "consensus")
        parts.append(model_votes.select(VOTE).join(full, on=["prompt_id", "unit"], how="left", maintain_order="left"))
    rows = pl.concat(parts).filter(pl.col("consensus").is_not_null())
    pp_all = _cm_per_prompt(rows, "consensus", "label", classes, ["judge"])
    k = len(classes)
    out = []
    for r in table.iter_rows(named=True):
        info = names.get(r["judge"], {"judge": r["judge"]})
        other = LOO if r["kind"] == "human" else CONSENSUS
        judges = [info["judge"], other]
        extra = {k2: v for k2, v in info.items() if k2 != "judge"}
        pp = pp_all.filter(pl.col("judge") == r["judge"]).drop("judge")
        cis = _cm_cis(boot, pp, k, ("accuracy", "precision_macro", "recall_macro", "f1_macro", "kappa"))
        out.append({
            "judge": info["judge"], "kind": r["kind"], **extra, "n": r["n"], "n_no_consensus": r["n_no_consensus"],
            **{m: _figure(m if m != "kappa" else "cohen_kappa", judges, r[m], r["n"], cis[m], **extra)
               for m in ("accuracy", "precision_macro", "recall_macro", "f1_macro", "kappa")},
            "confusion": {"judges": judges, "classes": list(classes), "rows": other, "columns": info["judge"],
                          "matrix": r["confusion"] if r["confusion"] is not None else [[0] * k for _ in range(k)]}})
    return out


def _kappa_matrix(votes: pl.DataFrame, classes: Sequence[str], boot: _Boot) -> list[dict[str, Any]]:
    pk = pairwise_kappa(votes.select(VOTE), classes)
    v = votes.select(VOTE)
    pairs = v.join(v, on=["prompt_id", "unit"], suffix="_b").filter(pl.col("judge") < pl.col("judge_b"))
    pp_all = _cm_per_prompt(pairs, "label", "label_b", classes, ["judge", "judge_b"])
    out = []
    for r in pk.iter_rows(named=True):
        pp = pp_all.filter((pl.col("judge") == r["judge_a"]) & (pl.col("judge_b") == r["judge_b"])).drop(
            "judge", "judge_b")
        cis = _cm_cis(boot, pp, len(classes), ("accuracy", "kappa"))
        judges = [r["judge_a"], r["judge_b"]]
        out.append({"judges": judges, "n": r["n"],
                    "agreement": _figure("raw_agreement", judges, r["agreement"], r["n"], cis["accuracy"]),
                    "kappa": _figure("cohen_kappa", judges, r["kappa"], r["n"], cis["kappa"])})
    return out


def fleiss_overlap(configured: int | None, votes_per_unit: Sequence[int]) -> tuple[int, str]:
    """The number of raters per unit Fleiss' κ is computed at, and where it came from: the study's configured
    overlap, else the most common number of human votes per unit (the larger on a tie), so that a few units
    with extra annotators cannot shrink κ to a handful of units.

    >>> fleiss_overlap(None, [3, 3, 3, 2, 5])
    (3, 'most common human votes per unit')
    >>> fleiss_overlap(None, [2, 2, 4, 4, 7])
    (4, 'most common human votes per unit')
    >>> fleiss_overlap(2, [3, 3, 3])
    (2, 'study config')
    """
    if configured:
        return configured, "study config"
    counts: dict[int, int] = {}
    for n in votes_per_unit:
        counts[n] = counts.get(n, 0) + 1
    return max(counts, key=lambda n: (counts[n], n)), "most common human votes per unit"


def _fleiss(votes: pl.DataFrame, overlap: int, classes: Sequence[str], boot: _Boot, source: str) -> dict[str, Any]:
    judges = [HUMANS, HUMANS]
    if overlap < 2:
        return _figure("fleiss_kappa", judges, None, 0, None, overlap=overlap, overlap_source=source,
                       n_units_below=0, n_units_truncated=0, note="needs a target overlap of two or more humans")
    v = votes.select(*VOTE, "created_at")
    r = fleiss_kappa(v, overlap, classes, order_col="created_at")
    # the same units and votes as fleiss_kappa (first `overlap` votes by created_at), summed per prompt
    kept = (v.sort("created_at", maintain_order=True)
            .with_columns(_i=pl.int_range(pl.len()).over("prompt_id", "unit"), _n=pl.len().over("prompt_id", "unit"))
            .filter((pl.col("_n") >= overlap) & (pl.col("_i") < overlap)))
    ci = None
    if kept.height:
        per_unit = kept.group_by("prompt_id", "unit").agg(
            *[(pl.col("label") == c).sum().cast(pl.Int64).alias(f"n{i}") for i, c in enumerate(classes)])
        sq = sum(pl.col(f"n{i}") ** 2 for i in range(len(classes)))
        pp = per_unit.with_columns(_p=(sq - overlap) / (overlap * (overlap - 1))).group_by("prompt_id").agg(
            *[pl.col(f"n{i}").sum() for i in range(len(classes))], sum_p=pl.col("_p").sum(),
            units=pl.len().cast(pl.Int64))
        k = len(classes)

        def fn(t: dict[str, np.ndarray]) -> np.ndarray:
            tot = np.stack([t[f"n{i}"] for i in range(k)], axis=-1)
            pj = tot / tot.sum(axis=1, keepdims=True)
            pe = (pj * pj).sum(axis=1)
            return (t["sum_p"] / t["units"] - pe) / (1 - pe)
        ci = boot.sums(pp, fn)
    return _figure("fleiss_kappa", judges, r["kappa"], r["n_units"], ci, overlap=overlap, overlap_source=source,
                   n_units_below=r["n_units_below"], n_units_truncated=r["n_units_truncated"])


def _order_swap_rows(orders: pl.DataFrame, combined: pl.DataFrame, human_votes: pl.DataFrame,
                     boot: _Boot) -> list[dict[str, Any]]:
    table = order_swap(orders, human_votes.select(VOTE), orders_combined=combined)
    full = consensus(human_votes.select(VOTE)).select("prompt_id", "unit", "consensus")
    comb = combined.filter(pl.col("n_orders") == 2).join(full, on=["prompt_id", "unit"], how="left")
    scored = pl.col("consensus").is_not_null()
    per = comb.group_by("judge", "prompt_id").agg(
        units=pl.len().cast(pl.Int64), consistent=pl.col("consistent").sum().cast(pl.Int64),
        first=((pl.col("label_ab") == "first").cast(pl.Int64) + (pl.col("label_ba") == "second").cast(pl.Int64)).sum(),
        decisive=((pl.col("label_ab") != "tie").cast(pl.Int64) + (pl.col("label_ba") != "tie").cast(pl.Int64)).sum(),
        scored=scored.sum().cast(pl.Int64),
        hit_ab=((pl.col("label_ab") == pl.col("consensus")) & scored).sum().cast(pl.Int64),
        hit_ba=((pl.col("label_ba") == pl.col("consensus")) & scored).sum().cast(pl.Int64),
        hit_c=((pl.col("label") == pl.col("consensus")) & scored).sum().cast(pl.Int64))
    out = []
    for r in table.iter_rows(named=True):
        m = r["judge"]
        pp = per.filter(pl.col("judge") == m).drop("judge")
        vs = [m, CONSENSUS]
        consistency, first, hit_ab, hit_ba, hit_mean, hit_c = boot.sums_many(pp, [
            _ratio("consistent", "units"), _ratio("first", "decisive"), _ratio("hit_ab", "scored"),
            _ratio("hit_ba", "scored"), lambda t: (t["hit_ab"] + t["hit_ba"]) / (2 * t["scored"]),
            _ratio("hit_c", "scored")])
        out.append({
            "judge": m, "n_units": r["n_units"], "n_scored": r["n_scored"],
            "consistency": _figure("order_consistency", [m, m], r["consistency"], r["n_units"], consistency,
                                   orders=["ab", "ba"]),
            "first_position_rate": _figure("first_position_rate", [m, m], r["first_position_rate"], r["n_decisive"],
                                           first),
            "tie_rate": _figure("tie_rate", [m, m], r["tie_rate"], 2 * r["n_units"]),
            "both_first_rate": _figure("both_first_rate", [m, m], r["both_first_rate"], r["n_units"]),
            "both_second_rate": _figure("both_second_rate", [m, m], r["both_second_rate"], r["n_units"]),
            "accuracy_ab": _figure("accuracy", vs, r["acc_ab"], r["n_scored"], hit_ab, order="ab"),
            "accuracy_ba": _figure("accuracy", vs, r["acc_ba"], r["n_scored"], hit_ba, order="ba"),
            "accuracy_order_mean": _figure("accuracy_order_mean", vs, r["acc_order_mean"], r["n_scored"], hit_mean),
            "accuracy_combined": _figure("accuracy", vs, r["acc_combined"], r["n_scored"], hit_c,
                                         order="combined")})
    return out


def _pairwise(d: _Data, boot: _Boot) -> dict[str, Any]:
    human_votes, orders = _pairwise_frames(d)
    if human_votes.height == 0:
        return _unavailable("no human pairwise votes")
    humans = sorted(human_votes["judge"].unique().to_list())
    models = sorted(orders["judge"].unique().to_list()) if orders is not None else []
    comb_orders = _combined_orders(d, orders) if orders is not None else None
    variants = order_variants(orders, orders_combined=comb_orders) if orders is not None else None
    combined = variants.filter(pl.col("judge").is_in(models)) if variants is not None else None
    names: dict[str, dict[str, Any]] = {h: {"judge": h, "order": None} for h in humans}
    for m in models:
        names.update({m: {"judge": m, "order": "combined"}, f"{m}#ab": {"judge": m, "order": "ab"},
                      f"{m}#ba": {"judge": m, "order": "ba"}})
    cons = _with_external(consensus(human_votes.select(VOTE)), d.prompts)
    no_cons = cons.filter(pl.col("consensus").is_null()).sort("prompt_id", "unit")
    units = {"n_units": cons.height, "n_with_consensus": cons.height - no_cons.height,
             "n_no_consensus": no_cons.height,
             "no_consensus": no_cons.head(MAX_LISTED_UNITS).select("prompt_id", "external_id", "unit", "n_votes"),
             "n_units_model_judged": (combined.select("prompt_id", "unit").unique().height
                                      if combined is not None else 0)}

    all_votes = pl.concat([human_votes.select(VOTE), variants]) if variants is not None else human_votes.select(VOTE)
    agreement = []
    if len(humans) >= 2:
        agreement.append(_mtbench_row(all_votes, humans, humans, [HUMANS, HUMANS], boot, order=None))
    present = set(all_votes["judge"].unique().to_list())
    # a model against the humans counts only units the humans judged: the rest need not be passed on
    near = all_votes.join(human_votes.select("prompt_id", "unit").unique(), on=["prompt_id", "unit"], how="semi")
    near_judges = set(near["judge"].unique().to_list())
    for m in models:
        for name, order in ((m, "combined"), (f"{m}#ab", "ab"), (f"{m}#ba", "ba")):
            if name in present:
                agreement.append(_mtbench_row(near if name in near_judges else all_votes, [name], humans,
                                              [m, HUMANS], boot, order=order))
    for a, b in itertools.combinations(models, 2):
        agreement.append(_mtbench_row(all_votes, [a], [b], [a, b], boot, order="combined"))

    vs = _vs_consensus_rows(human_votes, variants, PAIR_CLASSES, names, boot)
    kappa_votes = pl.concat([human_votes.select(VOTE), combined]) if combined is not None else human_votes.select(VOTE)
    overlap, source = fleiss_overlap(d.study.config.overlap,
                                     human_votes.group_by("prompt_id", "unit").len()["len"].to_list())
    return {
        "available": True, "classes": list(PAIR_CLASSES), "humans": humans, "models": models, "units": units,
        "agreement": agreement,
        "vs_consensus": vs,
        "kappa_matrix": {"judges": humans + models, "pairs": _kappa_matrix(kappa_votes, PAIR_CLASSES, boot)},
        "fleiss_kappa": _fleiss(human_votes, overlap, PAIR_CLASSES, boot, source),
        "krippendorff_alpha": _alphas(human_votes, ["nominal"], PAIR_CLASSES, [HUMANS, HUMANS], boot)["nominal"],
        "order_swap": (_order_swap_rows(orders, comb_orders, human_votes, boot)
                       if orders is not None and comb_orders is not None else []),
    }


# -- ratings and scores --------------------------------------------------------------------------------------


def _human_ratings(d: _Data) -> pl.DataFrame:
    r = d.human.filter((pl.col("method") == "likert") & pl.col("response_id").is_not_null()
                       & pl.col("value").is_not_null() & pl.col("value").is_finite())
    return r.select("prompt_id", unit=pl.col("response_id").cast(pl.String), judge="judge", value="value")


def _ratings(d: _Data, boot: _Boot) -> dict[str, Any]:
    ratings = _human_ratings(d)
    if ratings.height == 0:
        return _unavailable("no human ratings")
    humans = sorted(ratings["judge"].unique().to_list())
    domain = sorted(ratings["value"].unique().to_list())
    per_unit = ratings.group_by("prompt_id", "unit").len()
    alpha = _alphas(ratings, ("interval", "ordinal", "nominal"), domain, [HUMANS, HUMANS], boot, value_col="value")
    rows = []
    if len(humans) >= 2:
        ra = rating_agreement(ratings)
        loo = rating_consensus(ratings, leave_one_out=True).filter(pl.col("consensus").is_not_null())
        pp_all = loo.group_by("judge", "prompt_id").agg(
            abs_err=(pl.col("value") - pl.col("consensus")).abs().sum(), n=pl.len().cast(pl.Int64))
        for r in ra.iter_rows(named=True):
            judges = [r["judge"], LOO_MEAN]
            pp = pp_all.filter(pl.col("judge") == r["judge"]).drop("judge")
            rows.append({"judge": r["judge"], "n": r["n"],
                         "mae": _figure("mae", judges, r["mae"], r["n"], boot.sums(pp, _ratio("abs_err", "n"))),
                         "pearson": _figure("pearson", judges, r["pearson"], r["n"]),
                         "spearman": _figure("spearman", judges, r["spearman"], r["n"])})
    return {"available": True, "humans": humans, "scale": list(d.study.config.rating_scale),
            "values": domain, "n_ratings": ratings.height, "n_units": per_unit.height,
            "n_units_multi": per_unit.filter(pl.col("len") >= 2).height,
            "krippendorff_alpha": alpha, "human_vs_others": rows}


def _rank_figures(frame: pl.DataFrame, judges: list[str], boot: _Boot, **extra: Any) -> dict[str, Any]:
    per_prompt = rank_correlations_per_prompt(frame)
    rc = rank_correlations(frame, per_prompt=per_prompt)
    per = per_prompt.filter(~pl.col("constant")).select(
        "prompt_id", rho="spearman", tau="kendall", one=pl.lit(1, dtype=pl.Int64))
    return {
        "n_prompts": rc["n_prompts"], "n_prompts_skipped": rc["n_prompts_skipped"], "n_pooled": rc["n_pooled"],
        "spearman_mean": _figure("spearman_per_prompt_mean", judges, rc["spearman_mean"], rc["n_prompts"],
                                 boot.sums(per.select("prompt_id", "rho", "one"), _ratio("rho", "one")),
                                 n_prompts_skipped=rc["n_prompts_skipped"], **extra),
        "kendall_mean": _figure("kendall_tau_b_per_prompt_mean", judges, rc["kendall_mean"], rc["n_prompts"],
                                boot.sums(per.select("prompt_id", "tau", "one"), _ratio("tau", "one")),
                                n_prompts_skipped=rc["n_prompts_skipped"], **extra),
        "spearman_pooled": _figure("spearman_pooled", judges, rc["spearman_pooled"], rc["n_pooled"], **extra),
        "kendall_pooled": _figure("kendall_tau_b_pooled", judges, rc["kendall_pooled"], rc["n_pooled"], **extra)}


def _score_rows(d: _Data, methods: list[str]) -> pl.DataFrame:
    """Response-level aggregate rows of `methods` with their score column as `score`: judge, method,
    prompt_id, response_id, score."""
    parts = []
    for m in methods:
        col = d.mapping[m]["score_column"]
        if col not in ("value", "prob"):
            continue
        parts.append(d.model.filter((pl.col("method") == m) & _response_level()).select(
            "judge", "method", "prompt_id", "response_id", score=pl.col(col)))
    if not parts:
        return pl.DataFrame(schema={"judge": pl.String, "method": pl.String, "prompt_id": pl.Int64,
                                    "response_id": pl.Int64, "score": pl.Float64})
    return pl.concat(parts).filter(pl.col("score").is_not_null() & pl.col("score").is_finite())


def _scores(d: _Data, boot: _Boot) -> dict[str, Any]:
    ratings = _human_ratings(d)
    if ratings.height == 0:
        return _unavailable("no human ratings")
    methods = _mapped(d, "compared_with", ["likert"])
    scores = _score_rows(d, methods)
    if scores.height == 0:
        return _unavailable("no model scores of a method compared with human ratings")
    human = rating_consensus(ratings).select("prompt_id", response_id=pl.col("unit").cast(pl.Int64),
                                             human="consensus")
    rows = []
    for (judge, method), g in scores.group_by("judge", "method", maintain_order=True):
        f = g.join(human, on=["prompt_id", "response_id"], how="inner").select("prompt_id", "score", "human")
        if f.height == 0:
            rows.append({"judge": judge, "method": method, "available": False,
                         "reason": "no response with both a score and a human rating"})
            continue
        rows.append({"judge": judge, "method": method, "available": True, "n_responses": f.height,
                     **_rank_figures(f, [judge, MEAN_RATING], boot, method=method)})
    rows.sort(key=lambda r: (r["method"], r["judge"]))
    # ceiling: each human's ratings against the mean of the others, per prompt, then averaged over humans
    loo = rating_consensus(ratings, leave_one_out=True).filter(pl.col("consensus").is_not_null())
    ceiling = []
    for h in sorted(loo["judge"].unique().to_list()):
        f = loo.filter(pl.col("judge") == h).select("prompt_id", score="value", human="consensus")
        ceiling.append({"judge": h, **_rank_figures(f, [h, LOO_MEAN], boot)})
    means = [c["spearman_mean"]["value"] for c in ceiling if c["spearman_mean"]["value"] is not None]
    ceiling_mean = _figure("spearman_per_prompt_mean", [HUMANS, LOO_MEAN], float(np.mean(means)) if means else None,
                           len(means), aggregate="mean over humans")
    return {"available": True, "methods": rows, "human_ceiling": ceiling, "human_ceiling_mean": ceiling_mean}


# -- best of N -----------------------------------------------------------------------------------------------


def _code_picks(votes: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """Best-pick votes (label = the picked response id as text) relabelled by the response's rank among the
    prompt's picked responses (the id kept in ``raw``), so a consensus needs as many classes as a prompt has
    distinct picks, not one per response of the study."""
    coded = votes.rename({"label": "raw"}).with_columns(
        label=pl.col("raw").cast(pl.Int64).rank("dense").over("prompt_id").cast(pl.Int64).cast(pl.String))
    return coded, sorted(coded["label"].unique().to_list())



def _best_of_n(d: _Data, boot: _Boot) -> dict[str, Any]:
    picks = d.human.filter((pl.col("method") == "best_of_n") & pl.col("response_id").is_not_null())
    if picks.height == 0:
        return _unavailable("no human best-of-N picks")
    human_picks = picks.select("prompt_id", "judge", "response_id")
    # candidates: what the humans were shown (plus their picks); all the prompt's responses when no order stored
    shown = picks.select("prompt_id", response_id=pl.col("shown_order")).explode("response_id").drop_nulls()
    no_order = picks.group_by("prompt_id").agg(pl.col("shown_order").is_not_null().any().alias("has")).filter(
        ~pl.col("has")).select("prompt_id")
    fallback = d.responses.join(no_order, on="prompt_id").filter(
        ~pl.col("origin").is_in(["revision", "aggregate"])).select("prompt_id", "response_id")
    candidates = pl.concat([shown, fallback, human_picks.select("prompt_id", "response_id")]).unique().sort(
        "prompt_id", "response_id")
    prompts = human_picks.select("prompt_id").unique()

    sel_methods = _mapped(d, "score_column", ["response_id"])
    sel = d.model.filter(pl.col("method").is_in(sel_methods) & pl.col("variant").is_null()
                         & pl.col("response_id").is_not_null()).join(prompts, on="prompt_id").select(
        "judge", "method", "prompt_id", "response_id",
        kind=pl.when(pl.col("method") == "select_majority").then(pl.lit("majority")).otherwise(pl.lit("selector")))
    inside = sel.join(candidates, on=["prompt_id", "response_id"], how="semi")
    n_outside = sel.height - inside.height
    score_methods = [m for m in _mapped(d, "score_column", ["value", "prob"])
                     if d.mapping[m]["compared_with"] != "best_of_n"]
    sc = _score_rows(d, score_methods).join(candidates, on=["prompt_id", "response_id"], how="semi")
    sc = sc.with_columns(_top=pl.col("score").max().over("judge", "method", "prompt_id"))
    top = sc.filter(pl.col("score") == pl.col("_top"))
    argmax = (top.group_by("judge", "method", "prompt_id").agg(response_id=pl.col("response_id").min(),
                                                              n_top=pl.len())
              .with_columns(kind=pl.lit("score_argmax")))
    ties = argmax.group_by("judge", "method").agg(n_tied=(pl.col("n_top") > 1).sum().cast(pl.Int64))
    selectors = pl.concat([inside, argmax.select("judge", "method", "prompt_id", "response_id", "kind")])
    keys = selectors.select("judge", "method", "kind").unique().sort("kind", "method", "judge").with_row_index("_s")
    selectors = selectors.join(keys, on=["judge", "method", "kind"]).with_columns(
        selector=pl.format("s{}", "_s"))
    res = best_of_n_accuracy(human_picks, selectors.select("prompt_id", "selector", "response_id") if
                             selectors.height else pl.DataFrame(schema={"prompt_id": pl.Int64, "selector": pl.String,
                                                                        "response_id": pl.Int64}),
                             candidates, majority="")  # kinds are set below
    # the consensus pick and per-prompt statistics for the intervals
    votes = human_picks.select("prompt_id", unit=pl.lit("best"), judge="judge",
                               label=pl.col("response_id").cast(pl.String))
    coded, classes = _code_picks(votes)
    back = coded.select("prompt_id", consensus="label", response="raw").unique()
    cons = (consensus(coded.select(VOTE), classes).select("prompt_id", "consensus")
            .join(back, on=["prompt_id", "consensus"], how="left")
            .select("prompt_id", consensus="response"))
    n_cand = candidates.group_by("prompt_id").agg(N=pl.len())
    sp = selectors.select("selector", "prompt_id", pick=pl.col("response_id").cast(pl.String))
    hit_c = sp.join(cons.filter(pl.col("consensus").is_not_null()), on="prompt_id").group_by(
        "selector", "prompt_id").agg(hit=(pl.col("pick") == pl.col("consensus")).sum().cast(pl.Int64),
                                      one=pl.len().cast(pl.Int64))
    hit_h = sp.join(votes.select("prompt_id", "label"), on="prompt_id").group_by("selector", "prompt_id").agg(
        share=(pl.col("pick") == pl.col("label")).mean()).with_columns(one=pl.lit(1, dtype=pl.Int64))
    rnd = cons.join(n_cand, on="prompt_id").select("prompt_id", p=1.0 / pl.col("N"), one=pl.lit(1, dtype=pl.Int64),
                                                   has=pl.col("consensus").is_not_null())
    info = {r["selector"]: r for r in selectors.select("selector", "judge", "method", "kind").unique().iter_rows(
        named=True)}
    tied = {(r["judge"], r["method"]): r["n_tied"] for r in ties.iter_rows(named=True)}
    rows = []
    for r in res.iter_rows(named=True):
        if r["selector"] == "random":
            judge, method, kind = RANDOM, None, "random"
            ci_c = boot.sums(rnd.filter(pl.col("has")).select("prompt_id", "p", "one"), _ratio("p", "one"))
            ci_h = boot.sums(rnd.select("prompt_id", "p", "one"), _ratio("p", "one"))
        else:
            s = info[r["selector"]]
            judge, method, kind = s["judge"], s["method"], s["kind"]
            ci_c = boot.sums(hit_c.filter(pl.col("selector") == r["selector"]).drop("selector"), _ratio("hit", "one"))
            ci_h = boot.sums(hit_h.filter(pl.col("selector") == r["selector"]).drop("selector"),
                             _ratio("share", "one"))
        extra = {"method": method, "kind": kind}
        row = {"judge": judge, **extra, "n_consensus": r["n_consensus"], "n_no_consensus": r["n_no_consensus"],
               "n_prompts": r["n_prompts"],
               "accuracy_consensus": _figure("top1_accuracy", [judge, CONSENSUS], r["acc_consensus"],
                                             r["n_consensus"], ci_c, **extra),
               "accuracy_human_mean": _figure("top1_accuracy_human_mean", [judge, HUMANS], r["acc_human_mean"],
                                              r["n_prompts"], ci_h, **extra)}
        if kind == "score_argmax":
            row["n_tied_argmax"] = tied.get((judge, method), 0)
        rows.append(row)
    order = {"majority": 0, "selector": 1, "score_argmax": 2, "random": 3}
    rows.sort(key=lambda r: (order[r["kind"]], r["method"] or "", r["judge"]))
    # ceiling: each human's pick against the consensus pick of the others
    loo = consensus(coded.select(VOTE), classes, leave_one_out=True).filter(pl.col("consensus").is_not_null())
    pp = loo.group_by("prompt_id").agg(hit=(pl.col("label") == pl.col("consensus")).sum().cast(pl.Int64),
                                       n=pl.len().cast(pl.Int64))
    n_h = int(pp["n"].sum()) if pp.height else 0
    ceiling = _figure("top1_accuracy", [HUMANS, LOO], int(pp["hit"].sum()) / n_h if n_h else None, n_h,
                      boot.sums(pp, _ratio("hit", "n")))
    n_cons = int(cons["consensus"].is_not_null().sum())
    majority = ({"available": True, "reason": None} if any(r["kind"] == "majority" for r in rows) else
                _unavailable("no select_majority picks (majority vote needs the study's answer extraction)"))
    return {"available": True, "n_prompts": prompts.height, "n_consensus": n_cons,
            "n_no_consensus": cons.height - n_cons, "mean_candidates": _num(n_cand["N"].mean()),
            "n_picks_outside_candidates": n_outside, "selectors": rows, "majority": majority,
            "human_ceiling": ceiling}


# -- calibration ---------------------------------------------------------------------------------------------


def _correct_votes(d: _Data) -> pl.DataFrame:
    c = d.human.filter((pl.col("method") == "correct") & pl.col("response_id").is_not_null()
                       & pl.col("label").is_in(list(CORRECT_CLASSES)))
    return c.select("prompt_id", unit=pl.col("response_id").cast(pl.String), judge="judge", label="label")


def _calibration(d: _Data, boot: _Boot) -> dict[str, Any]:
    votes = _correct_votes(d)
    if votes.height == 0:
        return _unavailable("no human correct / incorrect labels")
    cons = consensus(votes, CORRECT_CLASSES)
    labels = cons.filter(pl.col("consensus").is_not_null()).select(
        "prompt_id", response_id=pl.col("unit").cast(pl.Int64), label=(pl.col("consensus") == "correct").cast(pl.Int64))
    human_rows = []
    if votes["judge"].n_unique() >= 2:
        human_rows = _vs_consensus_rows(votes, None, CORRECT_CLASSES, {}, boot)
    methods = _mapped(d, "compared_with", ["correct"])
    scores = _score_rows(d, methods)
    rows = []
    for (judge, method), g in scores.group_by("judge", "method", maintain_order=True):
        f = g.join(labels, on=["prompt_id", "response_id"], how="inner")
        bad = f.filter((pl.col("score") < 0) | (pl.col("score") > 1)).height
        f = f.filter((pl.col("score") >= 0) & (pl.col("score") <= 1)).select("prompt_id", prob="score", label="label")
        if f.height == 0:
            rows.append({"judge": judge, "method": method, "available": False,
                         "reason": "no response with both a probability and a human consensus label",
                         "n_out_of_range": bad})
            continue
        rep = calibration_report(f)
        judges = [judge, CONSENSUS]
        both = 0 < int(f["label"].sum()) < f.height
        prob, lab = f["prob"].to_numpy(), f["label"].to_numpy()

        def auc_fn(counts: np.ndarray, prompt: np.ndarray, prob: np.ndarray = prob,
                   lab: np.ndarray = lab) -> np.ndarray:
            return auroc_weighted(prob, lab, counts, prompt)

        def ece_fn(counts: np.ndarray, prompt: np.ndarray, prob: np.ndarray = prob,
                   lab: np.ndarray = lab) -> np.ndarray:
            return ece_weighted(prob, lab, counts, prompt)
        sq = f.select("prompt_id", se=(pl.col("prob") - pl.col("label")) ** 2, one=pl.lit(1, dtype=pl.Int64)).group_by(
            "prompt_id").agg(pl.col("se").sum(), pl.col("one").sum())
        extra = {"method": method}
        rows.append({
            "judge": judge, "method": method, "available": True, "n": rep["n"], "n_out_of_range": bad,
            "base_rate": _figure("base_rate", [CONSENSUS, CONSENSUS], rep["base_rate"], rep["n"], **extra),
            "auroc": _figure("auroc", judges, rep["auroc"], rep["n"],
                             boot.weighted(f["prompt_id"], auc_fn) if both else None, **extra),
            "brier": _figure("brier", judges, rep["brier"], rep["n"], boot.sums(sq, _ratio("se", "one")), **extra),
            "ece": _figure("ece", judges, rep["ece"], rep["n"],
                           boot.weighted(f["prompt_id"], ece_fn) if rep["n"] >= 10 else None,
                           bins=10, bins_used=rep["n_bins_used"], binning="equal-count, tied runs kept whole",
                           **extra),
            "rms_ce": _figure("rms_calibration_error", judges, rep["rms_ce"], rep["n"], **extra),
            "accuracy_above_half": _figure("accuracy_above_half", judges, rep["accuracy_above_half"],
                                           rep["n_above_half"], **extra),
            "reliability": rep["bins"] if rep["bins"] is not None else []})
    rows.sort(key=lambda r: (r["method"], r["judge"]))
    n_cons = labels.height
    out: dict[str, Any] = {"available": True, "n_units": cons.height, "n_consensus": n_cons,
                           "n_no_consensus": cons.height - n_cons,
                           "positive_label": "correct", "methods": rows, "human_vs_consensus": human_rows}
    if not rows:
        out["note"] = "no model probabilities of a method compared with human correct labels"
    return out


# -- checklist -----------------------------------------------------------------------------------------------


def _checklist(d: _Data, boot: _Boot) -> dict[str, Any]:
    ans = pl.col("response_id").is_not_null() & pl.col("checklist_item_id").is_not_null() & pl.col("label").is_in(
        list(YES_NO))
    cols = ("prompt_id", "response_id", pl.col("checklist_item_id").alias("item_id"), "judge", "label")
    h = d.human.filter((pl.col("method") == "checklist_item") & ans).select(*cols)
    m = d.model.filter((pl.col("method") == "checklist_item") & ans).select(*cols)
    validity = d.human.filter((pl.col("method") == "criterion_valid") & pl.col("checklist_item_id").is_not_null()
                              & pl.col("label").is_in(["valid", "invalid"])).select(
        "prompt_id", item_id="checklist_item_id", judge="judge", valid=pl.col("label") == "valid")
    if h.height == 0 and validity.height == 0:
        return _unavailable("no human checklist answers")
    questions = d.items.select("item_id", "question")
    out: dict[str, Any] = {"available": True, "n_human_answers": h.height, "n_model_answers": m.height}
    models = []
    if h.height and m.height:
        table = checklist_agreement(h, m)
        hv = h.select("prompt_id", unit=pl.format("{}:{}", "response_id", "item_id"), judge="judge", label="label")
        cons = consensus(hv, YES_NO).select("prompt_id", "unit", "consensus")
        rows = m.with_columns(unit=pl.format("{}:{}", "response_id", "item_id")).join(
            cons, on=["prompt_id", "unit"], how="inner").filter(pl.col("consensus").is_not_null())
        pp_all = _cm_per_prompt(rows, "consensus", "label", YES_NO, ["judge"])
        item_prompt = m.select("item_id", "prompt_id").unique(subset="item_id")
        for judge in sorted(table["judge"].unique().to_list()):
            t = table.filter(pl.col("judge") == judge)
            pooled = t.filter(pl.col("item_id").is_null()).row(0, named=True)
            judges = [judge, CONSENSUS]
            cis = _cm_cis(boot, pp_all.filter(pl.col("judge") == judge).drop("judge"), 2, ("accuracy", "kappa"))
            items = (t.filter(pl.col("item_id").is_not_null())
                     .join(questions, on="item_id", how="left", maintain_order="left")
                     .join(item_prompt, on="item_id", how="left", maintain_order="left"))
            items = _with_external(items, d.prompts)
            models.append({
                "judge": judge, "method": "checklist", "n": pooled["n"], "n_no_consensus": pooled["n_no_consensus"],
                "accuracy": _figure("accuracy", judges, pooled["accuracy"], pooled["n"], cis["accuracy"],
                                    method="checklist"),
                "kappa": _figure("cohen_kappa", judges, pooled["kappa"], pooled["n"], cis["kappa"], method="checklist"),
                "items": [{"item_id": r["item_id"], "question": r["question"], "prompt_id": r["prompt_id"],
                           "external_id": r["external_id"], "n": r["n"], "n_no_consensus": r["n_no_consensus"],
                           "accuracy": _figure("accuracy", judges, r["accuracy"], r["n"], item_id=r["item_id"]),
                           "kappa": _figure("cohen_kappa", judges, r["kappa"], r["n"], item_id=r["item_id"])}
                          for r in items.iter_rows(named=True)]})
    elif h.height:
        out["note"] = "no model checklist answers (method checklist_item)"
    out["models"] = models
    human_rows: list[dict[str, Any]] = []
    ceiling = None
    if h.height and h["judge"].n_unique() >= 2:
        hv = h.select("prompt_id", unit=pl.format("{}:{}", "response_id", "item_id"), judge="judge", label="label")
        human_rows = _vs_consensus_rows(hv, None, YES_NO, {}, boot)
        loo = consensus(hv, YES_NO, leave_one_out=True).filter(pl.col("consensus").is_not_null())
        pp = loo.group_by("prompt_id").agg(hit=(pl.col("label") == pl.col("consensus")).sum().cast(pl.Int64),
                                           n=pl.len().cast(pl.Int64))
        n_h = int(pp["n"].sum()) if pp.height else 0
        ceiling = _figure("accuracy", [HUMANS, LOO], int(pp["hit"].sum()) / n_h if n_h else None, n_h,
                          boot.sums(pp, _ratio("hit", "n")))
    out["human_vs_consensus"] = human_rows
    out["human_ceiling"] = ceiling
    if validity.height:
        cv = criterion_validity(validity)
        per = _with_external(cv["per_item"].join(questions, on="item_id", how="left", maintain_order="left"),
                             d.prompts)
        jd = [HUMANS, HUMANS]
        out["criterion_validity"] = {
            "n_items": cv["n_items"],
            "share_unflagged": _figure("share_unflagged", jd, cv["share_unflagged"], cv["n_items"]),
            "share_valid_consensus": _figure("share_valid_consensus", jd, cv["share_valid_consensus"],
                                             cv["n_consensus"]),
            "vote_share_valid": _figure("vote_share_valid", jd, cv["vote_share_valid"], validity.height),
            "per_item": per.select("prompt_id", "external_id", "item_id", "question", "n_votes", "n_flagged",
                                   "valid_share")}
    else:
        out["criterion_validity"] = _unavailable("no human criterion-validity votes")
    return out


# -- reveal --------------------------------------------------------------------------------------------------

_REVEAL_METHODS = ("best_of_n", "pairwise", "likert", "correct", "checklist_item", "criterion_valid")


def _reveal(d: _Data, boot: _Boot) -> dict[str, Any]:
    h = d.human_all.filter(pl.col("method").is_in(list(_REVEAL_METHODS)))
    key = ["judge", "method", "target_key"]
    b = h.filter(pl.col("stage") == "blind")
    r = h.filter(pl.col("stage") == "revealed")
    pairs = b.join(r.select(*key, "response_id", "response_b_id", "label", "value"), on=key, suffix="_r")
    if pairs.height == 0:
        return _unavailable("no annotator has both a blind and a revealed label on the same item")
    changed = (pl.when(pl.col("method") == "best_of_n").then(pl.col("response_id").ne_missing(pl.col("response_id_r")))
               .when(pl.col("method") == "likert").then(pl.col("value").ne_missing(pl.col("value_r")))
               .otherwise(pl.col("label").ne_missing(pl.col("label_r"))))
    pairs = pairs.with_columns(changed=changed)
    per_unit = pairs.group_by("judge", "prompt_id", "method").agg(changed=pl.col("changed").any())
    per_any = pairs.group_by("judge", "prompt_id").agg(changed=pl.col("changed").any())

    def rate(units: pl.DataFrame, judges: list[str], **extra: Any) -> dict[str, Any]:
        pp = units.group_by("prompt_id").agg(changed=pl.col("changed").sum().cast(pl.Int64), n=pl.len().cast(pl.Int64))
        n = units.height
        return _figure("changed_after_reveal_rate", judges, units["changed"].sum() / n if n else None, n,
                       boot.sums(pp, _ratio("changed", "n")), n_changed=int(units["changed"].sum()), **extra)
    jd = [HUMANS + " (blind)", HUMANS + " (revealed)"]
    by_method = [rate(per_unit.filter(pl.col("method") == m), jd, question=m)
                 for m in _REVEAL_METHODS if per_unit.filter(pl.col("method") == m).height]
    by_annotator = [rate(per_any.filter(pl.col("judge") == a), [f"{a} (blind)", f"{a} (revealed)"], judge=a)
                    for a in sorted(per_any["judge"].unique().to_list())]
    toward = [t for t in (_toward(d, "best_of_n"), _toward(d, "pairwise"), _toward(d, "correct")) if t is not None]
    return {"available": True, "n_annotator_prompts": per_any.height,
            "overall": rate(per_any, jd, question="any"), "by_question": by_method, "by_annotator": by_annotator,
            "toward_others": toward}


def _stage_votes(d: _Data, method: str, stage: str) -> pl.DataFrame:
    """One stage's human votes of a categorical question as a vote frame (for the reveal comparison)."""
    h = d.human_all.filter((pl.col("stage") == stage) & (pl.col("method") == method))
    if method == "best_of_n":
        h = h.filter(pl.col("response_id").is_not_null())
        return h.select("prompt_id", unit=pl.lit("best"), judge="judge", label=pl.col("response_id").cast(pl.String))
    if method == "pairwise":
        h = h.filter(pl.col("response_id").is_not_null() & pl.col("response_b_id").is_not_null()
                     & pl.col("label").is_not_null())
        if h.height == 0:
            return pl.DataFrame(schema=dict.fromkeys(VOTE, pl.String)).cast({"prompt_id": pl.Int64})
        return pairwise_votes(h.select("prompt_id", "judge", "response_id", "response_b_id", "label")).select(VOTE)
    h = h.filter(pl.col("response_id").is_not_null() & pl.col("label").is_in(list(CORRECT_CLASSES)))
    return h.select("prompt_id", unit=pl.col("response_id").cast(pl.String), judge="judge", label="label")


def _toward(d: _Data, method: str) -> dict[str, Any] | None:
    """Did revisions move toward the other humans? Over (annotator, unit) with a blind and a revealed label and a
    leave-one-out BLIND consensus of the other humans: how often the blind and the revised label equal it."""
    blind, revealed = _stage_votes(d, method, "blind"), _stage_votes(d, method, "revealed")
    if blind.height == 0 or revealed.height == 0:
        return None
    if method == "best_of_n":  # response ids → per-prompt codes (few classes)
        both, _ = _code_picks(pl.concat([blind.with_columns(_b=True), revealed.with_columns(_b=False)]))
        blind = both.filter(pl.col("_b")).select(VOTE)
        revealed = both.filter(~pl.col("_b")).select(VOTE)
    classes = sorted(pl.concat([blind["label"], revealed["label"]]).unique().to_list())
    loo = consensus(blind, classes, leave_one_out=True)
    u = loo.join(revealed.rename({"label": "revised"}), on=["prompt_id", "unit", "judge"]).filter(
        pl.col("consensus").is_not_null())
    n = u.height
    if n == 0:
        return {"question": method, "n": 0, "blind_match": None, "revised_match": None, "n_changed": 0,
                "n_moved_toward": 0, "n_moved_away": 0, "moved_toward_others": None,
                "note": "no revised label has a blind consensus of the other humans"}
    bm = int((u["label"] == u["consensus"]).sum())
    rm = int((u["revised"] == u["consensus"]).sum())
    ch = u.filter(pl.col("label") != pl.col("revised"))
    jd = [HUMANS + " (blind)", LOO]
    return {"question": method, "n": n,
            "blind_match": _figure("match_rate", jd, bm / n, n, stage="blind", question=method),
            "revised_match": _figure("match_rate", [HUMANS + " (revealed)", LOO], rm / n, n, stage="revealed",
                                     question=method),
            "n_changed": ch.height,
            "n_moved_toward": int((ch["revised"] == ch["consensus"]).sum()),
            "n_moved_away": int((ch["label"] == ch["consensus"]).sum()),
            "moved_toward_others": rm > bm}


# -- disagreements -------------------------------------------------------------------------------------------


def _all_votes(d: _Data) -> tuple[pl.DataFrame, list[str], list[str]]:
    """Every categorical vote of the stage: human pairwise verdicts, best picks, correct labels and checklist
    answers; model pairwise (orders combined), selector picks and checklist answers. Model judges are named
    "<judge> · <method>". Units are prefixed by the question."""
    parts = []
    human_votes, orders = _pairwise_frames(d)
    if human_votes.height:
        parts.append(human_votes.select("prompt_id", unit=pl.format("pair:{}", "unit"), judge="judge",
                                        label="label", kind=pl.lit("human")))
    if orders is not None:
        parts.append(_combined_orders(d, orders).select("prompt_id", unit=pl.format("pair:{}", "unit"),
                                                   judge=pl.col("judge") + " · pairwise", label="label",
                                                   kind=pl.lit("model")))
    best = d.human.filter((pl.col("method") == "best_of_n") & pl.col("response_id").is_not_null())
    parts.append(best.select("prompt_id", unit=pl.lit("best"), judge="judge",
                             label=pl.col("response_id").cast(pl.String), kind=pl.lit("human")))
    sel = d.model.filter(pl.col("method").is_in(_mapped(d, "score_column", ["response_id"]))
                         & pl.col("variant").is_null() & pl.col("response_id").is_not_null())
    parts.append(sel.select("prompt_id", unit=pl.lit("best"), judge=pl.col("judge") + " · " + pl.col("method"),
                            label=pl.col("response_id").cast(pl.String), kind=pl.lit("model")))
    parts.append(_correct_votes(d).with_columns(unit=pl.format("correct:{}", "unit"), kind=pl.lit("human")))
    ans = ((pl.col("method") == "checklist_item") & pl.col("response_id").is_not_null()
           & pl.col("checklist_item_id").is_not_null() & pl.col("label").is_in(list(YES_NO)))
    for frame, kind, suffix in ((d.human, "human", None), (d.model, "model", " · checklist")):
        c = frame.filter(ans)
        parts.append(c.select("prompt_id", unit=pl.format("check:{}:{}", "response_id", "checklist_item_id"),
                              judge=pl.col("judge") + suffix if suffix else pl.col("judge"), label="label",
                              kind=pl.lit(kind)))
    votes = pl.concat([p.cast({"prompt_id": pl.Int64}) for p in parts if p.height], how="vertical_relaxed") if any(
        p.height for p in parts) else pl.DataFrame(schema={"prompt_id": pl.Int64, "unit": pl.String,
                                                            "judge": pl.String, "label": pl.String, "kind": pl.String})
    humans = sorted(votes.filter(pl.col("kind") == "human")["judge"].unique().to_list())
    models = sorted(votes.filter(pl.col("kind") == "model")["judge"].unique().to_list())
    return votes, humans, models


def _disagreements(d: _Data) -> dict[str, Any]:
    votes, humans, models = _all_votes(d)
    if not humans:
        return _unavailable("no human categorical labels")
    pos = d.prompts.select("prompt_id", "external_id", "position")

    def ranked(pp: pl.DataFrame, judges: list[str]) -> list[dict[str, Any]]:
        r = (pp.filter(pl.col("s1_n") > 0)
             .with_columns(n_disagree=pl.col("s1_n") - pl.col("s1_agree"),
                           score=(pl.col("s1_n") - pl.col("s1_agree")) / pl.col("s1_n"))
             .filter(pl.col("n_disagree") > 0).join(pos, on="prompt_id", how="left")
             .sort(["score", "n_disagree", "position"], descending=[True, True, False]).head(TOP_DISAGREED))
        return [{"prompt_id": x["prompt_id"], "external_id": x["external_id"],
                 "score": _figure("disagreement_rate", judges, x["score"], x["s1_n"], n_disagree=x["n_disagree"])}
                for x in r.iter_rows(named=True)]
    out: dict[str, Any] = {"available": True, "top": TOP_DISAGREED,
                           "score": ("disagreement_rate = 1 − MT-Bench S1 agreement over the prompt's units: the "
                                     "share of disagreeing vote pairs (ties count as a class)")}
    v = votes.select(VOTE)
    out["human_human"] = (ranked(mtbench_agreement(v, humans, humans, by_prompt=True), [HUMANS, HUMANS])
                          if len(humans) >= 2 else [])
    # models against humans count only units the humans judged: the rest need not be passed on
    near = v.join(votes.filter(pl.col("kind") == "human").select("prompt_id", "unit").unique(),
                  on=["prompt_id", "unit"], how="semi")
    near_models = [m for m in models if m in set(near["judge"].unique().to_list())]
    out["human_model"] = (ranked(mtbench_agreement(near, near_models, humans, by_prompt=True), ["models", HUMANS])
                          if near_models else [])
    return out


# -- headline ------------------------------------------------------------------------------------------------


def _find(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


def _headline(d: _Data, rep: dict[str, Any]) -> dict[str, Any]:
    pairs = d.model.select("judge", "method").unique().with_columns(
        method=pl.col("method").replace(METHOD_OF)).unique().sort("method", "judge")
    rows = []
    for judge, method in pairs.iter_rows():
        info = d.mapping.get(method)
        row: dict[str, Any] = {"judge": judge, "method": method, "compared_with": None, "human_question": None,
                               "metric_family": None, "main": None, "kappa": None, "ceiling": None,
                               "baseline": None, "reason": None}
        if info is None:
            row["reason"] = "method not in the method table (no human question mapped)"
            rows.append(row)
            continue
        row.update(compared_with=info["compared_with"], human_question=info["human_question"],
                   metric_family=info["metric_family"])
        q = info["compared_with"]
        if q == "pairwise":
            sec = rep["pairwise"]
            if not sec.get("available"):
                row["reason"] = sec.get("reason")
            else:
                a = _find(sec["agreement"], judges=[judge, HUMANS], order="combined")
                v = _find(sec["vs_consensus"], judge=judge, order="combined")
                hh = _find(sec["agreement"], judges=[HUMANS, HUMANS])
                row.update(main=a["s1"] if a else None, kappa=v["kappa"] if v else None,
                           ceiling=hh["s1"] if hh else None)
                if a is None:
                    row["reason"] = "no pairwise verdict of this judge on a pair humans judged"
        elif q == "likert":
            sec = rep["scores"]
            s = _find(sec.get("methods", []), judge=judge, method=method) if sec.get("available") else None
            if s is None or not s.get("available"):
                row["reason"] = (s or sec).get("reason") or "no scores"
            else:
                row.update(main=s["spearman_mean"], ceiling=sec["human_ceiling_mean"])
        elif q == "best_of_n":
            sec = rep["best_of_n"]
            rows_ = sec.get("selectors", []) if sec.get("available") else []
            s = next((r for r in rows_ if r["judge"] == judge and r["method"] == method
                      and r["kind"] in ("selector", "majority")), None)
            if s is None:
                row["reason"] = (sec.get("reason") if not sec.get("available") else
                                 "no pick of a shown response on a prompt with human picks"
                                 + (" (this method writes a new response instead of picking one)"
                                    if method == "gsa" else ""))
            else:
                rnd = _find(rows_, kind="random")
                row.update(main=s["accuracy_consensus"], ceiling=sec["human_ceiling"],
                           baseline=rnd["accuracy_consensus"] if rnd else None)
        elif q == "correct":
            sec = rep["calibration"]
            s = _find(sec.get("methods", []), judge=judge, method=method) if sec.get("available") else None
            if s is None or not s.get("available"):
                row["reason"] = (s or sec).get("reason") or "no probabilities"
            else:
                row["main"] = s["auroc"]
                row["reason"] = "AUROC has no human–human counterpart (see calibration.human_vs_consensus)"
        elif q == "checklist":
            sec = rep["checklist"]
            s = _find(sec.get("models", []), judge=judge) if sec.get("available") else None
            if s is None:
                row["reason"] = sec.get("reason") or sec.get("note") or "no checklist answers"
            else:
                row.update(main=s["accuracy"], kappa=s["kappa"], ceiling=sec.get("human_ceiling"))
        rows.append(row)
    if not rows:
        return _unavailable("no model judgments")
    return {"available": True, "rows": rows}


# -- the report ----------------------------------------------------------------------------------------------


def _section(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001 - one failing section must not take the report down
        return _unavailable(f"could not compute: {type(e).__name__}: {e}")


def build_report(db: Database, study_id: int, *, stage: str = "blind", n_boot: int = 1000,
                 seed: int = 0, method_info: MethodInfo = _no_method_info) -> dict[str, Any]:
    """The agreement report of a study as a JSON-ready dict (``"format": "critlab.agreement/1"``; keys in
    docs/formats.md). `stage` picks the human labels ('blind', the default, or 'revealed'); intervals are
    percentile bootstraps over prompts with `n_boot` resamples (0 = none) drawn with numpy default_rng(`seed`).
    `method_info(method_id)` gives the method table's mapping (compared_with, metric_family, score_column, ...)
    of a model method, or None when unknown; the app passes `app.services.agreement.method_info`, since
    storage does not import the method classes."""
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
    order = ["format", "study", "bootstrap", "counts", "methods", "settings_history", "headline", "pairwise",
             "ratings", "scores", "best_of_n", "calibration", "checklist", "reveal", "disagreements"]
    return _jsonable({k: rep[k] for k in order})


# -- rendering -----------------------------------------------------------------------------------------------


def _f(x: Any, digits: int = 3) -> str:
    v = _num(x)
    return "–" if v is None else f"{v:.{digits}f}"


def _fig(fig: dict[str, Any] | None, *, n: bool = True) -> str:
    """A figure as '0.412 [0.201, 0.600] (n=37)'."""
    if not fig:
        return "–"
    s = _f(fig.get("value"))
    if interval_text(fig):
        s += " " + interval_text(fig)
    if n:
        s += f" (n={fig.get('n', 0)})"
    return s


def _vs(fig: dict[str, Any] | None) -> str:
    return " vs ".join(fig["judges"]) if fig else "–"


class _Doc:
    """Blocks shared by the Markdown and HTML renderers, so both show the same numbers."""

    def __init__(self) -> None:
        self.blocks: list[tuple[str, Any]] = []

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", (level, text)))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, headers: list[str], rows: list[list[Any]]) -> None:
        self.blocks.append(("table", (headers, [["–" if c is None else str(c) for c in r] for r in rows])))

    def svg(self, svg: str) -> None:
        self.blocks.append(("svg", svg))


def _reliability_svg(bins: list[dict[str, Any]], title: str) -> str:
    """A reliability diagram (confidence vs accuracy per equal-count bin, the diagonal = perfect calibration)
    as inline SVG; every text from data is escaped."""
    w = h = 260
    pad = 36
    size = w - 2 * pad

    def x(v: float) -> float:
        return pad + v * size

    def y(v: float) -> float:
        return h - pad - v * size
    parts = [(f'<svg width="{w}" height="{h + 16}" viewBox="0 0 {w} {h + 16}" '
              f'role="img" aria-label="{html.escape(title, quote=True)}">'),
             f'<title>{html.escape(title)}</title>',
             f'<rect x="{pad}" y="{pad}" width="{size}" height="{size}" fill="#fafafa" stroke="#999"/>',
             f'<line x1="{x(0)}" y1="{y(0)}" x2="{x(1)}" y2="{y(1)}" stroke="#bbb" stroke-dasharray="4 3"/>']
    for t in (0.0, 0.5, 1.0):
        parts.append(f'<text x="{x(t)}" y="{h - pad + 14}" font-size="10" text-anchor="middle">{t:g}</text>')
        parts.append(f'<text x="{pad - 6}" y="{y(t) + 3}" font-size="10" text-anchor="end">{t:g}</text>')
    parts.append(f'<text x="{w / 2}" y="{h - 6}" font-size="11" text-anchor="middle">confidence (mean prob)</text>')
    parts.append(f'<text x="12" y="{h / 2}" font-size="11" text-anchor="middle" '
                 f'transform="rotate(-90 12 {h / 2})">accuracy (share correct)</text>')
    pts = [(b["confidence"], b["accuracy"]) for b in bins if _num(b.get("confidence")) is not None
           and _num(b.get("accuracy")) is not None]
    if pts:
        path = " ".join(f"{x(c):.1f},{y(a):.1f}" for c, a in pts)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#3367d6" stroke-width="1.5"/>')
        for c, a in pts:
            parts.append(f'<circle cx="{x(c):.1f}" cy="{y(a):.1f}" r="3.5" fill="#3367d6"/>')
    parts.append(f'<text x="{w / 2}" y="{pad - 12}" font-size="11" text-anchor="middle">'
                 f'{html.escape(title)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _blocks(rep: dict[str, Any]) -> _Doc:
    doc = _Doc()
    st = rep.get("study", {})
    doc.h(1, f"Agreement report: {st.get('name', '')}")
    b = rep.get("bootstrap", {})
    doc.p(f"Format {rep.get('format')}; human labels at stage '{st.get('stage')}'; 95% percentile bootstrap "
          f"intervals over prompts ({b.get('n_resamples')} resamples, seed {b.get('seed')}).")
    c = rep.get("counts", {})
    doc.table(["prompts", "responses", "prompts with human labels", "humans", "models", "failed model rows",
               "human rows at the other stage (excluded)"],
              [[c.get("n_prompts"), c.get("n_responses"), c.get("n_prompts_with_human_labels"),
                len(c.get("humans", [])), len(c.get("models", [])), c.get("n_model_failed"),
                c.get("n_human_other_stage")]])
    if c.get("unmapped_methods"):
        doc.p("Methods not in the method table (not compared): " + ", ".join(c["unmapped_methods"]))
    settings_blocks(doc, rep.get("settings_history"))

    def unavailable(sec: dict[str, Any]) -> bool:
        if not sec.get("available"):
            doc.p(f"Not available: {sec.get('reason')}")
            return True
        return False

    doc.h(2, "Headline")
    hl = rep.get("headline", {})
    if not unavailable(hl):
        doc.table(["judge", "method", "compared with", "metric", "value [95% CI] (n)", "κ", "human–human ceiling",
                   "baseline", "note"],
                  [[r["judge"], r["method"], r.get("human_question") or "–",
                    r["main"]["metric"] if r.get("main") else "–", _fig(r.get("main")), _fig(r.get("kappa")),
                    (f"{r['ceiling']['metric']}: {_fig(r['ceiling'])}" if r.get("ceiling") else "–"),
                    _fig(r.get("baseline")), r.get("reason") or ""] for r in hl["rows"]])

    doc.h(2, "Pairwise")
    pw = rep.get("pairwise", {})
    if not unavailable(pw):
        u = pw["units"]
        doc.p(f"{u['n_units']} units (prompt, response pair); {u['n_with_consensus']} with a human consensus, "
              f"{u['n_no_consensus']} without (left out of consensus figures); classes in the pair's own order: "
              f"first = lower id wins, second, tie.")
        if u["no_consensus"]:
            doc.table(["prompt id", "external id", "unit", "votes"],
                      [[x["prompt_id"], x["external_id"], x["unit"], x["n_votes"]] for x in u["no_consensus"]])
        doc.h(3, "Raw agreement (MT-Bench)")
        doc.table(["judges", "order", "S1 with ties", "agree / n", "S2 without ties", "agree / n"],
                  [[_vs(r["s1"]), r.get("order") or "–", _fig(r["s1"], n=False),
                    f"{r['s1']['agree']} / {r['s1']['n']}",
                    _fig(r["s2"], n=False), f"{r['s2']['agree']} / {r['s2']['n']}"] for r in pw["agreement"]])
        doc.h(3, "Against the human consensus")
        doc.table(["judges", "kind", "order", "n", "no consensus", "accuracy", "macro P", "macro R", "macro F1",
                   "Cohen's κ"],
                  [[_vs(r["accuracy"]), r["kind"], r.get("order") or "–", r["n"], r["n_no_consensus"],
                    _fig(r["accuracy"], n=False), _fig(r["precision_macro"], n=False),
                    _fig(r["recall_macro"], n=False), _fig(r["f1_macro"], n=False), _fig(r["kappa"], n=False)]
                   for r in pw["vs_consensus"]])
        for r in pw["vs_consensus"]:
            cm = r["confusion"]
            doc.p(f"Confusion matrix, {' vs '.join(cm['judges'])}"
                  + (f" (order {r['order']})" if r.get("order") else "") + ": rows = " + cm["rows"]
                  + ", columns = " + cm["columns"])
            doc.table([f"{cm['rows']} \\ {cm['columns']}", *cm["classes"]],
                      [[cls, *row] for cls, row in zip(cm["classes"], cm["matrix"])])
        doc.h(3, "Cohen's κ for every pair of judges")
        km = pw["kappa_matrix"]
        cell = {tuple(p["judges"]): p for p in km["pairs"]}

        def kappa_cell(a: str, bj: str) -> str:
            pair = cell.get((a, bj)) or cell.get((bj, a))
            return "–" if a == bj or pair is None else _fig(pair["kappa"])
        doc.table(["κ (rows vs columns)", *km["judges"]],
                  [[a, *[kappa_cell(a, bj) for bj in km["judges"]]] for a in km["judges"]])
        fk, al = pw["fleiss_kappa"], pw["krippendorff_alpha"]
        doc.table(["metric", "judges", "value [95% CI] (n)", "detail"],
                  [["Fleiss' κ", _vs(fk), _fig(fk), (f"overlap {fk.get('overlap')} ({fk.get('overlap_source')}); "
                                                     f"{fk.get('n_units_below')} units below, "
                                                     f"{fk.get('n_units_truncated')} truncated")],
                   ["Krippendorff's α (nominal)", _vs(al), _fig(al), al.get("note", "")]])
        if pw["order_swap"]:
            doc.h(3, "Order swap")
            doc.table(["judge", "units in both orders", "consistency", "first-position rate", "tie rate",
                       "accuracy ab", "accuracy ba", "mean of orders", "combined"],
                      [[r["judge"], r["n_units"], _fig(r["consistency"], n=False),
                        _fig(r["first_position_rate"]), _fig(r["tie_rate"], n=False), _fig(r["accuracy_ab"]),
                        _fig(r["accuracy_ba"]), _fig(r["accuracy_order_mean"]), _fig(r["accuracy_combined"])]
                       for r in pw["order_swap"]])

    doc.h(2, "Ratings (human–human)")
    ra = rep.get("ratings", {})
    if not unavailable(ra):
        doc.p(f"{ra['n_ratings']} ratings of {ra['n_units']} responses ({ra['n_units_multi']} rated by two or more "
              f"humans); values {', '.join(_f(v, 0) for v in ra['values'])}.")
        doc.table(["metric", "judges", "value [95% CI] (n)"],
                  [[f["metric"], _vs(f), _fig(f)] for f in ra["krippendorff_alpha"].values()])
        if ra["human_vs_others"]:
            doc.table(["judges", "n", "MAE", "Pearson", "Spearman"],
                      [[_vs(r["mae"]), r["n"], _fig(r["mae"], n=False), _fig(r["pearson"], n=False),
                        _fig(r["spearman"], n=False)] for r in ra["human_vs_others"]])

    doc.h(2, "Scores vs human ratings")
    sc = rep.get("scores", {})
    if not unavailable(sc):
        doc.table(["judges", "method", "prompts (skipped)", "Spearman per prompt", "Kendall τ-b per prompt",
                   "Spearman pooled", "Kendall τ-b pooled"],
                  [[f"{r['judge']} vs {MEAN_RATING}", r["method"], "–", r.get("reason", ""), "", "", ""]
                   if not r.get("available") else
                   [_vs(r["spearman_mean"]), r["method"], f"{r['n_prompts']} ({r['n_prompts_skipped']})",
                    _fig(r["spearman_mean"], n=False), _fig(r["kendall_mean"], n=False),
                    _fig(r["spearman_pooled"]), _fig(r["kendall_pooled"])] for r in sc["methods"]]
                  + [[_vs(r["spearman_mean"]), "human ceiling", f"{r['n_prompts']} ({r['n_prompts_skipped']})",
                      _fig(r["spearman_mean"], n=False), _fig(r["kendall_mean"], n=False),
                      _fig(r["spearman_pooled"]), _fig(r["kendall_pooled"])] for r in sc["human_ceiling"]])
        doc.p(f"Human ceiling (mean over humans of the per-prompt Spearman): {_fig(sc['human_ceiling_mean'])}")

    doc.h(2, "Best of N")
    bn = rep.get("best_of_n", {})
    if not unavailable(bn):
        doc.p(f"{bn['n_prompts']} prompts with human picks; {bn['n_consensus']} with a consensus pick, "
              f"{bn['n_no_consensus']} without; mean N = {_f(bn['mean_candidates'], 2)}; "
              f"{bn['n_picks_outside_candidates']} selector picks outside the shown responses left out.")
        doc.table(["judge", "method", "kind", "top-1 vs consensus", "top-1 vs each human (mean)", "tied argmax"],
                  [[r["judge"], r.get("method") or "–", r["kind"], _fig(r["accuracy_consensus"]),
                    _fig(r["accuracy_human_mean"]), r.get("n_tied_argmax", "")] for r in bn["selectors"]]
                  + [[_vs(bn["human_ceiling"]), "–", "human ceiling", _fig(bn["human_ceiling"]), "–", ""]])
        if not bn["majority"]["available"]:
            doc.p(f"Majority vote: {bn['majority']['reason']}.")

    doc.h(2, "Calibration vs human correct labels")
    ca = rep.get("calibration", {})
    if not unavailable(ca):
        doc.p(f"{ca['n_units']} responses labelled; {ca['n_consensus']} with a consensus label, "
              f"{ca['n_no_consensus']} without." + (f" {ca['note']}." if ca.get("note") else ""))
        ok = [r for r in ca["methods"] if r.get("available")]
        if ca["methods"]:
            doc.p("ECE and RMS-CE: 10 equal-count bins, a run of tied probabilities kept whole in the bin of its "
                  "first element, empty bins dropped; the mean is over the bins used.")
            doc.table(["judges", "method", "n", "base rate", "AUROC", "Brier", "ECE", "bins used", "RMS-CE",
                       "acc. above 0.5"],
                      [[_vs(r["auroc"]), r["method"], r["n"], _fig(r["base_rate"], n=False), _fig(r["auroc"], n=False),
                        _fig(r["brier"], n=False), _fig(r["ece"], n=False), r["ece"].get("bins_used", "–"),
                        _fig(r["rms_ce"], n=False), _fig(r["accuracy_above_half"])] if r.get("available") else
                       [f"{r['judge']} vs {CONSENSUS}", r["method"], 0, r.get("reason", ""), "", "", "", "", "", ""]
                       for r in ca["methods"]])
        for r in ok:
            title = f"{r['judge']} · {r['method']}"
            if r["reliability"]:
                doc.p(f"Reliability diagram, {title} vs {CONSENSUS}")
                doc.svg(_reliability_svg(r["reliability"], title))
                doc.table(["bin", "count", "confidence", "accuracy", "p min", "p max"],
                          [[x["bin"], x["count"], _f(x["confidence"]), _f(x["accuracy"]), _f(x["p_min"]),
                            _f(x["p_max"])] for x in r["reliability"]])
        if ca["human_vs_consensus"]:
            doc.table(["judges", "n", "accuracy", "Cohen's κ"],
                      [[_vs(r["accuracy"]), r["n"], _fig(r["accuracy"], n=False), _fig(r["kappa"], n=False)]
                       for r in ca["human_vs_consensus"]])

    doc.h(2, "Checklist")
    ck = rep.get("checklist", {})
    if not unavailable(ck):
        if ck.get("note"):
            doc.p(ck["note"])
        for r in ck["models"]:
            doc.p(f"{r['judge']}: accuracy {_fig(r['accuracy'])}, κ {_fig(r['kappa'], n=False)} against the human "
                  f"consensus ({r['n_no_consensus']} answers without consensus)")
            doc.table(["prompt id", "external id", "item", "question", "n", "accuracy", "κ"],
                      [[i["prompt_id"], i["external_id"], i["item_id"], i["question"], i["n"],
                        _fig(i["accuracy"], n=False), _fig(i["kappa"], n=False)] for i in r["items"]])
        if ck.get("human_ceiling"):
            doc.p(f"Human ceiling: {_vs(ck['human_ceiling'])}: {_fig(ck['human_ceiling'])}")
        cv = ck["criterion_validity"]
        if cv.get("available", True):
            doc.p(f"Criterion validity ({cv['n_items']} items): unflagged {_fig(cv['share_unflagged'], n=False)}, "
                  f"valid by consensus {_fig(cv['share_valid_consensus'])}, "
                  f"valid votes {_fig(cv['vote_share_valid'])}")
        else:
            doc.p(f"Criterion validity not available: {cv['reason']}")

    doc.h(2, "Reveal")
    rv = rep.get("reveal", {})
    if not unavailable(rv):
        doc.table(["question", "changed after reveal", "changed / (annotator, prompt) pairs"],
                  [[f.get("question"), _fig(f, n=False), f"{f['n_changed']} / {f['n']}"]
                   for f in [rv["overall"], *rv["by_question"]]])
        doc.table(["annotator", "changed after reveal", "changed / pairs"],
                  [[f["judge"], _fig(f, n=False), f"{f['n_changed']} / {f['n']}"] for f in rv["by_annotator"]])
        if rv["toward_others"]:
            doc.table(["question", "n", "blind = others' blind consensus", "revised = it", "changed", "toward",
                       "away", "moved toward the others"],
                      [[t["question"], t["n"], _fig(t["blind_match"], n=False), _fig(t["revised_match"], n=False),
                        t["n_changed"], t["n_moved_toward"], t["n_moved_away"],
                        {True: "yes", False: "no", None: "–"}[t["moved_toward_others"]]]
                       for t in rv["toward_others"]])

    doc.h(2, "Most disagreed items")
    dg = rep.get("disagreements", {})
    if not unavailable(dg):
        doc.p(f"Score: {dg['score']}.")
        for key, title in (("human_human", "Human–human"), ("human_model", "Human–model")):
            doc.h(3, title)
            if dg[key]:
                doc.table(["prompt id", "external id", "disagreement", "disagreeing pairs / pairs"],
                          [[x["prompt_id"], x["external_id"], _f(x["score"]["value"]),
                            f"{x['score']['n_disagree']} / {x['score']['n']}"] for x in dg[key]])
            else:
                doc.p("No disagreement.")
    return doc


def _md_cell(s: str) -> str:
    return html.escape(s, quote=False).replace("|", "\\|").replace("\n", " ")


def report_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown (tables; the reliability diagrams as their bin tables). Text from the data is
    HTML-escaped and pipes are escaped, so a judge name cannot break a table or inject markup."""
    out = []
    for kind, val in _blocks(report).blocks:
        if kind == "h":
            out.append("#" * val[0] + " " + _md_cell(val[1]))
        elif kind == "p":
            out.append(_md_cell(val))
        elif kind == "table":
            headers, rows = val
            out.append("| " + " | ".join(_md_cell(h) for h in headers) + " |")
            out.append("|" + "---|" * len(headers))
            out.extend("| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows)
        out.append("")
    return "\n".join(out)


_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:72rem;color:#222;
padding:0 1rem;line-height:1.4}h1{font-size:1.6rem}h2{font-size:1.3rem;margin-top:2rem;border-bottom:1px solid #ddd}
h3{font-size:1.05rem}table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.85rem}
th,td{border:1px solid #ccc;padding:.2rem .5rem;text-align:left;vertical-align:top}th{background:#f3f3f3}
td{font-variant-numeric:tabular-nums}p{margin:.5rem 0}svg{display:block;margin:.5rem 0}"""


def report_html(report: dict[str, Any]) -> str:
    """The report as one self-contained HTML page: inline CSS, reliability diagrams as inline SVG, confusion
    matrices as tables; no scripts and no external resources. Every text is escaped with html.escape."""
    title = html.escape(f"Agreement report: {report.get('study', {}).get('name', '')}")
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{title}</title>",
           f"<style>{_CSS}</style></head><body>"]
    for kind, val in _blocks(report).blocks:
        if kind == "h":
            out.append(f"<h{val[0]}>{html.escape(val[1])}</h{val[0]}>")
        elif kind == "p":
            out.append(f"<p>{html.escape(val)}</p>")
        elif kind == "table":
            headers, rows = val
            out.append("<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers)
                       + "</tr></thead><tbody>")
            out.extend("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
            out.append("</tbody></table>")
        elif kind == "svg":
            out.append(val)  # built by _reliability_svg from numbers and escaped titles
    out.append("</body></html>")
    return "\n".join(out)
