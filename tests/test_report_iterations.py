"""The report's `iterations` section on a hand-built study of two generation runs linked as iterations (it1 was
trained from it0: `model_registry.set_lineage`, as `--parent-model` records it): the humans' and each judge's
child win rate, the PPI++ estimate and the ranking consistency, each recomputed here from the design by its
definition (PPI++ from the formula, Kendall τ-b with scipy)."""

from __future__ import annotations

import math
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from app.services.agreement import method_info
from storage import judgments
from storage import model_registry as reg
from storage.analysis.report import build_report, report_html, report_markdown
from storage.db import Database
from storage.models import JudgmentIn, ModelIdentity, StudyConfig
from storage.studies import create_study
from tests.builders import make_prompt, make_responses, make_run
from tests.test_agreement_report import undocumented_keys

# prompt -> child (it1) and parent (it0) responses
CHILD = {0: ["c0a", "c0b"], 1: ["c1"], 2: ["c2"], 3: ["c3"]}
PARENT = {0: ["p0"], 1: ["p1"], 2: ["p2"], 3: ["p3"]}
# p_true scores of each response by each iteration as a judge
P_TRUE = {"it1": {"c0a": .9, "c0b": .2, "p0": .5, "c1": .6, "p1": .6, "c2": .8, "p2": .3, "c3": .1, "p3": .7},
          "it0": {"c0a": .4, "c0b": .3, "p0": .8, "c1": .2, "p1": .9, "c2": .7, "p2": .1, "c3": .5, "p3": .6}}
# human verdicts as (child, parent) -> child's win per vote: c0a vs p0 (a win, a tie), c1 vs p1 (a best pick of p1)
HUMAN = {("c0a", "p0"): [1.0, 0.5], ("c1", "p1"): [0.0]}
UNITS = [(c, p, k) for k in CHILD for c in CHILD[k] for p in PARENT[k]]


def _win(sc: float, sp: float) -> float:
    return 1.0 if sc > sp else 0.5 if sc == sp else 0.0


def _ppi_plus(y: list[float], f: list[float], fu: list[float]) -> tuple[float, float]:
    """PPI++ for a mean from its definition (Angelopoulos et al. 2023): (λ, estimate)."""
    y_, f_, fu_ = np.array(y), np.array(f), np.array(fu)
    n, big_n = len(y_), len(fu_)
    cov = np.mean((y_ - y_.mean()) * (f_ - f_.mean()))
    var = np.var(np.concatenate([f_, fu_]), ddof=1)
    lam = float(np.clip(cov / ((1 + n / big_n) * var), 0, 1))
    return lam, float(np.mean(lam * fu_) + np.mean(y_ - lam * f_))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Any:
    db = Database(tmp_path_factory.mktemp("it") / "it.duckdb")
    sid = create_study(db, "iterations", config=StudyConfig(questions=["pairwise", "best"])).id
    for m in ("it0", "it1", "unrelated"):
        reg.record_model(db, ModelIdentity(model_id=m, engine="scripted", name=m))
    reg.set_lineage(db, "it1", "it0", None)
    run0, run1 = make_run(db, sid, "it0"), make_run(db, sid, "it1")
    ids: dict[str, int] = {}
    pids = []
    for k in CHILD:
        pid = make_prompt(db, sid, f"q{k}", f"Question {k}?")
        pids.append(pid)
        ids.update(zip(PARENT[k], make_responses(db, pid, PARENT[k], run_id=run0)))
        ids.update(zip(CHILD[k], make_responses(db, pid, CHILD[k], run_id=run1)))
    rows: list[JudgmentIn] = []

    def rec(**kw: Any) -> None:
        rows.append(JudgmentIn(study_id=sid, idempotency_key=uuid.uuid4().hex, **kw))
    c, p = ids["c0a"], ids["p0"]
    rec(prompt_id=pids[0], judge_kind="human", judge="ann1", method="pairwise", response_id=c, response_b_id=p,
        shown_order=[c, p], label=str(c))
    rec(prompt_id=pids[0], judge_kind="human", judge="ann2", method="pairwise", response_id=p, response_b_id=c,
        shown_order=[p, c], label="tie")
    rec(prompt_id=pids[1], judge_kind="human", judge="ann1", method="best_of_n", response_id=ids["p1"],
        shown_order=[ids["c1"], ids["p1"]])
    for judge, scores in P_TRUE.items():
        for name, s in scores.items():
            k = next(k for k in CHILD if name in CHILD[k] + PARENT[k])
            rec(prompt_id=pids[k], judge_kind="model", judge=judge, method="p_true", response_id=ids[name], prob=s,
                value=s)
    # it1 as a pairwise judge on (c2, p2): the child in one order, the parent in the other
    for first, second, winner in (("c2", "p2", "c2"), ("p2", "c2", "p2")):
        rec(prompt_id=pids[2], judge_kind="model", judge="it1", method="pairwise", variant=f"order:{first}-{second}",
            response_id=ids[first], response_b_id=ids[second], shown_order=[ids[first], ids[second]],
            label=str(ids[winner]))
    # it1 as a selector on prompt 3 picks its own response: a win over p3 (and no verdict on prompt 3's others)
    rec(prompt_id=pids[3], judge_kind="model", judge="it1", method="select_usc", response_id=ids["c3"])
    judgments.record(db, rows)
    rep = build_report(db, sid, n_boot=200, seed=4, method_info=method_info)
    yield {"db": db, "sid": sid, "rep": rep, "ids": ids}
    db.close()


