"""The agreement report at scale: `build_report` over ≈1M judgments of 100k prompts, against a straightforward
pandas implementation of the report's headline metrics.

A synthetic study is generated with numpy (seeded) and bulk-inserted into DuckDB from Arrow tables:
100k prompts × 4 responses with a latent quality per response; a labelled subset (every 7th prompt) judged
by 2–3 of 8 annotators (each with its own noise): best pick (shown order stored), 1–7 ratings, a pairwise
vote on one pair (shown in either order), correct / incorrect labels; on every 49th prompt a 3-item
checklist answered YES/NO plus criterion-validity votes; some revised labels (stage 'revealed') and
superseded edits. Model judges: judge-a runs pairwise (both orders plus the stored combined row) and
select_usc on every prompt, judge_score, p_true and checklist on the labelled prompts; judge-b runs pairwise
on the labelled prompts; a few failed rows.

Each variant runs in a fresh subprocess, so its peak RSS (ru_maxrss: DuckDB's and Arrow's native memory
included, which tracemalloc does not see) is its own:

- `report`: `build_report(db, study, method_info=...)` with the report's default n_boot (1,000 resamples);
- `report-base`: the same without the extended sections (`EXTENDED`: ppi, rankings, annotators, bias, planning,
  judges, self_correction, scaling, iterations; extended=False), to measure what they cost; `report-em`: with
  them and the annotators' Dawid–Skene / MACE fits (annotator_models=True); `report-judges`: with them and the
  opt-in judge × generator table and PRE (judges=True);
- `report-noboot`: the same with n_boot=0 (point estimates only, like the baseline);
- `pandas`: the baseline: current rows loaded into pandas, the headline metrics (per model judge and method:
  the main figure, Cohen's κ, the human–human ceiling, the random baseline) computed with groupby and loops.

Printed: build time, each variant's wall time, CPU time (user + system, all threads) and peak RSS, the
ratios, os.getloadavg(), and the headline numbers of the report next to the baseline's with their largest
difference. Figures only: nothing here asserts on time.

Usage: python bench/analysis.py [--prompts 100000] [--keep DIR] [--variants report,report-base,report-noboot,pandas]
                                [--repeat N]   # each variant N times, interleaved; the median time is printed
       python bench/analysis.py --child DB VARIANT [--profile FILE]   # one run (cProfile to FILE)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VARIANTS = ("report", "report-base", "report-noboot", "pandas")
HUMANS = [f"ann{i}" for i in range(8)]
MODELS = ["judge-a", "judge-b"]
LABELLED_EVERY = 7  # prompts p with p % 7 == 0 are labelled by humans
CHECKLIST_EVERY = 49  # ... and p % 49 == 0 also have a checklist
N_ITEMS = 3
OVERLAP = 2  # study config: annotators per prompt (a third one on half of them is truncated by Fleiss' κ)
SEED = 20261127


# -- the synthetic study -------------------------------------------------------------------------------------

_INSERT = """INSERT INTO judgment (id, study_id, prompt_id, judge_kind, judge, method, target_key, response_id,
    response_b_id, checklist_item_id, shown_order, value, label, prob, stage, status, error, source,
    idempotency_key, created_at, superseded_at, variant)
SELECT id, 1, prompt_id, judge_kind, judge, method,
       -- storage.judgments.target_key, in SQL
       CASE WHEN method = 'best_of_n' OR method LIKE 'select_%' THEN 'prompt:' || prompt_id
            WHEN checklist_item_id IS NOT NULL AND response_id IS NOT NULL
                THEN 'response:' || response_id || ':item:' || checklist_item_id
            WHEN checklist_item_id IS NOT NULL THEN 'item:' || checklist_item_id
            WHEN response_b_id IS NOT NULL
                THEN 'pair:' || least(response_id, response_b_id) || '-' || greatest(response_id, response_b_id)
            WHEN response_id IS NOT NULL THEN 'response:' || response_id
            ELSE 'prompt:' || prompt_id END
       || CASE WHEN is_order THEN '#order:' || response_id || '-' || response_b_id ELSE '' END,
       response_id, response_b_id, checklist_item_id,
       CASE WHEN so0 IS NULL THEN NULL WHEN so2 IS NULL THEN [so0, so1] ELSE [so0, so1, so2, so3] END,
       value, coalesce(label, CAST(winner AS VARCHAR)), prob, stage, status,
       CASE WHEN status = 'failed' THEN 'timeout' END, 'bench', 'k' || id,
       to_timestamp(1790000000 + t), CASE WHEN superseded THEN to_timestamp(1790000000 + t + 3600) END,
       CASE WHEN is_order THEN 'order:' || response_id || '-' || response_b_id END
