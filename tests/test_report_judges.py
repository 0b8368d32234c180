"""The report's `judges` section on a hand-built study scored by TWO judge models (gen-a, which also
generated half the responses, and judge-b, recorded as a child of gen-a in the model table), with two
generators (runs of gen-a and gen-b): the judge × generator table and the PRE exam and vote, every number
worked out here from the definitions (hashlib for the exam draw, loops for MT-Bench S1 and the weighted vote)."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import pytest

from app.services.agreement import method_info
from storage import judgments
from storage.analysis.report import build_report, report_html, report_markdown
from storage.db import Database
from storage.model_registry import record_model, set_lineage
from storage.models import JudgmentIn, ModelIdentity, StudyConfig
from storage.studies import create_study
from tests.builders import make_prompt, make_responses, make_run
from tests.test_agreement_report import undocumented_keys

N = 6
PRE_SEED = 7
# pairwise on (a1, b1): the humans' winners (ann1 sees a1 first, ann2 b1 first) and each judge's verdict in
# the order a1 first, then b1 first
H1 = ["a", "a", "b", "a", "b", "a"]
H2 = ["a", "b", "b", "a", "b", "tie"]
G = [("a", "a"), ("a", "a"), ("a", "b"), ("a", "a"), ("b", "b"), ("a", "a")]   # judge gen-a
J = [("b", "b"), ("b", "b"), ("b", "b"), ("a", "a"), ("b", "b"), ("tie", "tie")]  # judge judge-b
# ratings of [a1, a2, b1, b2] on every prompt
ANN = {"ann1": [7, 5, 3, 1], "ann2": [6, 5, 2, 2]}
SCORE = {"gen-a": [9, 8, 2, 1], "judge-b": [8, 9, 3, 1]}


def two_judge_study(db: Database, name: str = "two judges") -> tuple[int, list[dict[str, int]]]:
    """The study above written into `db` (models recorded, judge-b a child of gen-a): (study id, per prompt
    its id and the ids of a1 and b1)."""
    for m in ("gen-a", "gen-b", "judge-b"):
        record_model(db, ModelIdentity(model_id=m, engine="scripted", name=m))
    set_lineage(db, "judge-b", "gen-a", None)
    sid = create_study(db, name, config=StudyConfig(questions=["pairwise", "rating"])).id
    run_a, run_b = make_run(db, sid, "gen-a"), make_run(db, sid, "gen-b")
    rows: list[JudgmentIn] = []
    P: list[dict[str, int]] = []

    def rec(**kw: Any) -> None:
        rows.append(JudgmentIn(study_id=sid, idempotency_key=uuid.uuid4().hex, **kw))
    for k in range(N):
        pid = make_prompt(db, sid, f"q{k}", f"Question {k}?")
        a1, a2 = make_responses(db, pid, [f"a1 {k}", f"a2 {k}"], run_id=run_a)
        b1, b2 = make_responses(db, pid, [f"b1 {k}", f"b2 {k}"], run_id=run_b)
        P.append({"p": pid, "a1": a1, "b1": b1})
        ids = {"a": a1, "b": b1}
        for ann, shown, w in (("ann1", (a1, b1), H1[k]), ("ann2", (b1, a1), H2[k])):
            rec(prompt_id=pid, judge_kind="human", judge=ann, method="pairwise", response_id=shown[0],
                response_b_id=shown[1], shown_order=list(shown), label="tie" if w == "tie" else str(ids[w]))
        for ann, vals in ANN.items():
            for r, v in zip((a1, a2, b1, b2), vals):
                rec(prompt_id=pid, judge_kind="human", judge=ann, method="likert", response_id=r, value=float(v))
        for judge, verdicts in (("gen-a", G[k]), ("judge-b", J[k])):
            for (first, second), w in zip(((a1, b1), (b1, a1)), verdicts):
                rec(prompt_id=pid, judge_kind="model", judge=judge, method="pairwise",
                    variant=f"order:{first}-{second}", response_id=first, response_b_id=second,
                    label="tie" if w == "tie" else str(ids[w]))
            for r, v in zip((a1, a2, b1, b2), SCORE[judge]):
                rec(prompt_id=pid, judge_kind="model", judge=judge, method="judge_score", response_id=r,
                    value=float(v))
    judgments.record(db, rows)
    return sid, P


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Any:
    db = Database(tmp_path_factory.mktemp("judges") / "judges.duckdb")
    sid, P = two_judge_study(db)
    rep = build_report(db, sid, n_boot=200, seed=3, method_info=method_info, pre_seed=PRE_SEED, judges=True)
    yield {"db": db, "sid": sid, "P": P, "rep": rep}
    db.close()


def _row(sec: dict[str, Any], judge: str, method: str) -> dict[str, Any]:
    return next(r for r in sec["rows"] if r["judge"] == judge and r["method"] == method)


def _cell(row: dict[str, Any], gen: str) -> dict[str, Any]:
    return next(c for c in row["cells"] if c["generator"] == gen)


def _combined(pair: tuple[str, str]) -> str:
    return pair[0] if pair[0] == pair[1] else "tie"  # both orders agree, else a tie (MT-Bench)


def test_judge_by_generator_table(built):
    sec = built["rep"]["judges"]
    assert sec["available"]
    assert [(g["generator"], g["family"], g["n_responses"]) for g in sec["generators"]] == [
        ("gen-a", "gen-a", 2 * N), ("gen-b", "gen-b", 2 * N)]
    # judge_score within one generator: two responses per prompt, Spearman per prompt ±1. gen-a orders a1 > a2
    # as the humans' means (6.5 > 5) do; judge-b scores a2 above a1 (9 > 8): −1; both order b1 > b2 as humans do.
    ga, jb = _row(sec, "gen-a", "judge_score"), _row(sec, "judge-b", "judge_score")
    assert _cell(ga, "gen-a")["agreement"]["value"] == pytest.approx(1.0)
    assert _cell(jb, "gen-a")["agreement"]["value"] == pytest.approx(-1.0)
    assert _cell(jb, "gen-b")["agreement"]["value"] == pytest.approx(1.0)
    assert _cell(ga, "gen-a")["agreement"]["n"] == N
    # mean scores: gen-a (9 + 8) / 2 on its own responses, (2 + 1) / 2 on gen-b's; judge-b 8.5 and 2.0
    for row, own, other in ((ga, 8.5, 1.5), (jb, 8.5, 2.0)):
        for gen, want in (("gen-a", own), ("gen-b", other)):
            m = _cell(row, gen)["mean_score"]
            assert m["metric"] == "mean_score" and m["value"] == pytest.approx(want) and m["n"] == 2 * N
            assert m["ci"] == pytest.approx([want, want])  # the same mean on every prompt
    # the self-judging diagonal and the family (judge-b descends from gen-a)
    assert _cell(ga, "gen-a")["self"] and not _cell(ga, "gen-b")["self"] and not _cell(jb, "gen-a")["self"]
    assert ga["family"] == "gen-a" and jb["family"] == "gen-a"
    assert _cell(jb, "gen-a")["same_family"] and not _cell(jb, "gen-b")["same_family"]
    # pairwise: every pair mixes the generators, so no cell agreement; the win rate of each generator's
    # response in the judge's combined verdicts (ties half)
    pa = _row(sec, "gen-a", "pairwise")
    assert _cell(pa, "gen-a")["agreement"] is None and _cell(pa, "gen-a")["reason"]
    for judge, verdicts in (("gen-a", G), ("judge-b", J)):
        wins = [{"a": 1.0, "tie": 0.5, "b": 0.0}[_combined(v)] for v in verdicts]
        row = _row(sec, judge, "pairwise")
        assert _cell(row, "gen-a")["mean_score"]["value"] == pytest.approx(sum(wins) / N)
        assert _cell(row, "gen-b")["mean_score"]["value"] == pytest.approx(1 - sum(wins) / N)
        assert _cell(row, "gen-a")["mean_score"]["metric"] == "win_rate"
    assert sum(1 for v in G if _combined(v) == "a") == 4  # 4 wins, 1 tie, 1 loss: 0.75
    assert _cell(pa, "gen-a")["mean_score"]["value"] == pytest.approx(0.75)
    # the overall column is the headline's figure (with its interval), not a restatement
    head = {(r["judge"], r["method"]): r["main"] for r in built["rep"]["headline"]["rows"]}
    for r in sec["rows"]:
        assert r["overall"] == head[(r["judge"], r["method"])]


def _s1(judge_labels: list[str], prompts: list[int]) -> float:
    """MT-Bench S1 of one combined vote per prompt against both humans' votes, from the definition."""
    agree = sum((judge_labels[k] == H1[k]) + (judge_labels[k] == H2[k]) for k in prompts)
    return agree / (2 * len(prompts))


