"""The report's sections ppi, rankings, annotators, bias and planning on a hand-built study of two generation
runs (models gen-a and gen-b; the model judge is gen-a itself), each number worked out by hand or by the pure
function of storage.analysis on frames written out here from the design (never from the report's frames)."""

from __future__ import annotations

import math
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from app.services.agreement import method_info
from storage import judgments
from storage.analysis.annotators import dawid_skene, mace
from storage.analysis.bias import length_bias
from storage.analysis.bradley_terry import bradley_terry
from storage.analysis.planning import labels_for_width, ppi_labels_for_width
from storage.analysis.ppi import ppi_summary
from storage.analysis.report import build_report, report_html, report_markdown
from storage.db import Database
from storage.models import JudgmentIn, StudyConfig
from storage.studies import create_study
from tests.builders import make_prompt, make_responses, make_run
from tests.test_agreement_report import undocumented_keys

LEN_A = [10, 40, 20, 30]  # characters of gen-a's response to prompt k
LEN_B = [30, 10, 25, 12]
# human pairwise winners: ann1 sees (a, b), ann2 sees (b, a)
HUMAN = {"ann1": ["a", "a", "b", "a"], "ann2": ["a", "b", "tie", "a"]}
# the model judge gen-a, per prompt: its verdict with a shown first, then with b shown first
MODEL = [("a", "a"), ("a", "b"), ("a", "a"), ("b", "b")]
P_TRUE = {"a": [0.9, 0.8, 0.3, 0.6], "b": [0.2, 0.4, 0.7, 0.5]}
# correct labels on prompts 0 and 1 only; ann2 differs on prompt 1's b (no consensus there)
CORRECT = {"ann1": {(0, "a"): 1, (0, "b"): 0, (1, "a"): 1, (1, "b"): 1},
           "ann2": {(0, "a"): 1, (0, "b"): 0, (1, "a"): 1, (1, "b"): 0}}
DURATION = {"ann1": [1000, 3000, 2000, 5000], "ann2": [4000, 4000, 8000, 6000]}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Any:
    db = Database(tmp_path_factory.mktemp("ext") / "ext.duckdb")
    sid = create_study(db, "two runs", config=StudyConfig(questions=["pairwise", "correct"])).id
    run_a, run_b = make_run(db, sid, "gen-a"), make_run(db, sid, "gen-b")
    R: list[dict[str, int]] = []
    rows: list[JudgmentIn] = []

    def rec(**kw: Any) -> None:
        rows.append(JudgmentIn(study_id=sid, idempotency_key=uuid.uuid4().hex, **kw))
    for k in range(4):
        pid = make_prompt(db, sid, f"q{k}", f"Question {k}?")
        a = make_responses(db, pid, ["x" * LEN_A[k]], run_id=run_a)[0]
        b = make_responses(db, pid, ["y" * LEN_B[k]], run_id=run_b)[0]
        R.append({"a": a, "b": b, "p": pid})
        ids = {"a": a, "b": b}
        for ann, shown in (("ann1", (a, b)), ("ann2", (b, a))):
            w = HUMAN[ann][k]
            rec(prompt_id=pid, judge_kind="human", judge=ann, method="pairwise", response_id=shown[0],
                response_b_id=shown[1], shown_order=list(shown), label="tie" if w == "tie" else str(ids[w]),
                duration_ms=DURATION[ann][k])
            for side in "ab":
                if (k, side) in CORRECT[ann]:
                    ok = CORRECT[ann][(k, side)]
                    rec(prompt_id=pid, judge_kind="human", judge=ann, method="correct", response_id=ids[side],
                        value=float(ok), label="correct" if ok else "incorrect", duration_ms=DURATION[ann][k])
        for (first, second), w in zip(((a, b), (b, a)), MODEL[k]):
            rec(prompt_id=pid, judge_kind="model", judge="gen-a", method="pairwise", variant=f"order:{first}-{second}",
                response_id=first, response_b_id=second, shown_order=[first, second], label=str(ids[w]))
        for side in "ab":
            rec(prompt_id=pid, judge_kind="model", judge="gen-a", method="p_true", response_id=ids[side],
                prob=P_TRUE[side][k], value=P_TRUE[side][k])
    judgments.record(db, rows)
    rep = build_report(db, sid, n_boot=200, seed=1, method_info=method_info, annotator_models=True)
    yield {"db": db, "sid": sid, "R": R, "rep": rep}
    db.close()