FROM rows"""

_COLS = ("id", "prompt_id", "judge_kind", "judge", "method", "response_id", "response_b_id", "checklist_item_id",
         "so0", "so1", "so2", "so3", "value", "label", "winner", "prob", "stage", "status", "is_order", "t",
         "superseded")


class _Rows:
    """Judgment rows collected as numpy column blocks, inserted into DuckDB through one Arrow table each."""

    def __init__(self, cur: Any) -> None:
        self.cur = cur
        self.next_id = 1
        self.total = 0

    def add(self, n: int, **cols: Any) -> None:
        import pyarrow as pa

        def col(name: str) -> pa.Array:
            v = cols.get(name)
            if v is None:
                typ = {"value": pa.float64(), "prob": pa.float64(), "t": pa.float64()}.get(name)
                if name in ("judge_kind", "judge", "method", "label", "stage", "status"):
                    typ = pa.string()
                if name in ("is_order", "superseded"):
                    return pa.array(np.zeros(n, dtype=bool))
                return pa.nulls(n, typ or pa.int64())
            if isinstance(v, str):
                return pa.array([v] * n, pa.string())
            arr = np.asarray(v)
            if arr.dtype == object or arr.dtype.kind == "U":
                return pa.array(arr.astype(object), pa.string())
            if arr.dtype.kind == "f" and name not in ("value", "prob", "t"):  # nullable ints as nan-marked floats
                return pa.array(np.where(np.isnan(arr), 0, arr).astype(np.int64), mask=np.isnan(arr))
            return pa.array(arr)
        ids = np.arange(self.next_id, self.next_id + n, dtype=np.int64)
        self.next_id += n
        self.total += n
        cols["id"] = ids
        # registered by name: storage's guarded cursor runs the query one frame down, out of reach of DuckDB's
        # replacement scan of the caller's locals
        self.cur.register("rows", pa.table({c: col(c) for c in _COLS}))
        self.cur.execute(_INSERT)
        self.cur.unregister("rows")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def build(db_path: Path, n_prompts: int) -> int:
    """The synthetic study (module docstring); returns the number of judgment rows."""
    from storage.db import Database
    from storage.models import StudyConfig

    rng = np.random.default_rng(SEED)
    db = Database(db_path)
    cfg = StudyConfig(overlap=OVERLAP, questions=["best", "rating", "pairwise", "correct", "checklist"])
    P, R = n_prompts, 4
    q = rng.normal(size=(P, R))  # latent quality of each response
    rid = np.arange(P)[:, None] * R + np.arange(R)[None, :] + 1  # response ids
    pid = np.arange(P) + 1
    # the pair humans (and every model) judge on each prompt
    pa_ = rng.integers(0, R, P)
    pb_ = (pa_ + rng.integers(1, R, P)) % R
    with db.write() as cur:
        cur.execute("INSERT INTO study (id, name, config) VALUES (1, 'bench', ?)", [cfg.model_dump_json()])
        # two runs (two generator models, one of them also a judge) so that rankings and self-preference have
        # something to compute: samples 0-1 of every prompt come from run 1, samples 2-3 from run 2
        cur.execute("""INSERT INTO generation_run (study_id, engine, model_id, n, temperature, top_p, max_tokens,
                       seed_base, top_logprobs) VALUES (1, 'embedded', 'judge-a', 2, 0.8, 0.9, 256, 0, 5),
                       (1, 'embedded', 'gen-b', 2, 0.8, 0.9, 256, 0, 5)""")
        cur.execute("""INSERT INTO prompt (id, study_id, external_id, position, messages)
                       SELECT i + 1, 1, 'q' || i, i, to_json([{'role': 'user', 'content': 'Question ' || i}])
                       FROM range(?) t(i)""", [P])
        cur.execute("""INSERT INTO response (id, prompt_id, run_id, sample_index, origin, text)
                       SELECT p * 4 + s + 1, p + 1, 1 + s // 2, s % 2, 'sampled',
                              'Answer ' || s || ' to question ' || p || repeat('.', CAST((p * 7 + s * 13) % 50 AS INT))
                       FROM range(?) t(p), range(4) u(s)""", [P])
        ck = np.arange(0, P, CHECKLIST_EVERY)
        cur.execute("""INSERT INTO checklist (id, prompt_id, author, method, version)
                       SELECT c + 1, c * ? + 1, 'judge-a', 'checklist', '1' FROM range(?) t(c)""",
                    [CHECKLIST_EVERY, ck.size])
        cur.execute("""INSERT INTO checklist_item (id, checklist_id, position, question)
                       SELECT c * ? + k + 1, c + 1, k, 'Criterion ' || k || '?' FROM range(?) t(c), range(?) u(k)""",
                    [N_ITEMS, ck.size, N_ITEMS])
        sink = _Rows(cur)

        # -- humans: who labels which prompt
        lab = np.arange(0, P, LABELLED_EVERY)
        n_h = np.where(rng.random(lab.size) < 0.5, 3, 2)
        who = np.argsort(rng.random((lab.size, len(HUMANS))), axis=1)
        slot = np.arange(3)[None, :] < n_h[:, None]
        li, k = np.nonzero(slot)  # one entry per (labelled prompt, annotator slot)
        hp, hj = lab[li], who[li, k]
        sd = np.linspace(0.6, 1.3, len(HUMANS))[hj]
        qh = q[hp] + sd[:, None] * rng.normal(size=(hp.size, R))
        t = hp * 10.0 + k  # the slot order is the order of labelling (Fleiss keeps the first two)
        judge = np.array(HUMANS, dtype=object)[hj]
        m = hp.size
        h = {"judge_kind": "human", "judge": judge, "stage": "blind", "status": "ok"}
        perm = np.argsort(rng.random((m, R)), axis=1)
        shown = rid[hp[:, None], perm]
        best = rid[hp, qh.argmax(axis=1)]
        sink.add(m, **h, prompt_id=pid[hp], method="best_of_n", response_id=best, t=t,
                 **{f"so{i}": shown[:, i] for i in range(R)})
        for s in range(R):
            sink.add(m, **h, prompt_id=pid[hp], method="likert", response_id=rid[hp, s], t=t + 0.1,
                     value=np.clip(np.rint(4 + 1.4 * qh[:, s]), 1, 7))
            ok = qh[:, s] > -0.3
            sink.add(m, **h, prompt_id=pid[hp], method="correct", response_id=rid[hp, s], t=t + 0.2,
                     value=ok.astype(float), label=np.where(ok, "correct", "incorrect"))
        a, b = pa_[hp], pb_[hp]
        d = qh[np.arange(m), a] - qh[np.arange(m), b]
        winner = np.where(d > 0, rid[hp, a], rid[hp, b]).astype(float)
        tie = np.abs(d) < 0.35
        both_bad = tie & (np.minimum(qh[np.arange(m), a], qh[np.arange(m), b]) < -1)
        winner[tie] = np.nan
        label = np.where(both_bad, "both_bad", np.where(tie, "tie", None))
        swap = rng.random(m) < 0.5
        first, second = np.where(swap, rid[hp, b], rid[hp, a]), np.where(swap, rid[hp, a], rid[hp, b])
        sink.add(m, **h, prompt_id=pid[hp], method="pairwise", response_id=first, response_b_id=second,
                 so0=first, so1=second, winner=winner, label=label, t=t + 0.3)
        # revised after the reveal: 10% re-pick the best response, 5% re-judge the pair
        rv = rng.random(m) < 0.10
        qr = qh[rv] + 0.5 * rng.normal(size=(int(rv.sum()), R))
        sink.add(int(rv.sum()), **{**h, "judge": judge[rv], "stage": "revealed"}, prompt_id=pid[hp[rv]],
                 method="best_of_n", response_id=rid[hp[rv], qr.argmax(axis=1)], t=t[rv] + 5e5,
                 **{f"so{i}": shown[rv, i] for i in range(R)})
        rp = rng.random(m) < 0.05
        flip = np.where(rng.random(m) < 0.5, np.where(np.isnan(winner), rid[hp, a], np.nan), winner)[rp]
        sink.add(int(rp.sum()), **{**h, "judge": judge[rp], "stage": "revealed"}, prompt_id=pid[hp[rp]],
                 method="pairwise", response_id=first[rp], response_b_id=second[rp], so0=first[rp],
                 so1=second[rp], winner=flip, label=np.where(np.isnan(flip), "tie", None), t=t[rp] + 5e5)
        # superseded edits: 2% of ratings had an earlier value
        ed = np.nonzero(rng.random(m) < 0.02)[0]
        sink.add(ed.size, **{**h, "judge": judge[ed]}, prompt_id=pid[hp[ed]], method="likert",
                 response_id=rid[hp[ed], 0], value=rng.integers(1, 8, ed.size).astype(float), t=t[ed] - 0.05,
                 superseded=np.ones(ed.size, dtype=bool))

        # -- humans: checklists (answers per response and item, validity votes per item)
        ci = np.nonzero(hp % CHECKLIST_EVERY == 0)[0]
        item_bias = rng.normal(0.3, 0.8, size=(ck.size, N_ITEMS))
        z = q[ck][:, :, None] + item_bias[:, None, :] + 0.6 * rng.normal(size=(ck.size, R, N_ITEMS))  # truth
        cpos = hp[ci] // CHECKLIST_EVERY
        for s in range(R):
            for it in range(N_ITEMS):
                yes = z[cpos, s, it] + sd[ci] * 0.8 * rng.normal(size=ci.size) > 0
                sink.add(ci.size, **{**h, "judge": judge[ci]}, prompt_id=pid[hp[ci]], method="checklist_item",
                         response_id=rid[hp[ci], s], checklist_item_id=cpos * N_ITEMS + it + 1, t=t[ci] + 0.4,
                         label=np.where(yes, "YES", "NO"))
        for it in range(N_ITEMS):
            sink.add(ci.size, **{**h, "judge": judge[ci]}, prompt_id=pid[hp[ci]], method="criterion_valid",
                     checklist_item_id=cpos * N_ITEMS + it + 1, t=t[ci] + 0.5,
                     label=np.where(rng.random(ci.size) < 0.08, "invalid", "valid"))

        # -- models
        for j, (mname, noise, prompts) in enumerate((("judge-a", 0.9, np.arange(P)), ("judge-b", 1.2, lab))):
            n = prompts.size
            qm = q[prompts] + noise * rng.normal(size=(n, R))
            mo = {"judge_kind": "model", "judge": mname, "stage": "blind", "status": "ok"}
            tm = 2e6 + j * 1e6 + prompts * 10.0
            lo_s, hi_s = np.minimum(pa_[prompts], pb_[prompts]), np.maximum(pa_[prompts], pb_[prompts])
            lo, hi = rid[prompts, lo_s], rid[prompts, hi_s]
            labels = {}
            for o, (f_s, s_s) in enumerate(((lo_s, hi_s), (hi_s, lo_s))):
                f, s = rid[prompts, f_s], rid[prompts, s_s]
                d = qm[np.arange(n), f_s] - qm[np.arange(n), s_s] + 0.25 + 0.3 * rng.normal(size=n)  # position bias
                w = np.where(d > 0, f, s).astype(float)
                w[np.abs(d) < 0.2] = np.nan
                labels[o] = w
                sink.add(n, **mo, prompt_id=pid[prompts], method="pairwise", response_id=f, response_b_id=s, so0=f,
                         so1=s, winner=w, label=np.where(np.isnan(w), "tie", None), is_order=np.ones(n, dtype=bool),
                         prob=_sigmoid(d), t=tm + o)
            same = (labels[0] == labels[1]) & ~np.isnan(labels[0])
            comb = np.where(same, labels[0], np.nan)
            sink.add(n, **mo, prompt_id=pid[prompts], method="pairwise", response_id=lo, response_b_id=hi, winner=comb,
                     label=np.where(np.isnan(comb), "tie", None), t=tm + 2)
            if mname != "judge-a":
                continue
            perm = np.argsort(rng.random((n, R)), axis=1)
            shown = rid[prompts[:, None], perm]
            pick = rid[prompts, (qm + 0.5 * rng.normal(size=(n, R))).argmax(axis=1)]
            sink.add(n, **mo, prompt_id=pid[prompts], method="select_usc", response_id=pick, t=tm + 3,
                     **{f"so{i}": shown[:, i] for i in range(R)})
            # pointwise methods on the labelled prompts
            sub = np.nonzero(prompts % LABELLED_EVERY == 0)[0]
            for s in range(R):
                x = qm[sub, s]
                sink.add(sub.size, **mo, prompt_id=pid[prompts[sub]], method="judge_score",
                         response_id=rid[prompts[sub], s], t=tm[sub] + 4, label="no_reference",
                         value=np.round(np.clip(5 + 1.6 * x + 0.3 * rng.normal(size=sub.size), 0, 9), 3))
                p = np.round(_sigmoid(1.2 * x + 0.4 + 0.3 * rng.normal(size=sub.size)), 4)
                sink.add(sub.size, **mo, prompt_id=pid[prompts[sub]], method="p_true", response_id=rid[prompts[sub], s],
                         t=tm[sub] + 5, prob=p, value=p)
            yes_p = _sigmoid(1.5 * (z + 0.7 * rng.normal(size=z.shape)))
            for s in range(R):
                for it in range(N_ITEMS):
                    p = np.round(yes_p[:, s, it], 4)
                    sink.add(ck.size, **mo, prompt_id=pid[ck], method="checklist_item", response_id=rid[ck, s],
                             checklist_item_id=np.arange(ck.size) * N_ITEMS + it + 1, t=2e6 + ck * 10.0 + 6,
                             prob=p, label=np.where(p > 0.5, "YES", "NO"))
                sink.add(ck.size, **mo, prompt_id=pid[ck], method="checklist", response_id=rid[ck, s],
                         t=2e6 + ck * 10.0 + 7, value=(yes_p[:, s, :] > 0.5).mean(axis=1), prob=yes_p[:, s, :].mean(1))
            fail = rng.choice(P, 1000, replace=False)
            sink.add(fail.size, **{**mo, "status": "failed"}, prompt_id=pid[fail], method="critique",
                     response_id=rid[fail, 0], t=2e6 + fail * 10.0 + 8)
    total = sink.total
    db.close()
    return total


# -- the baseline: the headline metrics, straightforwardly in pandas ----------------------------------------


def _unique_mode(labels: Any) -> Any:
    """The most frequent label when it is the only one with that count, else None."""
    counts = labels.value_counts()
    if counts.empty or (len(counts) > 1 and counts.iloc[0] == counts.iloc[1]):
        return None
    return counts.index[0]


def _kappa(a: Any, b: Any) -> float:
    """Cohen's κ of two label columns from their cross table."""
    import pandas as pd

    t = pd.crosstab(a, b)
    labels = sorted(set(t.index) | set(t.columns))
    t = t.reindex(index=labels, columns=labels, fill_value=0)
    n = t.to_numpy().sum()
    po = np.trace(t.to_numpy()) / n
    pe = float((t.sum(axis=1).to_numpy() * t.sum(axis=0).to_numpy()).sum()) / (n * n)
    return (po - pe) / (1 - pe)


