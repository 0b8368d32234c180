"""The agreement report (storage.analysis.report): a hand-built study whose figures must equal the metrics library
called directly on hand-made frames (plus hand-counted MT-Bench agreement), the JSON conventions (every figure
names its metric and judges; empty sections say why), bootstrap intervals, blind-only figures, an imported
judgments file, and the self-contained, escaped HTML page."""

from __future__ import annotations

import json
import math
import re
import uuid
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from tests.builders import make_prompt, make_responses

from storage import analysis as A
from storage import checklists, judgments
from app.services.agreement import method_info
from storage.analysis.report import build_report, report_html, report_markdown
from storage.db import Database
from storage.import_judgments import import_judgments
from storage.models import JudgmentIn, StudyConfig
from storage.studies import create_study

HUMANS = ["ann1", "ann2", "ann3"]
MODEL = "m-judge"
N_BOOT = 200  # enough to test the intervals; the report's default is 1,000

# Pairwise verdicts on each prompt's pair (r0, r1): the winner's index or "tie" (ann2 sees r1 first).
PAIR = {0: {"ann1": 0, "ann2": 0, "ann3": 1}, 1: {"ann1": 1, "ann2": 1, "ann3": 1},
        2: {"ann1": "tie", "ann2": 0, "ann3": 1}, 3: {"ann1": 0, "ann2": "tie", "ann3": 0}}
# The model's winner when r0 is shown first, and when r1 is shown first; prompt 2 is order-inconsistent.
MODEL_PAIR = {0: (0, 0), 1: (1, 1), 2: (0, 1), 3: (0, 0)}
BEST = {0: {"ann1": 0, "ann2": 2, "ann3": 2}, 1: {"ann1": 1, "ann2": 1, "ann3": 0},
        2: {"ann1": 2, "ann2": 0, "ann3": 1}, 3: {"ann1": 0, "ann2": 0, "ann3": 0}}
USC = {0: 2, 1: 0, 2: 1, 3: 0}  # select_usc's pick
RATE = {0: {"ann1": [6, 3, 7], "ann2": [5, 4, 7], "ann3": [6, 2, 6]},
        1: {"ann1": [2, 6, 4], "ann2": [3, 6, 5], "ann3": [2, 7, 3]},
        2: {"ann1": [4, 4, 5], "ann2": [3, 5, 6], "ann3": [5, 5, 5]},
        3: {"ann1": [7, 1, 3], "ann2": [6, 2, 4], "ann3": [7, 1, 2]}}
JUDGE_SCORE = {0: [5.5, 2.0, 6.1], 1: [3.0, 6.5, 4.0], 2: [4.0, 4.0, 4.0], 3: [6.0, 3.0, 2.0]}  # prompt 2 constant
RUBRIC = {0: [3.0, 2.0, 4.0], 1: [1.0, 4.0, 2.0], 2: [2.0, 3.0, 1.0], 3: [5.0, 1.0, 2.0]}  # aggregate rows
CORRECT = {0: [(1, 1, 1), (0, 0, 1), (1, 1, 0)], 1: [(0, 0, 0), (1, 1, 1), (1, 0, 1)],
           2: [(1, 0, 0), (1, 1, 1), (0, 0, 0)], 3: [(1, 1, 1), (0, 0, 0), (0, 1, 0)]}
P_TRUE = {0: [0.9, 0.35, 0.6], 1: [0.2, 0.8, 0.55], 2: [0.45, 0.7, 0.1], 3: [0.95, 0.3, 0.4]}
# Checklists on prompts 0 and 1 (two items each): per response, per item, each human's and the model's answer.
CHECK_H = {0: [[("YES", "YES", "NO"), ("NO", "NO", None)], [("NO", "NO", "NO"), ("YES", "NO", None)],
               [("YES", "YES", "YES"), ("YES", "YES", None)]],
           1: [[("YES", "NO", "NO"), ("YES", "YES", "YES")], [("NO", "NO", "YES"), ("NO", "NO", "NO")],
               [("YES", "YES", "YES"), ("NO", "YES", "YES")]]}
CHECK_M = {0: [("YES", "YES"), ("YES", "NO"), ("YES", "YES")], 1: [("NO", "YES"), ("NO", "YES"), ("YES", "NO")]}
# ann3 flags item 1 of prompt 0 as not a valid criterion (so answered nothing on it, as in the Label tab)
INVALID = {("ann3", 0, 1)}


def _cls(w: Any) -> str:
    return "tie" if w == "tie" else ("first" if w == 0 else "second")