def test_human_and_judge_win_rates_and_ppi(built):
    sec = built["rep"]["iterations"]
    assert sec["available"], sec
    (pair,) = sec["pairs"]
    assert (pair["parent"], pair["child"], pair["iteration"]) == ("it0", "it1", 1)
    assert (pair["n_units"], pair["n_prompts"]) == (len(UNITS), 4)
    # humans: unit y = mean of its verdicts; the win rate is the mean over labelled units
    ys = {u: float(np.mean(v)) for u, v in HUMAN.items()}
    h = pair["human"]
    assert (h["n_verdicts"], h["n_units"]) == (3, 2)
    assert h["win_rate"]["estimate"] == pytest.approx(np.mean(list(ys.values())))  # (0.75 + 0) / 2
    lo, hi = h["win_rate"]["ci"]
    assert lo <= h["win_rate"]["estimate"] <= hi
    rows = {(j["judge"], j["method"]): j for j in pair["judges"]}
    assert [j["role"] for j in pair["judges"]][:1] == ["child"]
    for judge in ("it1", "it0"):
        f = {(c, p): _win(P_TRUE[judge][c], P_TRUE[judge][p]) for c, p, _ in UNITS}
        r = rows[(judge, "p_true")]
        assert r["role"] == ("child" if judge == "it1" else "parent") and r["kind"] == "scores"
        assert r["n_units"] == len(UNITS)
        assert r["win_rate"]["estimate"] == pytest.approx(np.mean(list(f.values())))
        lam, est = _ppi_plus([ys[u] for u in HUMAN], [f[u] for u in HUMAN], [f[u] for u in f if u not in HUMAN])
        ppi = r["ppi"]
        assert (ppi["n_labelled"], ppi["n_unlabelled"], ppi["target"]) == (2, 3, "child_win")
        assert ppi["lambda"] == pytest.approx(lam, abs=1e-9)
        assert ppi["ppi_plus"]["estimate"] == pytest.approx(est, abs=1e-9)
        assert ppi["human_only"]["estimate"] == pytest.approx(0.375)
    assert rows[("it1", "p_true")]["win_rate"]["estimate"] == pytest.approx(0.5)  # 1, 0, ½, 1, 0 by hand
    assert rows[("it0", "p_true")]["win_rate"]["estimate"] == pytest.approx(0.2)  # 0, 0, 0, 1, 0
    pw = rows[("it1", "pairwise")]
    assert (pw["kind"], pw["n_units"], pw["win_rate"]["estimate"]) == ("pairwise", 1, 0.5)
    assert pw["ppi"]["available"] is False  # its one pair has no human verdict
    pick = rows[("it1", "select_usc")]
    assert (pick["kind"], pick["n_units"], pick["win_rate"]["estimate"]) == ("best pick", 1, 1.0)
    assert sec["validity"].startswith("not established")