def _spearman_mean(df: Any, x: str, y: str) -> float:
    """Mean over prompts of Spearman's ρ between x and y over the prompt's rows; prompts with fewer than two
    rows or a constant side are skipped."""
    rhos = []
    for _, g in df.groupby("prompt_id"):
        if len(g) < 2 or g[x].nunique() < 2 or g[y].nunique() < 2:
            continue
        rhos.append(g[x].rank().corr(g[y].rank()))
    return float(np.mean(rhos)) if rhos else float("nan")


def _pair_class(df: Any) -> Any:
    """Pairwise rows → (unit, class in the unit's own order: first = lower id wins)."""
    lo = df[["response_id", "response_b_id"]].min(axis=1)
    hi = df[["response_id", "response_b_id"]].max(axis=1)
    lab = df["label"]
    cls = np.where(lab.isin(["tie", "both_bad"]), "tie",
                   np.where(lab == lo.astype(str), "first", np.where(lab == hi.astype(str), "second", None)))
    return df.assign(unit=lo.astype(str) + "-" + hi.astype(str), cls=cls)


def pandas_headline(db_path: str) -> dict[str, dict[str, float | None]]:
    """The report's headline numbers for this study, from the current rows loaded into pandas."""
    import duckdb

    con = duckdb.connect(db_path, read_only=True)
    j = con.sql("""SELECT id, prompt_id, judge_kind, judge, method, variant, target_key, response_id, response_b_id,
                          checklist_item_id, shown_order, value, label, prob, stage, status, created_at
                   FROM judgment WHERE study_id = 1 AND superseded_at IS NULL""").df()
    con.close()
    human = j[(j.judge_kind == "human") & (j.stage == "blind")]
    model = j[(j.judge_kind == "model") & (j.status == "ok")].copy()
    model["blind"] = model.stage == "blind"
    model = (model.sort_values(["blind", "created_at", "id"], ascending=False)
             .drop_duplicates(["judge", "method", "target_key"]))
    out: dict[str, dict[str, float | None]] = {}

    # pairwise: model orders combined per unit (a win only when both orders agree), MT-Bench S1 against every
    # human vote, κ against the unique-mode consensus, human–human S1 as the ceiling
    hp = _pair_class(human[(human.method == "pairwise") & human.response_b_id.notna()])[["prompt_id", "unit", "judge",
                                                                                          "cls"]]
    mp = model[(model.method == "pairwise") & model.variant.fillna("").str.startswith("order:")]
    mp = _pair_class(mp)
    comb = (mp.groupby(["prompt_id", "unit", "judge"])["cls"]
            .agg(lambda s: s.iloc[0] if s.nunique() == 1 else "tie").rename("cls").reset_index())
    cons = hp.groupby(["prompt_id", "unit"])["cls"].agg(_unique_mode).rename("consensus").reset_index()
    hh = hp.merge(hp, on=["prompt_id", "unit"], suffixes=("", "_b"))
    hh = hh[hh.judge < hh.judge_b]
    ceiling = float((hh.cls == hh.cls_b).mean())
    for judge, g in comb.groupby("judge"):
        pairs = g.merge(hp, on=["prompt_id", "unit"], suffixes=("_m", "_h"))
        k = g.merge(cons.dropna(subset=["consensus"]), on=["prompt_id", "unit"])
        out[f"{judge} · pairwise"] = {"main": float((pairs.cls_m == pairs.cls_h).mean()),
                                      "kappa": _kappa(k.consensus, k.cls), "ceiling": ceiling, "baseline": None}

    # judge_score vs the mean human rating: Spearman per prompt, averaged; ceiling: each human against the mean
    # of the others, per prompt, averaged over prompts and then over humans
    rt = human[(human.method == "likert") & human.response_id.notna() & human.value.notna()]
    mean_rating = rt.groupby("response_id")["value"].mean().rename("human")
    sums = rt.groupby("response_id")["value"].agg(["sum", "count"])
    loo = rt.join(sums, on="response_id")
    loo = loo[loo["count"] > 1].assign(others=lambda d: (d["sum"] - d["value"]) / (d["count"] - 1))
    per_human = [_spearman_mean(g, "value", "others") for _, g in loo.groupby("judge")]
    rating_ceiling = float(np.mean([r for r in per_human if not math.isnan(r)]))
    for (judge, method), g in model[model.method.isin(["judge_score"])].groupby(["judge", "method"]):
        f = g[["prompt_id", "response_id", "value"]].join(mean_rating, on="response_id", how="inner")
        out[f"{judge} · {method}"] = {"main": _spearman_mean(f, "value", "human"), "kappa": None,
                                      "ceiling": rating_ceiling, "baseline": None}

    # select_usc vs the unique-mode human pick; ceiling: each human against the others' pick; random: 1/N
    picks = human[(human.method == "best_of_n") & human.response_id.notna()]
    pick_cons = picks.groupby("prompt_id")["response_id"].agg(_unique_mode).rename("consensus")
    candidates: dict[int, set[int]] = {}
    for row in picks.itertuples():
        c = candidates.setdefault(row.prompt_id, set())
        c.add(int(row.response_id))
        if row.shown_order is not None:
            c.update(int(x) for x in row.shown_order)
    hits, n_loo = 0, 0
    for _, g in picks.groupby("prompt_id"):
        for i in range(len(g)):
            other = _unique_mode(g.response_id.drop(g.index[i]))
            if other is not None:
                n_loo += 1
                hits += int(g.response_id.iloc[i] == other)
    with_cons = pick_cons.dropna()
    random_1n = float(np.mean([1 / len(candidates[p]) for p in with_cons.index]))
    for (judge, method), g in model[model.method.str.startswith("select_")].groupby(["judge", "method"]):
        g = g[g.prompt_id.isin(with_cons.index)]
        g = g[[int(r) in candidates[p] for p, r in zip(g.prompt_id, g.response_id)]]
        out[f"{judge} · {method}"] = {"main": float((g.response_id.to_numpy() == with_cons[g.prompt_id].to_numpy())
                                                    .mean()), "kappa": None, "ceiling": hits / n_loo,
                                      "baseline": random_1n}

    # p_true vs the unique-mode correct label: AUROC from average ranks (Mann–Whitney)
    corr = human[(human.method == "correct") & human.label.isin(["correct", "incorrect"])]
    corr_cons = corr.groupby("response_id")["label"].agg(_unique_mode).dropna().rename("consensus")
    for (judge, method), g in model[model.method == "p_true"].groupby(["judge", "method"]):
        f = g[g.prob.between(0, 1)].join(corr_cons, on="response_id", how="inner")
        y = (f.consensus == "correct").to_numpy()
        ranks = f.prob.rank().to_numpy()
        n_pos, n_neg = y.sum(), (~y).sum()
        out[f"{judge} · {method}"] = {"main": float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)),
                                      "kappa": None, "ceiling": None, "baseline": None}

    # checklist answers vs the unique-mode human answer per (response, item); ceiling: humans leave-one-out
    ca = human[(human.method == "checklist_item") & human.label.isin(["YES", "NO"])]
    ca_cons = ca.groupby(["response_id", "checklist_item_id"])["label"].agg(_unique_mode).dropna().rename("consensus")
    hits, n_loo = 0, 0
    for _, g in ca.groupby(["response_id", "checklist_item_id"]):
        for i in range(len(g)):
            other = _unique_mode(g.label.drop(g.index[i]))
            if other is not None:
                n_loo += 1
                hits += int(g.label.iloc[i] == other)
    mc = model[(model.method == "checklist_item") & model.label.isin(["YES", "NO"])]
    for judge, g in mc.groupby("judge"):
        f = g.join(ca_cons, on=["response_id", "checklist_item_id"], how="inner")
        out[f"{judge} · checklist"] = {"main": float((f.label == f.consensus).mean()),
                                       "kappa": _kappa(f.consensus, f.label), "ceiling": hits / n_loo,
                                       "baseline": None}
    return dict(sorted(out.items()))