def test_pre_exam_and_weighted_vote_worked_by_hand(built):
    pre = built["rep"]["judges"]["pre"]
    P = built["P"]
    assert pre["seed"] == PRE_SEED and pre["threshold"] == 0.5 and pre["exam_share"] == 0.3
    # the exam: the labelled prompts sorted by md5("pre:7:<id>"), the first round(0.3 · 6) = 2
    order = sorted(range(N), key=lambda k: hashlib.md5(f"pre:{PRE_SEED}:{P[k]['p']}".encode()).hexdigest())
    exam, held = sorted(order[:2]), sorted(order[2:])
    m = next(x for x in pre["methods"] if x["method"] == "pairwise")
    assert m["exam_prompt_ids"] == sorted(P[k]["p"] for k in exam)
    assert (m["n_exam_prompts"], m["n_heldout_prompts"]) == (2, 4)
    comb = {"gen-a": [_combined(v) for v in G], "judge-b": [_combined(v) for v in J]}
    score = {j: _s1(c, exam) for j, c in comb.items()}
    got = {r["judge"]: r for r in m["exam"]}
    for j in comb:
        assert got[j]["score"]["value"] == pytest.approx(score[j])
        assert got[j]["qualified"] == (score[j] >= 0.5)
    weights = {j: s for j, s in score.items() if s >= 0.5}
    assert m["n_qualified"] == len(weights)
    # the weighted vote per prompt, written from the rule: the class with the largest summed weight, a shared
    # largest sum a tie
    vote = []
    for k in range(N):
        tot = {"a": 0.0, "b": 0.0, "tie": 0.0}
        for j, w in weights.items():
            tot[comb[j][k]] += w
        top = max(tot.values())
        winners = [c for c, t in tot.items() if t == top]
        vote.append(winners[0] if len(winners) == 1 else "tie")
    heldout = {r["judge"]: r for r in m["heldout"]}
    assert heldout["pre"]["main"]["value"] == pytest.approx(_s1(vote, held))
    assert heldout["pre"]["main"]["n"] == 2 * len(held)
    for j in comb:
        assert heldout[j]["main"]["value"] == pytest.approx(_s1(comb[j], held))
    # this seed's draw, pinned by hand so that a change of the draw rule shows: exam = q0 and q3. gen-a says
    # a on both as both humans do: S1 4/4 = 1; judge-b says b on q0 (0 of 2) and a on q3 (2 of 2): 2/4 = 0.5,
    # just qualified. Weights 1 and 0.5: where they differ gen-a's verdict wins (q1: a, which a plain
    # majority would call a tie; q2: tie). Held out (q1 q2 q4 q5): PRE = gen-a = 1 + 0 + 2 + 1 of 8 = 0.5,
    # judge-b 1 + 2 + 2 + 1 of 8 = 0.75.
    assert exam == [0, 3]
    assert (got["gen-a"]["score"]["value"], got["judge-b"]["score"]["value"]) == (1.0, 0.5)
    assert got["judge-b"]["qualified"] and got["judge-b"]["weight"] == 0.5
    assert vote == ["a", "a", "tie", "a", "b", "a"]
    assert {j: r["main"]["value"] for j, r in heldout.items()} == {"pre": 0.5, "gen-a": 0.5, "judge-b": 0.75}