def test_ranking_consistency_is_the_mean_kendall_tau_per_prompt(built):
    (pair,) = built["rep"]["iterations"]["pairs"]
    (c,) = pair["consistency"]
    assert c["method"] == "p_true" and c["judges"] == ["it0", "it1"]
    taus = []
    for k in CHILD:
        names = CHILD[k] + PARENT[k]
        t = stats.kendalltau([P_TRUE["it0"][n] for n in names], [P_TRUE["it1"][n] for n in names]).statistic
        if not math.isnan(t):
            taus.append(t)
    # prompt 1: it1 scores c1 and p1 alike, so τ-b is undefined there
    assert c["n_prompts"] == len(taus) == 3 and c["skipped"] == {"all_tied": 1}
    assert c["mean_tau_b"]["estimate"] == pytest.approx(np.mean(taus)) == pytest.approx(7 / 9)
    lo, hi = c["mean_tau_b"]["ci"]
    assert lo <= 7 / 9 <= hi


def test_rendered_and_documented(built):
    rep = built["rep"]
    md, page = report_markdown(rep), report_html(rep)
    assert "Model iterations (child vs parent)" in md and "it0 → it1 (iteration 1)" in md
    assert "0.375 [" in md and "mean Kendall τ-b" in page
    assert not undocumented_keys(rep["iterations"])
    plain = build_report(built["db"], built["sid"], n_boot=0, method_info=method_info)
    (pair,) = plain["iterations"]["pairs"]
    assert pair["human"]["win_rate"]["ci"] is None and pair["consistency"][0]["mean_tau_b"]["ci"] is None
    left = build_report(built["db"], built["sid"], n_boot=0, method_info=method_info, extended=False)
    assert left["iterations"]["available"] is False


def test_runs_without_lineage_have_no_iteration_view(tmp_path: Path):
    db = Database(tmp_path / "flat.duckdb")
    sid = create_study(db, "flat").id
    for m in ("a", "b"):
        reg.record_model(db, ModelIdentity(model_id=m, engine="scripted", name=m))
    pid = make_prompt(db, sid)
    make_responses(db, pid, ["x"], run_id=make_run(db, sid, "a"))
    make_responses(db, pid, ["y"], run_id=make_run(db, sid, "b"))
    rep = build_report(db, sid, n_boot=0, method_info=method_info)
    assert rep["iterations"]["available"] is False and "--parent-model" in rep["iterations"]["reason"]
    # linked, but the parent generated nothing in this study: still no pair
    reg.record_model(db, ModelIdentity(model_id="c", engine="scripted", name="c"))
    reg.set_lineage(db, "c", "a", None)
    assert build_report(db, sid, n_boot=0, method_info=method_info)["iterations"]["available"] is False
    reg.set_lineage(db, "b", "a", None)
    rep = build_report(db, sid, n_boot=0, method_info=method_info)
    assert [(p["parent"], p["child"]) for p in rep["iterations"]["pairs"]] == [("a", "b")]
    assert rep["iterations"]["pairs"][0]["human"]["available"] is False
    db.close()


def test_ppi_follows_the_serving_record_as_the_ppi_section_does(built):
    """The iteration view's PPI rows use the ppi section's serving rule: labelled prompts all served in
    uniform random order make them valid."""
    db, sid = built["db"], built["sid"]
    labelled = [r[0] for r in db.fetchall("SELECT DISTINCT prompt_id FROM judgment WHERE study_id = ? AND "
                                          "judge_kind = 'human'", [sid])]
    with db.write() as cur:
        cur.execute("INSERT INTO serving (study_id, prompt_id, annotator, policy, probability) "
                    "SELECT ?, unnest(?::BIGINT[]), 'x', 'random', 0.5", [sid, labelled])
    try:
        rep = build_report(db, sid, n_boot=0, method_info=method_info)
        sec = rep["iterations"]
        assert sec["validity"] == "uniform" and "the PPI intervals are valid" in sec["validity_note"]
        (pair,) = sec["pairs"]
        row = next(j for j in pair["judges"] if (j["judge"], j["method"]) == ("it1", "p_true"))
        assert row["ppi"]["available"] and row["ppi"]["n_labelled"] == 2
    finally:
        with db.write() as cur:
            cur.execute("DELETE FROM serving")