def report_headline(rep: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """The same numbers from the report's headline."""
    out = {}
    for r in rep["headline"]["rows"]:
        out[f"{r['judge']} · {r['method']}"] = {k: (r[k] or {}).get("value") for k in ("main", "kappa", "ceiling",
                                                                                        "baseline")}
    return dict(sorted(out.items()))


# -- running ---------------------------------------------------------------------------------------------


def _peak_rss_mib() -> float:
    # Linux reports ru_maxrss in KiB; it covers native allocations (DuckDB, Arrow, polars, numpy) too
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _pandas_run(db_path: str) -> Callable[[], dict[str, Any]]:
    import duckdb  # noqa: F401 - imported before the timed call, as the report's modules are
    import pandas  # noqa: F401

    def run() -> dict[str, Any]:
        return {"headline": pandas_headline(db_path)}
    return run


def _report_run(db_path: str, n_boot: int | None, **options: bool) -> Callable[[], dict[str, Any]]:
    """build_report with its default n_boot (None) or the given one, and `options` (extended, annotator_models)."""
    from app.services.agreement import method_info
    from storage.analysis.report import build_report
    from storage.db import Database

    db = Database(db_path, read_only=True)

    def run() -> dict[str, Any]:
        kw: dict[str, Any] = dict(options) if n_boot is None else {"n_boot": n_boot, **options}
        rep = build_report(db, 1, method_info=method_info, **kw)
        return {"headline": report_headline(rep), "n_boot": rep["bootstrap"]["n_resamples"],
                "n_intervals": sum(1 for _ in _intervals(rep))}
    return run


def child(db_path: str, variant: str, profile: str | None = None) -> None:
    """One variant in this (fresh) process; prints one JSON line with its figures."""
    options = {"report": {}, "report-base": {"extended": False}, "report-em": {"annotator_models": True},
               "report-judges": {"judges": True}, "report-noboot": {}}
    if variant not in (*options, "pandas"):
        raise SystemExit(f"unknown variant {variant!r}")
    run = (_pandas_run(db_path) if variant == "pandas" else
           _report_run(db_path, 0 if variant == "report-noboot" else None, **options[variant]))
    before = _rss_mib()
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    t0, c0 = time.perf_counter(), time.process_time()
    res = run()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    if prof is not None:
        prof.disable()
        prof.dump_stats(profile)
    print(json.dumps({"variant": variant, "seconds": seconds, "cpu_seconds": cpu, "peak_rss_mib": _peak_rss_mib(),
                      "rss_before_mib": before, "loadavg": os.getloadavg(), **res}))


def _intervals(x: Any) -> Any:
    if isinstance(x, dict):
        if "metric" in x and x.get("ci") is not None:
            yield x
        for v in x.values():
            yield from _intervals(v)
    elif isinstance(x, list):
        for v in x:
            yield from _intervals(v)


def _fmt(v: float | None) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.6f}"