def test_pre_on_scores_is_the_weighted_mean(built):
    m = next(x for x in built["rep"]["judges"]["pre"]["methods"] if x["method"] == "judge_score")
    got = {r["judge"]: r for r in m["exam"]}
    # Spearman over [a1, a2, b1, b2] against the humans' means [6.5, 5, 2.5, 1.5]: gen-a ranks them alike (1),
    # judge-b swaps a1 and a2: 1 − 6 · 2 / (4 · 15) = 0.8 on every prompt
    assert got["gen-a"]["score"]["value"] == pytest.approx(1.0) and got["gen-a"]["weight"] == pytest.approx(1.0)
    assert got["judge-b"]["score"]["value"] == pytest.approx(0.8) and got["judge-b"]["weight"] == pytest.approx(0.8)
    # PRE's scores (9 + 0.8·8)/1.8 = 8.556 > (8 + 0.8·9)/1.8 = 8.444 > (2 + 0.8·3)/1.8 = 2.444 > 1: the humans' order
    held = {r["judge"]: r["main"]["value"] for r in m["heldout"]}
    assert held == pytest.approx({"pre": 1.0, "gen-a": 1.0, "judge-b": 0.8})


def test_rendered_and_documented(built):
    rep = built["rep"]
    md, page = report_markdown(rep), report_html(rep)
    assert "Judges side by side" in md and "◆ self" in md and "◆ self" in page
    assert "Peer review of judges (PRE)" in md
    assert not undocumented_keys(rep["judges"])