def test_ppi_equals_ppi_summary_on_the_designed_items(built):
    sec = built["rep"]["ppi"]
    assert sec["available"] and sec["validity"] == "not established: items were served in file order"
    # labels stored directly, not served by the queue
    assert "flagged" in sec["validity_note"] and sec["serving"] == {"unserved": 4}
    row = next(r for r in sec["rows"] if r["method"] == "p_true")
    # labelled: consensus on prompt 0 a (1), 0 b (0), 1 a (1); 1 b has no consensus; prompts 2-3 unlabelled
    y, f = [1.0, 0.0, 1.0], [P_TRUE["a"][0], P_TRUE["b"][0], P_TRUE["a"][1]]
    fu = [P_TRUE["a"][2], P_TRUE["b"][2], P_TRUE["a"][3], P_TRUE["b"][3]]
    ref = ppi_summary(y, f, fu)
    assert (row["n_labelled"], row["n_unlabelled"], row["n_no_consensus"]) == (3, 4, 1)
    assert row["ppi_plus"]["estimate"] == pytest.approx(ref["ppi_plus"]["estimate"], abs=1e-9)
    assert row["ppi_plus"]["ci"] == pytest.approx([ref["ppi_plus"]["low"], ref["ppi_plus"]["high"]], abs=1e-9)
    assert row["human_only"]["estimate"] == pytest.approx(2 / 3)
    assert row["lambda"] == pytest.approx(ref["ppi_plus"]["lam"], abs=1e-9)
    assert row["effective_n"] == pytest.approx(ref["effective_n"], abs=1e-9)
    assert row["labels_gained"] == pytest.approx(ref["effective_n"] - 3, abs=1e-9)


def test_rankings_of_two_runs_have_the_closed_form_scores(built):
    sec = built["rep"]["rankings"]
    for level, names in (("runs", None), ("models", ["gen-a", "gen-b"])):
        lv = sec[level]
        assert lv["available"], lv
        if names:
            assert lv["generators"] == names
        human, model = lv["rankings"]
        # two generators: θ_a − θ_b = ln(wins_a / wins_b), a tie half each way
        assert human["judge"] == "humans" and human["n_verdicts"] == 8
        s = {r["item"]: r["score"] for r in human["scores"]}
        top, bottom = human["scores"][0]["item"], human["scores"][1]["item"]
        assert s[top] - s[bottom] == pytest.approx(math.log(5.5 / 2.5), abs=1e-6)
        assert model["judge"] == "gen-a" and model["n_verdicts"] == 8
        m = [r["score"] for r in model["scores"]]
        assert m[0] - m[1] == pytest.approx(math.log(5 / 3), abs=1e-6)
        assert model["vs_humans"]["n_items"] == 2 and model["vs_humans"]["spearman"] == pytest.approx(1.0)
    assert sec["models"]["rankings"][0]["scores"][0]["item"] == "gen-a"
    # the same verdicts one row each through storage.analysis.bradley_terry (the section counts them first)
    c = pl.DataFrame({"a": ["gen-a"] * 8, "b": ["gen-b"] * 8,
                      "result": HUMAN["ann1"] + HUMAN["ann2"]})
    ref = {r["item"]: r for r in bradley_terry(c).iter_rows(named=True)}
    for s in sec["models"]["rankings"][0]["scores"]:
        assert s["score"] == pytest.approx(ref[s["item"]]["score"], abs=1e-9)
        assert s["se"] == pytest.approx(ref[s["item"]]["se"], abs=1e-9)
        assert (s["wins"], s["losses"], s["ties"]) == (ref[s["item"]]["wins"], ref[s["item"]]["losses"],
                                                       ref[s["item"]]["ties"])


def test_annotators_agreement_time_and_em_competence(built):
    sec = built["rep"]["annotators"]
    assert sec["models"] is True
    corr = {a["judge"]: a for a in sec["questions"]["correct"]["annotators"]}
    assert corr["ann1"]["n"] == 4 and corr["ann1"]["agreement"] == pytest.approx(0.75)
    votes = pl.DataFrame([{"prompt_id": built["R"][k]["p"], "unit": str(built["R"][k][side]), "judge": ann,
                           "label": "correct" if ok else "incorrect"}
                          for ann, labs in CORRECT.items() for (k, side), ok in labs.items()])
    ds = dict(dawid_skene(votes, ["correct", "incorrect"]).judges.select("judge", "competence").iter_rows())
    mc = dict(mace(votes, ["correct", "incorrect"]).judges.select("judge", "competence").iter_rows())
    for ann in CORRECT:
        assert corr[ann]["dawid_skene"] == pytest.approx(ds[ann], abs=1e-9)
        assert corr[ann]["mace"] == pytest.approx(mc[ann], abs=1e-9)
    times = {t["judge"]: t for t in sec["time_on_task"]}
    assert times["ann1"]["median_seconds"] == pytest.approx(2.5) and times["ann1"]["n_items"] == 4
    assert times["ann2"]["median_seconds"] == pytest.approx(5.0)