def compare(a: dict[str, dict[str, float | None]], b: dict[str, dict[str, float | None]]) -> float:
    """Print the headline numbers side by side; returns the largest absolute difference."""
    worst = 0.0
    print("| judge · method | figure | report | pandas | |difference| |")
    print("|---|---|---:|---:|---:|")
    for key in sorted(set(a) | set(b)):
        for fig in ("main", "kappa", "ceiling", "baseline"):
            x, y = a.get(key, {}).get(fig), b.get(key, {}).get(fig)
            if x is None and y is None:
                continue
            d = abs(x - y) if x is not None and y is not None else float("inf")
            worst = max(worst, d)
            print(f"| {key} | {fig} | {_fmt(x)} | {_fmt(y)} | {d:.1e} |")
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=100_000)
    ap.add_argument("--keep", help="build the database here (and keep it) instead of a temp directory")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--child", nargs=2, metavar=("DB", "VARIANT"), help=argparse.SUPPRESS)
    ap.add_argument("--profile", help="with --child: write a cProfile of the timed call to this file")
    ap.add_argument("--repeat", type=int, default=1, help="run each variant this many times, interleaved")
    a = ap.parse_args()
    if a.child:
        child(*a.child, profile=a.profile)
        return
    work = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="critlab-bench-analysis-"))
    work.mkdir(parents=True, exist_ok=True)
    db_path = work / f"agreement-{a.prompts}.duckdb"
    if not db_path.exists():
        t0 = time.perf_counter()
        n = build(db_path, a.prompts)
        print(f"built {a.prompts:,} prompts × 4 responses, {n:,} judgments in {time.perf_counter() - t0:.1f} s "
              f"({db_path})")
    results: dict[str, dict[str, Any]] = {}
    runs: dict[str, list[dict[str, Any]]] = {}
    for variant in [v for _ in range(max(1, a.repeat)) for v in a.variants.split(",")]:
        r = subprocess.run([sys.executable, __file__, "--child", str(db_path), variant], capture_output=True,
                           text=True, check=True)
        runs.setdefault(variant, []).append(json.loads(r.stdout.strip().splitlines()[-1]))
        # the run with the median time stands for the variant
        results[variant] = sorted(runs[variant], key=lambda x: x["seconds"])[(len(runs[variant]) - 1) // 2]
        x = runs[variant][-1]
        print(f"{variant}: {x['seconds']:.2f} s (CPU {x['cpu_seconds']:.2f} s), peak RSS {x['peak_rss_mib']:.0f} MiB "
              f"(RSS before {x['rss_before_mib']:.0f} MiB), load average {tuple(round(v, 2) for v in x['loadavg'])}"
              + (f", {x['n_intervals']} intervals × {x['n_boot']} resamples" if "n_boot" in x else ""))
    print()
    print("| variant | time | CPU time | peak RSS | load average (1, 5, 15 min) at the end |")
    print("|---|---:|---:|---:|---|")
    for v, x in results.items():
        print(f"| {v} | {x['seconds']:.2f} s | {x['cpu_seconds']:.2f} s | {x['peak_rss_mib']:,.0f} MiB | "
              f"{', '.join(f'{z:.2f}' for z in x['loadavg'])} |")
    if "report" in results and "report-base" in results:
        def median(variant: str, key: str) -> float:
            xs = sorted(x[key] for x in runs[variant])
            return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2
        print(f"report / report-base (the new sections' cost), medians over {len(runs['report'])} runs each: "
              f"time {median('report', 'seconds') / median('report-base', 'seconds'):.2f}×, CPU time "
              f"{median('report', 'cpu_seconds') / median('report-base', 'cpu_seconds'):.2f}× (time "
              f"{[round(x['seconds'], 1) for x in runs['report']]} vs "
              f"{[round(x['seconds'], 1) for x in runs['report-base']]} s; CPU "
              f"{[round(x['cpu_seconds'], 1) for x in runs['report']]} vs "
              f"{[round(x['cpu_seconds'], 1) for x in runs['report-base']]} s)")
    if "pandas" in results:
        for v in ("report", "report-noboot"):
            if v in results:
                print(f"{v} / pandas: time {results[v]['seconds'] / results['pandas']['seconds']:.2f}×, "
                      f"peak RSS {results[v]['peak_rss_mib'] / results['pandas']['peak_rss_mib']:.2f}×")
        base = next((v for v in ("report", "report-noboot") if v in results), None)
        if base:
            print()
            worst = compare(results[base]["headline"], results["pandas"]["headline"])
            print(f"largest difference between {base} and pandas on the headline: {worst:.1e}")
    if not a.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