def test_agreement_tab_rows(built):
    from app.ui.agreement_judges import judges_rows, pre_rows

    rows = judges_rows(built["rep"])
    assert len(rows) == 4 * 2  # (2 judges × 2 methods) × 2 generators
    diag = [r for r in rows if r[3] == "◆ self"]
    assert [(r[0], r[2]) for r in diag] == [("gen-a", "gen-a")] * 2
    assert ["judge-b", "judge_score", "gen-a", "◇ same family", "-1.000 (n=6)", "8.500 [8.500, 8.500]",
            "0.800 [0.800, 0.800]"] in rows
    pre = pre_rows(built["rep"])
    assert ["pairwise", "pre", "", "", "", "0.500 (n=8)"] in pre
    assert ["pairwise", "judge-b", "0.500 (n=4)", "yes", "0.500", "0.750 (n=8)"] in pre


def test_one_labelled_prompt_has_no_exam_and_no_model_no_section(tmp_path):
    db = Database(tmp_path / "one.duckdb")
    sid = create_study(db, "one", config=StudyConfig(questions=["pairwise"])).id
    run = make_run(db, sid, "solo")
    assert build_report(db, sid, n_boot=0, method_info=method_info, judges=True)["judges"] == {
        "available": False, "reason": "no model judgments"}
    left_out = build_report(db, sid, n_boot=0, method_info=method_info)["judges"]
    assert left_out["available"] is False and "--judges" in left_out["reason"]  # opt-in: it costs a lot
    pid = make_prompt(db, sid, "q0")
    a, b = make_responses(db, pid, ["x", "y"], run_id=run)
    rows = [JudgmentIn(study_id=sid, prompt_id=pid, judge_kind="human", judge="ann1", method="pairwise",
                       response_id=a, response_b_id=b, label=str(a), idempotency_key=uuid.uuid4().hex)]
    rows += [JudgmentIn(study_id=sid, prompt_id=pid, judge_kind="model", judge="solo", method="pairwise",
                        variant=f"order:{x}-{y}", response_id=x, response_b_id=y, label=str(a),
                        idempotency_key=uuid.uuid4().hex) for x, y in ((a, b), (b, a))]
    # a selector's pick: its rows are kept by prompt (every candidate the generator's), not by response
    rows.append(JudgmentIn(study_id=sid, prompt_id=pid, judge_kind="model", judge="solo", method="select_usc",
                           response_id=b, idempotency_key=uuid.uuid4().hex))
    judgments.record(db, rows)
    sec = build_report(db, sid, n_boot=0, method_info=method_info, judges=True)["judges"]
    assert sec["available"] and [g["generator"] for g in sec["generators"]] == ["solo"]
    assert _cell(_row(sec, "solo", "pairwise"), "solo")["self"]
    (m,) = sec["pre"]["methods"]
    assert m["available"] is False and m["reason"].startswith("1 prompt(s) with human pairwise labels")
    assert not undocumented_keys(sec)
    db.close()