def test_bias_length_slope_and_self_preference(built):
    sec = built["rep"]["bias"]
    la, lb = LEN_A, LEN_B
    # humans, A = the response shown first: ann1 saw (a, b), ann2 (b, a); result relative to the first shown
    flip = {"a": "b", "b": "a", "tie": "tie"}
    pairs = pl.DataFrame({"len_a": la + lb, "len_b": lb + la,
                          "result": HUMAN["ann1"] + [flip[w] for w in HUMAN["ann2"]]})
    ref = length_bias(pairs)
    human = next(r for r in sec["length_bias"] if r["judge"] == "humans" and r["kind"] == "pairwise")
    assert human["available"], human
    assert human["slope"] == pytest.approx(ref["slope"], abs=1e-9) and human["n"] == 8 and human["n_ties"] == 1
    assert len(human["curve"]) == 17
    model = next(r for r in sec["length_bias"] if r["judge"] == "gen-a" and r["kind"] == "pairwise")
    assert model["first_position_rate"]["metric"] == "first_position_rate"
    # self-preference of gen-a: humans' unique plurality on prompts 0 (a) and 3 (a) only; the judge's own
    # (gen-a) win share there is 1 and 0, the humans' 1 and 1: d = [0, -1] → mean -0.5, se 0.5
    sp = next(r for r in sec["self_preference"] if r["method"] == "pairwise")
    assert sp["self_preference"] == pytest.approx(-0.5) and sp["se"] == pytest.approx(0.5)
    assert sp["n_prompts"] == 2


def test_planning_halving_a_width_needs_four_times_the_labels(built):
    rep = built["rep"]
    plan = rep["planning"]
    assert plan["available"] and plan["headline"]
    for r in plan["headline"]:
        assert r["target_width"] == pytest.approx(r["width_now"] / 2)
        assert r["n_needed"] == 4 * r["n"] and r["more"] == 3 * r["n"]
        se = r["width_now"] / (2 * 1.959963984540054)
        assert labels_for_width(se, r["n"], r["target_width"])["n_needed"] == r["n_needed"]
    ppi_row = next(r for r in rep["ppi"]["rows"] if r["method"] == "p_true")
    p = next(r for r in plan["ppi"] if r["method"] == "p_true")
    res = {**ppi_row, "level": 0.95}
    expect = ppi_labels_for_width(res, (ppi_row["ppi_plus"]["ci"][1] - ppi_row["ppi_plus"]["ci"][0]) / 2)
    assert p["floor"] == pytest.approx(expect["floor"])
    assert p["n_needed"] == (None if math.isinf(expect["n_needed"]) else expect["n_needed"])


def test_rendered_report_plots_scores_and_curve_and_escapes(built):
    rep = built["rep"]
    page, md = report_html(rep), report_markdown(rep)
    assert "Bradley–Terry scores, humans" in page and "Length bias: preference for A" in page
    assert page.count("<svg") >= 5  # 2 levels × 2 rankings + the length-bias curve
    assert "Judge-corrected estimates (PPI++)" in md and "not established" in md
    # an untrusted generator name reaches the SVG escaped
    evil = {**rep, "rankings": {**rep["rankings"], "models": {**rep["rankings"]["models"], "rankings": [
        {**rep["rankings"]["models"]["rankings"][0],
         "scores": [{**s, "item": "<script>x</script>"} for s in rep["rankings"]["models"]["rankings"][0]["scores"]]}]}}}
    out = report_html(evil)
    assert "<script>x" not in out and "&lt;script&gt;x" in out


def test_without_extended_sections_and_keys_documented(built):
    rep = build_report(built["db"], built["sid"], n_boot=0, method_info=method_info, extended=False)
    for key in ("ppi", "rankings", "annotators", "bias", "planning"):
        assert rep[key] == {"available": False, "reason": "left out: build_report(..., extended=False)"}
    assert not undocumented_keys({k: built["rep"][k] for k in ("ppi", "rankings", "annotators", "bias", "planning")})