def rec(db: Database, **kw: Any) -> None:
    judgments.record(db, [JudgmentIn(idempotency_key=uuid.uuid4().hex, **kw)])


class Batch:
    """Collects judgments and stores them in one transaction (fast)."""

    def __init__(self) -> None:
        self.rows: list[JudgmentIn] = []

    def __call__(self, db: Database, **kw: Any) -> None:
        self.rows.append(JudgmentIn(idempotency_key=uuid.uuid4().hex, **kw))


@pytest.fixture(scope="module")
def hand_db(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A database holding the hand-built study, built once for the module (the tests only read it)."""
    database = Database(tmp_path_factory.mktemp("report") / "hand.duckdb")
    try:
        yield database
    finally:
        database.close()


@pytest.fixture(scope="module")
def study(hand_db: Database) -> dict[str, Any]:
    """The hand-built study: 4 prompts × 3 imported responses, 3 humans, one model."""
    db = hand_db
    sid = create_study(db, "hand", config=StudyConfig(overlap=3, questions=["best", "rating", "pairwise", "correct",
                                                                            "checklist"])).id
    P, R, items = [], [], {}
    for k in range(4):
        pid = make_prompt(db, sid, f"q{k}", f"Question {k}?")
        P.append(pid)
        R.append(make_responses(db, pid, [f"answer {k}.{i}" for i in range(3)]))
    for k in (0, 1):
        cl = checklists.create_checklist(db, P[k], MODEL, ["Is it short?", "Is it right?"], method="checklist",
                                         version="1")
        items[k] = [i.id for i in cl.items]
    common = {"study_id": sid}
    rec = Batch()
    for k in range(4):
        r = R[k]
        h = dict(common, prompt_id=P[k], judge_kind="human")
        m = dict(common, prompt_id=P[k], judge_kind="model", judge=MODEL)
        for a in HUMANS:
            shown = [r[1], r[0]] if a == "ann2" else [r[0], r[1]]
            w = PAIR[k][a]
            rec(db, **h, judge=a, method="pairwise", response_id=shown[0], response_b_id=shown[1], shown_order=shown,
                label="tie" if w == "tie" else str(r[w]))
            rec(db, **h, judge=a, method="best_of_n", response_id=r[BEST[k][a]], shown_order=list(r))
            for i in range(3):
                rec(db, **h, judge=a, method="likert", response_id=r[i], value=float(RATE[k][a][i]))
                ok = CORRECT[k][i][HUMANS.index(a)]
                rec(db, **h, judge=a, method="correct", response_id=r[i], value=float(ok),
                    label="correct" if ok else "incorrect")
        # the model: pairwise in both orders, plus a combined row that the report must NOT use
        for first, second, w in ((r[0], r[1], MODEL_PAIR[k][0]), (r[1], r[0], MODEL_PAIR[k][1])):
            rec(db, **m, method="pairwise", variant=f"order:{first}-{second}", response_id=first,
                response_b_id=second, shown_order=[first, second], label=str(r[w]))
        rec(db, **m, method="pairwise", response_id=r[0], response_b_id=r[1], label=str(r[1]))  # wrong on purpose
        rec(db, **m, method="select_usc", response_id=r[USC[k]], shown_order=list(r), value=0.5)
        for i in range(3):
            rec(db, **m, method="judge_score", response_id=r[i], value=JUDGE_SCORE[k][i])
            rec(db, **m, method="rubric", response_id=r[i], value=RUBRIC[k][i])
            rec(db, **m, method="rubric", response_id=r[i], variant="s0", value=0.0)  # per-sample: ignored
            rec(db, **m, method="p_true", response_id=r[i], prob=P_TRUE[k][i], value=P_TRUE[k][i])
        rec(db, **m, method="critique", response_id=r[0], status="failed", error="boom")
        rec(db, **m, method="my_metric", response_id=r[0], value=1.0)
    for k, its in items.items():
        r = R[k]
        for i in range(3):
            for t, item in enumerate(its):
                for hi, a in enumerate(HUMANS):
                    lab = CHECK_H[k][i][t][hi]
                    if lab is not None:
                        rec(db, study_id=sid, prompt_id=P[k], judge_kind="human", judge=a, method="checklist_item",
                            response_id=r[i], checklist_item_id=item, label=lab)
                rec(db, study_id=sid, prompt_id=P[k], judge_kind="model", judge=MODEL, method="checklist_item",
                    response_id=r[i], checklist_item_id=item, label=CHECK_M[k][i][t], prob=0.5)
        for t, item in enumerate(its):
            for a in HUMANS:
                bad = (a, k, t) in INVALID
                rec(db, study_id=sid, prompt_id=P[k], judge_kind="human", judge=a, method="criterion_valid",
                    checklist_item_id=item, label="invalid" if bad else "valid")
    # reveal: ann1 changes its best pick on prompt 0 (toward the others) and its pairwise verdict on prompt 1;
    # ann2 confirms its best pick on prompt 2 unchanged
    rec(db, study_id=sid, prompt_id=P[0], judge_kind="human", judge="ann1", method="best_of_n", response_id=R[0][2],
        shown_order=list(R[0]), stage="revealed")
    rec(db, study_id=sid, prompt_id=P[1], judge_kind="human", judge="ann1", method="pairwise", response_id=R[1][0],
        response_b_id=R[1][1], label=str(R[1][0]), stage="revealed")
    rec(db, study_id=sid, prompt_id=P[2], judge_kind="human", judge="ann2", method="best_of_n",
        response_id=R[2][BEST[2]["ann2"]], shown_order=list(R[2]), stage="revealed")
    judgments.record(db, rec.rows)
    return {"sid": sid, "P": P, "R": R, "items": items}


@pytest.fixture(scope="module")
def report(hand_db: Database, study: dict[str, Any]) -> dict[str, Any]:
    return build_report(hand_db, study["sid"], n_boot=N_BOOT, seed=3, method_info=method_info)


# -- hand-made frames (from the literals above, not from the database) ---------------------------------------


def human_pair_votes(s: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame([{"prompt_id": s["P"][k], "unit": f"{s['R'][k][0]}-{s['R'][k][1]}", "judge": a,
                          "label": _cls(PAIR[k][a])} for k in range(4) for a in HUMANS])


def model_order_votes(s: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame([{"prompt_id": s["P"][k], "unit": f"{s['R'][k][0]}-{s['R'][k][1]}", "judge": MODEL,
                          "shown": shown, "label": _cls(MODEL_PAIR[k][j])}
                         for k in range(4) for j, shown in enumerate(("ab", "ba"))])


def ratings(s: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame([{"prompt_id": s["P"][k], "unit": str(s["R"][k][i]), "judge": a, "value": float(RATE[k][a][i])}
                         for k in range(4) for a in HUMANS for i in range(3)])


def approx(x: float | None) -> Any:
    """The report's value for a library figure: equal up to the report's 12 significant digits; nan → None."""
    return None if x is None or math.isnan(x) else pytest.approx(x, rel=1e-11, abs=1e-12)


def figures(x: Any) -> list[dict[str, Any]]:
    """Every figure in the report: a dict with a 'metric' key."""
    out = []
    if isinstance(x, dict):
        if "metric" in x and "judges" in x:
            out.append(x)
        for v in x.values():
            out += figures(v)
    elif isinstance(x, list):
        for v in x:
            out += figures(v)
    return out


def find(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    hits = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    assert len(hits) == 1, (match, rows)
    return hits[0]


# -- tests ---------------------------------------------------------------------------------------------------


def test_report_is_stable_json_and_every_figure_names_metric_and_judges(report):
    assert report["format"] == "critlab.agreement/3"
    assert list(report) == ["format", "study", "bootstrap", "counts", "gold", "methods", "settings_history", "headline",
                            "pairwise", "ratings", "scores", "best_of_n", "calibration", "checklist", "reveal",
                            "disagreements", "ppi", "rankings", "annotators", "bias", "planning", "judges",
                            "self_correction", "scaling", "iterations"]
    for key in ("pairwise", "ratings", "scores", "best_of_n", "calibration", "checklist", "reveal", "disagreements",
                "headline"):
        assert report[key]["available"] is True, (key, report[key].get("reason"))
    text = json.dumps(report, allow_nan=False)  # plain JSON: no NaN, no numpy types
    assert json.loads(text) == report
    figs = figures(report)
    assert len(figs) > 100
    for f in figs:
        assert isinstance(f["metric"], str) and f["metric"]
        assert isinstance(f["judges"], list) and f["judges"] and all(isinstance(j, str) for j in f["judges"])
        assert set(f) >= {"metric", "judges", "value", "n", "ci"}
        assert f["value"] is None or isinstance(f["value"], float)
        assert f["ci"] is None or (len(f["ci"]) == 2 and f["ci"][0] <= f["ci"][1])
    c = report["counts"]
    assert (c["n_prompts"], c["n_responses"], c["n_model_failed"], c["n_human_other_stage"]) == (4, 12, 4, 3)
    assert c["unmapped_methods"] == ["my_metric"]
    assert [h["judge"] for h in c["humans"]] == HUMANS
    assert report["bootstrap"] == {"n_resamples": N_BOOT, "seed": 3, "level": 0.95, "unit": "prompt",
                                   "method": "percentile"}


def test_pairwise_equals_library_and_hand_counts(report, study):
    pw = report["pairwise"]
    hv, ov = human_pair_votes(study), model_order_votes(study)
    assert pw["humans"] == HUMANS and pw["models"] == [MODEL]
    assert (pw["units"]["n_units"], pw["units"]["n_no_consensus"]) == (4, 1)
    assert pw["units"]["no_consensus"][0]["external_id"] == "q2"

    # MT-Bench agreement, hand-counted. humans: P0 1/3, P1 3/3, P2 0/3, P3 1/3 → S1 5/12; without ties 5/8.
    hh = find(pw["agreement"], judges=["humans", "humans"])
    assert (hh["s1"]["agree"], hh["s1"]["n"], hh["s2"]["agree"], hh["s2"]["n"]) == (5, 12, 5, 8)
    assert hh["s1"]["metric"] == "mtbench_agreement_s1" and hh["s2"]["metric"] == "mtbench_agreement_s2"
    # model combined (first, second, tie, first): 2 + 3 + 1 + 2 = 8 of 12; without ties 2/3 + 3/3 + 0 + 2/2 = 7/8.
    # The stored combined row (a wrong 'second' on P0) is ignored: it would give 1 + 3 + 1 + 2.
    mh = find(pw["agreement"], judges=[MODEL, "humans"], order="combined")
    assert (mh["s1"]["agree"], mh["s1"]["n"], mh["s2"]["agree"], mh["s2"]["n"]) == (8, 12, 7, 8)
    assert mh["s1"]["value"] == approx(8 / 12)
    comb = A.combine_orders(ov).select("prompt_id", "unit", "judge", "label")
    lib = A.mtbench_agreement(pl.concat([hv, comb]), [MODEL], HUMANS)
    assert (mh["s1"]["value"], mh["s2"]["value"]) == (approx(lib["s1_rate"]), approx(lib["s2_rate"]))
    variants = A.order_variants(ov)
    for order in ("ab", "ba"):
        row = find(pw["agreement"], judges=[MODEL, "humans"], order=order)
        lib = A.mtbench_agreement(pl.concat([hv, variants]), [f"{MODEL}#{order}"], HUMANS)
        assert (row["s1"]["agree"], row["s1"]["n"], row["s2"]["agree"]) == (lib["s1_agree"], lib["s1_n"],
                                                                           lib["s2_agree"])

    # every judge against the consensus (humans leave-one-out), with confusion matrices
    jvc = {r["judge"]: r for r in A.judge_vs_consensus(hv, variants).iter_rows(named=True)}
    for row in pw["vs_consensus"]:
        name = row["judge"] if row["order"] in (None, "combined") else f"{row['judge']}#{row['order']}"
        lib = jvc[name]
        assert (row["n"], row["n_no_consensus"]) == (lib["n"], lib["n_no_consensus"])
        for m in ("accuracy", "precision_macro", "recall_macro", "f1_macro", "kappa"):
            assert row[m]["value"] == approx(lib[m]), (name, m)
        assert row["confusion"]["matrix"] == lib["confusion"]
        assert row["confusion"]["classes"] == ["first", "second", "tie"]
    m = find(pw["vs_consensus"], judge=MODEL, order="combined")
    assert m["accuracy"]["judges"] == [MODEL, "human consensus"]
    assert m["kappa"]["metric"] == "cohen_kappa"
    assert find(pw["vs_consensus"], judge="ann1")["accuracy"]["judges"] == ["ann1", "other humans (consensus)"]

    # Cohen's κ for every pair, Fleiss' κ at the study's overlap, Krippendorff's α
    pk = A.pairwise_kappa(pl.concat([hv, comb]))
    assert len(pw["kappa_matrix"]["pairs"]) == pk.height == 6
    for r in pk.iter_rows(named=True):
        row = find(pw["kappa_matrix"]["pairs"], judges=[r["judge_a"], r["judge_b"]])
        assert row["kappa"]["value"] == approx(r["kappa"]) and row["n"] == r["n"]
        assert row["agreement"]["value"] == approx(r["agreement"])
    fk = A.fleiss_kappa(hv, 3)
    assert pw["fleiss_kappa"]["value"] == approx(fk["kappa"])
    assert (pw["fleiss_kappa"]["n"], pw["fleiss_kappa"]["overlap"]) == (4, 3)
    assert pw["fleiss_kappa"]["overlap_source"] == "study config"
    assert pw["krippendorff_alpha"]["value"] == approx(A.krippendorff_alpha(hv, "nominal",
                                                                            value_domain=A.PAIR_CLASSES))

    # order swap: P2 is the one inconsistent unit
    sw = pw["order_swap"][0]
    lib = A.order_swap(ov, hv).row(0, named=True)
    assert sw["consistency"]["value"] == 0.75 == lib["consistency"]
    assert sw["first_position_rate"]["value"] == approx(lib["first_position_rate"])
    for key, col in (("accuracy_ab", "acc_ab"), ("accuracy_ba", "acc_ba"), ("accuracy_order_mean", "acc_order_mean"),
                     ("accuracy_combined", "acc_combined")):
        assert sw[key]["value"] == approx(lib[col])
        assert sw[key]["judges"] == [MODEL, "human consensus"]


def test_ratings_scores_best_of_n_calibration_checklist_equal_library(report, study):
    P, R = study["P"], study["R"]
    rt = ratings(study)
    ra = report["ratings"]
    for level in ("interval", "ordinal", "nominal"):
        assert ra["krippendorff_alpha"][level]["value"] == approx(A.krippendorff_alpha(rt, level, value_col="value"))
    lib = {r["judge"]: r for r in A.rating_agreement(rt).iter_rows(named=True)}
    for row in ra["human_vs_others"]:
        assert row["mae"]["value"] == approx(lib[row["judge"]]["mae"])
        assert row["spearman"]["value"] == approx(lib[row["judge"]]["spearman"])

    # scores: per-prompt rank correlations against the mean human rating; the rubric's aggregate rows only
    means = rt.group_by("prompt_id", "unit").agg(human=pl.col("value").mean())
    for method, vals in (("judge_score", JUDGE_SCORE), ("rubric", RUBRIC)):
        f = pl.DataFrame([{"prompt_id": P[k], "unit": str(R[k][i]), "score": vals[k][i]}
                          for k in range(4) for i in range(3)]).join(means, on=["prompt_id", "unit"])
        lib = A.rank_correlations(f)
        row = find(report["scores"]["methods"], judge=MODEL, method=method)
        assert row["spearman_mean"]["value"] == approx(lib["spearman_mean"])
        assert row["kendall_mean"]["value"] == approx(lib["kendall_mean"])
        assert row["spearman_pooled"]["value"] == approx(lib["spearman_pooled"])
        assert (row["n_prompts"], row["n_prompts_skipped"]) == (lib["n_prompts"], lib["n_prompts_skipped"])
        assert row["spearman_mean"]["judges"] == [MODEL, "humans (mean rating)"]
    assert find(report["scores"]["methods"], method="judge_score")["n_prompts_skipped"] == 1  # constant on P2

    # best of N: select_usc and score argmax selectors against the human pick, beside random 1/N
    picks = pl.DataFrame([{"prompt_id": P[k], "judge": a, "response_id": R[k][BEST[k][a]]}
                          for k in range(4) for a in HUMANS])
    cand = pl.DataFrame([{"prompt_id": P[k], "response_id": R[k][i]} for k in range(4) for i in range(3)])
    sel = pl.DataFrame([{"prompt_id": P[k], "selector": "select_usc", "response_id": R[k][USC[k]]}
                        for k in range(4)])
    lib = {r["selector"]: r for r in A.best_of_n_accuracy(picks, sel, cand).iter_rows(named=True)}
    bn = report["best_of_n"]
    usc = find(bn["selectors"], method="select_usc")
    assert usc["accuracy_consensus"]["value"] == approx(lib["select_usc"]["acc_consensus"]) == approx(2 / 3)
    assert usc["accuracy_human_mean"]["value"] == approx(lib["select_usc"]["acc_human_mean"])
    rnd = find(bn["selectors"], kind="random")
    assert rnd["accuracy_consensus"]["value"] == approx(1 / 3) and rnd["judge"] == "random (1/N)"
    assert (bn["n_consensus"], bn["n_no_consensus"]) == (3, 1)
    js = find(bn["selectors"], method="judge_score", kind="score_argmax")
    argmax = pl.DataFrame([{"prompt_id": P[k], "selector": "js",
                            "response_id": R[k][max(range(3), key=lambda i: (JUDGE_SCORE[k][i], -i))]}
                           for k in range(4)])
    ref = A.best_of_n_accuracy(picks, argmax, cand).row(0, named=True)
    assert js["accuracy_consensus"]["value"] == approx(ref["acc_consensus"])
    assert js["n_tied_argmax"] == 1  # P2: all three scores equal

    # calibration: P(True) against the majority of the three correct labels
    cal = pl.DataFrame([{"prompt_id": P[k], "prob": P_TRUE[k][i], "label": int(sum(CORRECT[k][i]) >= 2)}
                        for k in range(4) for i in range(3)])
    lib = A.calibration_report(cal)
    row = find(report["calibration"]["methods"], method="p_true")
    assert row["auroc"]["value"] == approx(lib["auroc"])
    assert row["brier"]["value"] == approx(lib["brier"])
    assert row["ece"]["value"] == approx(lib["ece"])
    assert len(row["reliability"]) == 10
    for got, want in zip(row["reliability"], lib["bins"].to_dicts()):
        assert got == {k: approx(v) if isinstance(v, float) else v for k, v in want.items()}
    assert row["auroc"]["judges"] == [MODEL, "human consensus"]
    assert report["calibration"]["n_consensus"] == 12

    # checklist items: the model's YES/NO against the human consensus; criterion validity
    h_rows, m_rows, v_rows = [], [], []
    for k, its in study["items"].items():
        for i in range(3):
            for t, item in enumerate(its):
                for hi, a in enumerate(HUMANS):
                    if CHECK_H[k][i][t][hi] is not None:
                        h_rows.append({"prompt_id": P[k], "response_id": R[k][i], "item_id": item, "judge": a,
                                       "label": CHECK_H[k][i][t][hi]})
                m_rows.append({"prompt_id": P[k], "response_id": R[k][i], "item_id": item, "judge": MODEL,
                               "label": CHECK_M[k][i][t]})
        for t, item in enumerate(its):
            v_rows += [{"prompt_id": P[k], "item_id": item, "judge": a, "valid": (a, k, t) not in INVALID}
                       for a in HUMANS]
    lib = A.checklist_agreement(pl.DataFrame(h_rows), pl.DataFrame(m_rows))
    ck = report["checklist"]
    pooled = lib.filter(pl.col("item_id").is_null()).row(0, named=True)
    model = find(ck["models"], judge=MODEL)
    assert model["accuracy"]["value"] == approx(pooled["accuracy"])
    assert model["kappa"]["value"] == approx(pooled["kappa"])
    assert len(model["items"]) == 4
    for it in model["items"]:
        ref = lib.filter(pl.col("item_id") == it["item_id"]).row(0, named=True)
        assert (it["accuracy"]["value"], it["n"]) == (approx(ref["accuracy"]), ref["n"])
        assert it["question"] in ("Is it short?", "Is it right?")
    cv = A.criterion_validity(pl.DataFrame(v_rows))
    assert ck["criterion_validity"]["share_unflagged"]["value"] == approx(cv["share_unflagged"]) == 0.75

    # the headline reads the method table's mapping
    hl = {(r["judge"], r["method"]): r for r in report["headline"]["rows"]}
    assert hl[(MODEL, "pairwise")]["main"]["metric"] == "mtbench_agreement_s1"
    assert hl[(MODEL, "pairwise")]["ceiling"]["judges"] == ["humans", "humans"]
    assert hl[(MODEL, "pairwise")]["kappa"]["metric"] == "cohen_kappa"
    assert hl[(MODEL, "judge_score")]["main"]["metric"] == "spearman_per_prompt_mean"
    assert hl[(MODEL, "select_usc")]["main"]["value"] == approx(2 / 3)
    assert hl[(MODEL, "select_usc")]["baseline"]["value"] == approx(1 / 3)
    assert hl[(MODEL, "p_true")]["main"]["metric"] == "auroc"
    assert hl[(MODEL, "checklist")]["compared_with"] == "checklist"
    assert hl[(MODEL, "my_metric")]["main"] is None and "method table" in hl[(MODEL, "my_metric")]["reason"]


def test_reveal_and_blind_only_figures(hand_db, report, study):
    db = hand_db
    rv = report["reveal"]
    # (annotator, prompt) with both stages: ann1/P0 (best changed), ann1/P1 (pairwise changed), ann2/P2 (same)
    assert (rv["overall"]["n"], rv["overall"]["n_changed"]) == (3, 2)
    assert rv["overall"]["value"] == approx(2 / 3)
    best = find(rv["by_question"], question="best_of_n")
    assert (best["n"], best["n_changed"]) == (2, 1)
    t = find(rv["toward_others"], question="best_of_n")
    # ann1 P0: blind r0, revised r2 = the others' blind consensus r2; ann2 P2: others split → left out
    assert t["n"] == 1 and t["blind_match"]["value"] == 0.0 and t["revised_match"]["value"] == 1.0
    assert t["moved_toward_others"] is True and t["n_moved_toward"] == 1

    # the revealed pairwise verdict (ann1, P1 → r0) is not in the blind figures (checked against hand frames above);
    # with stage='revealed' only revealed labels count
    assert find(report["pairwise"]["agreement"], judges=["humans", "humans"])["s1"]["n"] == 12
    rev = build_report(db, study["sid"], stage="revealed", n_boot=0, method_info=method_info)
    assert rev["study"]["stage"] == "revealed"
    assert rev["pairwise"]["humans"] == ["ann1"]
    assert rev["best_of_n"]["n_prompts"] == 2
    assert rev["ratings"] == {"available": False, "reason": "no human ratings"}
    with pytest.raises(ValueError, match="stage"):
        build_report(db, study["sid"], stage="final", method_info=method_info)


def test_bootstrap_ci_contains_estimate_and_is_reproducible(hand_db, report, study):
    db = hand_db
    again = build_report(db, study["sid"], n_boot=N_BOOT, seed=3, method_info=method_info)
    assert again == report
    with_ci = [f for f in figures(report) if f["ci"] is not None]
    assert len(with_ci) > 50
    for f in with_ci:
        if f["value"] is not None:
            assert f["ci"][0] - 1e-9 <= f["value"] <= f["ci"][1] + 1e-9, f
    other = build_report(db, study["sid"], n_boot=N_BOOT, seed=4, method_info=method_info)
    assert [f["ci"] for f in figures(other)] != [f["ci"] for f in with_ci]
    assert all(f["ci"] is None for f in figures(build_report(db, study["sid"], n_boot=0, method_info=method_info)))


def test_sections_without_data_say_so(db):
    sid = create_study(db, "empty").id
    pid = make_prompt(db, sid, "only")
    make_responses(db, pid, ["a", "b"])
    rep = build_report(db, sid, n_boot=10, method_info=method_info)
    for key, reason in (("pairwise", "no human pairwise votes"), ("ratings", "no human ratings"),
                        ("scores", "no human ratings"), ("best_of_n", "no human best-of-N picks"),
                        ("calibration", "no human correct / incorrect labels"),
                        ("checklist", "no human checklist answers"), ("headline", "no model judgments")):
        assert rep[key] == {"available": False, "reason": reason}
    assert rep["reveal"]["available"] is False and rep["disagreements"]["available"] is False
    assert rep["counts"]["n_prompts"] == 1
    json.dumps(rep, allow_nan=False)
    md, page = report_markdown(rep), report_html(rep)
    assert "Not available: no human pairwise votes" in md and "no human pairwise votes" in page


def test_disagreements_rank_prompts(report, study):
    dg = report["disagreements"]
    hh = dg["human_human"]
    assert hh and all(x["external_id"] in {"q0", "q1", "q2", "q3"} for x in hh)
    scores = [x["score"]["value"] for x in hh]
    assert scores == sorted(scores, reverse=True)
    assert hh[0]["score"]["metric"] == "disagreement_rate" and hh[0]["score"]["judges"] == ["humans", "humans"]
    assert dg["human_model"] and dg["human_model"][0]["score"]["judges"] == ["models", "humans"]
    assert hh[0]["prompt_id"] in study["P"]


def test_imported_judgments_give_mtbench_agreement(db, tmp_path: Path):
    sid = create_study(db, "imported").id
    winners = [("r1", "r1", "r1", "r2"), ("r2", "tie", "r2", "r2"), ("r1", "r2", "r1", "r1")]
    lines = []
    for n, (h1, h2, m_ab, m_ba) in enumerate(winners):
        lines.append({"item_id": f"i{n}", "prompt": f"Q{n}?",
                      "responses": [{"id": "r1", "text": "one"}, {"id": "r2", "text": "two"}],
                      "judgments": [
                          {"judge": "ann1", "judge_kind": "human", "type": "pairwise", "shown": ["r1", "r2"],
                           "winner": h1},
                          {"judge": "ann2", "judge_kind": "human", "type": "pairwise", "shown": ["r2", "r1"],
                           "winner": h2},
                          {"judge": "gpt-4", "judge_kind": "model", "type": "pairwise", "shown": ["r1", "r2"],
                           "winner": m_ab},
                          {"judge": "gpt-4", "judge_kind": "model", "type": "pairwise", "shown": ["r2", "r1"],
                           "winner": m_ba}]})
    path = tmp_path / "j.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    import_judgments(db, sid, path)
    rep = build_report(db, sid, n_boot=50, method_info=method_info)
    pw = rep["pairwise"]
    assert pw["available"] and pw["humans"] == ["ann1", "ann2"] and pw["models"] == ["gpt-4"]
    hh = find(pw["agreement"], judges=["humans", "humans"])
    # ann1/ann2: i0 agree, i1 r2 vs tie, i2 r1 vs r2 → S1 1/3; S2 drops i1 → 1/2
    assert (hh["s1"]["agree"], hh["s1"]["n"], hh["s2"]["agree"], hh["s2"]["n"]) == (1, 3, 1, 2)
    mh = find(pw["agreement"], judges=["gpt-4", "humans"], order="combined")
    # gpt-4 combined: i0 tie (r1 vs r2), i1 r2, i2 r1 → vs (r1, r1): 0; (r2, tie): 1; (r2, r1): 1 → S1 2/6
    assert (mh["s1"]["agree"], mh["s1"]["n"]) == (2, 6)
    assert (mh["s2"]["agree"], mh["s2"]["n"]) == (2, 3)
    assert pw["order_swap"][0]["consistency"]["value"] == approx(2 / 3)
    hl = find(rep["headline"]["rows"], judge="gpt-4")
    assert hl["main"]["value"] == approx(2 / 6) and hl["ceiling"]["value"] == approx(1 / 3)


def test_html_is_self_contained_and_markdown_has_the_same_numbers(report):
    page = report_html(report)
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "<style>" in page
    assert "http" not in page and not re.search(r"\bsrc\s*=", page) and "<script" not in page
    assert "<link" not in page and "@import" not in page and "url(" not in page
    md = report_markdown(report)
    for text in (md, page):
        assert "8 / 12" in text and "7 / 8" in text  # the model's hand-counted S1 and S2 agreement
        assert "0.667 [" in text  # its S1 rate with the interval
    assert page.count("<svg") == 1  # one reliability diagram: p_true


def test_html_and_markdown_escape_data(db):
    sid = create_study(db, "esc").id
    pid = make_prompt(db, sid, "<img src=x onerror=alert(1)>")
    r = make_responses(db, pid, ["a", "b"])
    rows = [JudgmentIn(study_id=sid, prompt_id=pid, judge_kind="human", judge=name, method="pairwise",
                       response_id=r[0], response_b_id=r[1], label=lab, idempotency_key=uuid.uuid4().hex)
            for name, lab in (("<script>alert(1)</script>", str(r[0])), ("a|b", "tie"))]
    rows += [JudgmentIn(study_id=sid, prompt_id=pid, judge_kind="model", judge="<b>m</b>", method="pairwise",
                        response_id=x, response_b_id=y, variant=f"order:{x}-{y}", label=str(r[0]),
                        idempotency_key=uuid.uuid4().hex) for x, y in ((r[0], r[1]), (r[1], r[0]))]
    judgments.record(db, rows)
    rep = build_report(db, sid, n_boot=0, method_info=method_info)
    assert rep["pairwise"]["humans"] == ["<script>alert(1)</script>", "a|b"]
    page = report_html(rep)
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>m</b>" not in page and "&lt;b&gt;m&lt;/b&gt;" in page
    assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page  # the prompt's external id
    md = report_markdown(rep)
    assert "<script" not in md and "<img" not in md and "a\\|b" in md


def report_format_doc() -> str:
    """docs/formats.md from its agreement-report section on."""
    text = Path(__file__).resolve().parents[1].joinpath("docs", "formats.md").read_text(encoding="utf-8")
    return text[text.index("## Agreement report (JSON)"):]


def undocumented_keys(report: Any) -> list[str]:
    """Every dict key anywhere in `report` that the report's section of docs/formats.md does not name."""
    doc, keys = report_format_doc(), set()

    def walk(x: Any) -> None:
        if isinstance(x, dict):
            keys.update(x)
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
    walk(report)
    return sorted(k for k in keys if f"`{k}`" not in doc)


def test_every_report_key_is_documented(report):
    doc = report_format_doc()
    missing = undocumented_keys(report)
    assert not missing, f"keys not documented in docs/formats.md: {missing}"
    metrics = {f["metric"] for f in figures(report)}
    assert not sorted(m for m in metrics if f"`{m}`" not in doc)