def test_cli_agreement_judges_flag(tmp_path):
    """`critlab agreement --judges` builds the section; without the flag the report says how to opt in."""
    import json

    from click.testing import CliRunner

    from app.cli import main

    db_path = tmp_path / "cli.duckdb"
    db = Database(db_path)
    two_judge_study(db, "cli judges")
    db.close()
    args = ["agreement", "--study", "cli judges", "--format", "json", "--bootstrap", "0", "--db", str(db_path)]
    off = CliRunner().invoke(main, args, catch_exceptions=False)
    on = CliRunner().invoke(main, [*args, "--judges"], catch_exceptions=False)
    assert off.exit_code == 0 and on.exit_code == 0, off.output + on.output
    assert "--judges" in json.loads(off.stdout)["judges"]["reason"]
    sec = json.loads(on.stdout)["judges"]
    assert sec["available"] and {r["judge"] for r in sec["rows"]} == {"gen-a", "judge-b"}
    assert "--judges" in CliRunner().invoke(main, ["agreement", "--help"]).output


def test_cli_pre_seed_and_threshold_reach_the_exam(tmp_path):
    """`--pre-seed 7 --pre-threshold 0.75`: the exam drawn with seed 7 (q0, q3, as worked by hand above), where
    judge-b's 0.5 no longer qualifies and gen-a votes alone; without --judges the two are refused."""
    import json

    from click.testing import CliRunner

    from app.cli import main

    db_path = tmp_path / "cli.duckdb"
    db = Database(db_path)
    two_judge_study(db, "cli judges")
    db.close()
    args = ["agreement", "--study", "cli judges", "--format", "json", "--bootstrap", "0", "--db", str(db_path)]
    r = CliRunner().invoke(main, [*args, "--judges", "--pre-seed", str(PRE_SEED), "--pre-threshold", "0.75"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    pre = json.loads(r.stdout)["judges"]["pre"]
    assert (pre["seed"], pre["threshold"]) == (PRE_SEED, 0.75)
    m = next(x for x in pre["methods"] if x["method"] == "pairwise")
    assert {x["judge"]: (x["score"]["value"], x["qualified"]) for x in m["exam"]} == \
        {"gen-a": (1.0, True), "judge-b": (0.5, False)}
    held = {x["judge"]: x["main"]["value"] for x in m["heldout"]}
    assert held["pre"] == held["gen-a"] == 0.5
    refused = CliRunner().invoke(main, [*args, "--pre-threshold", "0.75"])
    assert refused.exit_code != 0 and "add --judges" in refused.output


def test_the_agreement_service_refuses_a_threshold_outside_0_1(db):
    """The tab and the API reach PRE through app.services.agreement: a threshold of 0 (a judge with no
    agreement would vote with weight 0) or above 1 is refused with a message, before any figure is read."""
    from app.services import agreement as ag
    from app.services.context import AppContext, ServiceError

    two_judge_study(db, "refused")
    for bad in (0.0, 1.5):
        with pytest.raises(ServiceError, match="PRE threshold must be above 0 and at most 1"):
            ag.report(AppContext(db=db), "refused", judges=True, pre_threshold=bad)