def test_one_generator_and_no_pairwise_labels(tmp_path: Path):
    db = Database(tmp_path / "one.duckdb")
    sid = create_study(db, "one").id
    run = make_run(db, sid, "solo")
    rows = []
    for k in range(3):
        pid = make_prompt(db, sid, f"q{k}")
        r = make_responses(db, pid, ["short", "a longer answer"], run_id=run)
        for ann in ("ann1", "ann2"):
            rows.append(JudgmentIn(study_id=sid, prompt_id=pid, judge_kind="human", judge=ann, method="correct",
                                   response_id=r[0], label="correct", value=1.0, idempotency_key=uuid.uuid4().hex))
    judgments.record(db, rows)
    rep = build_report(db, sid, n_boot=20, method_info=method_info)
    assert rep["rankings"] == {"available": False, "reason": "no pairwise verdicts or best-of-N picks"}
    assert rep["bias"]["available"] is False and rep["ppi"]["available"] is False
    assert rep["annotators"]["available"] and rep["annotators"]["models"] is False
    assert "Not available" in report_markdown(rep)
    # one generator with pairwise verdicts: the ranking says so
    pid = db.fetchval("SELECT min(id) FROM prompt WHERE study_id = ?", [sid])
    r = [x[0] for x in db.fetchall("SELECT id FROM response WHERE prompt_id = ? ORDER BY id", [pid])]
    judgments.record(db, [JudgmentIn(study_id=sid, prompt_id=pid, judge_kind="human", judge="ann1", method="pairwise",
                                     response_id=r[0], response_b_id=r[1], label=str(r[0]),
                                     idempotency_key=uuid.uuid4().hex)])
    rep = build_report(db, sid, n_boot=0, method_info=method_info)
    assert rep["rankings"]["runs"] == {"available": False, "reason": "one generator: no ranking (run: run 1)"}
    assert rep["rankings"]["models"]["reason"] == "one generator: no ranking (model: solo)"
    db.close()


def test_ppi_reads_the_serving_record(built):
    """The labelled prompts' first serving decides: all served in random order is uniform; one routed prompt
    makes the study not established."""
    db, sid = built["db"], built["sid"]
    labelled = [r[0] for r in db.fetchall("SELECT DISTINCT prompt_id FROM judgment WHERE study_id = ? AND "
                                          "judge_kind = 'human'", [sid])]
    with db.write() as cur:
        cur.execute("INSERT INTO serving (study_id, prompt_id, annotator, policy, probability) "
                    "SELECT ?, unnest(?::BIGINT[]), 'x', 'random', 0.25", [sid, labelled])
    sec = build_report(db, sid, n_boot=0, method_info=method_info)["ppi"]
    assert sec["validity"] == "uniform" and sec["serving"] == {"random": len(labelled)}
    with db.write() as cur:
        cur.execute("UPDATE serving SET policy = 'disagreement', probability = NULL WHERE prompt_id = ?",
                    [labelled[0]])
    sec = build_report(db, sid, n_boot=0, method_info=method_info)["ppi"]
    assert sec["validity"] == "not established: items were served in file order"
    with db.write() as cur:
        cur.execute("DELETE FROM serving")


@pytest.mark.parametrize("policy", ["random", "informative"])
def test_ppi_validity_follows_the_serving_policy(built, monkeypatch, policy):
    """The serving loader is the one place the policy comes from: uniform serving makes PPI valid as it is;
    known unequal probabilities add the inverse-probability-weighted (active) estimate."""
    from storage.analysis.ppi import active_mean
    from storage.analysis.report import loading

    prob = {R["p"]: 0.5 + 0.1 * k for k, R in enumerate(built["R"])}
    monkeypatch.setattr(loading, "_serving", lambda db, sid, prompts: prompts.select(
        "prompt_id", policy=pl.lit(policy),
        probability=pl.col("prompt_id").replace_strict(prob, return_dtype=pl.Float64)))
    rep = build_report(built["db"], built["sid"], n_boot=0, method_info=method_info)
    sec = rep["ppi"]
    row = next(r for r in sec["rows"] if r["method"] == "p_true")
    if policy == "random":
        assert sec["validity"] == "uniform" and "active" not in row
        return
    assert sec["validity"] == "active (weights from serving probabilities)"
    # the pool: prompts 0-1 labelled (but prompt 1's b has no consensus: out), prompts 2-3 unlabelled
    f = [P_TRUE["a"][0], P_TRUE["b"][0], P_TRUE["a"][1], P_TRUE["a"][2], P_TRUE["b"][2], P_TRUE["a"][3],
         P_TRUE["b"][3]]
    y = [1.0, 0.0, 1.0, np.nan, np.nan, np.nan, np.nan]
    pi = [0.5, 0.5, 0.6, 0.7, 0.7, 0.8, 0.8]
    ref = active_mean(f, y, [True, True, True, False, False, False, False], pi)
    assert row["active"]["estimate"] == pytest.approx(ref["estimate"], abs=1e-9)
    assert row["active"]["ci"] == pytest.approx([ref["low"], ref["high"]], abs=1e-9)
