"""Pair policies on hand-built studies: each policy yields exactly the expected rows; ties, missing ratings,
swap-inconsistent verdicts and the filters drop rows and count them by reason; margins are right."""

from __future__ import annotations

import json
import random
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.services.exports import ExportPreview, export_methods
from storage import checklists, judgments, responses
from storage.db import Database
from storage.export import ExportOptions, row_schema
from storage.export import export_dataset as _export_dataset, preview_dataset as _preview_dataset
from storage.export.schema import META_FIELDS
from storage.models import JudgmentIn, ResponseIn
from tests.builders import judge, label, make_prompt, make_responses, make_run, make_study
from tests.dpo_reference import build_dpo_pairs

# Model sources, judge rows and standard-style prompts need the method facts the app layer passes in.
export_dataset = partial(_export_dataset, methods=export_methods())
preview_dataset = partial(_preview_dataset, methods=export_methods())

M = "scripted-model"


@pytest.fixture
def sid(db: Database) -> int:
    return make_study(db).id


def three(db: Database, sid: int, ext: str = "p1", **kw: Any) -> tuple[int, list[int]]:
    pid = make_prompt(db, sid, ext, f"Question {ext}?")
    return pid, make_responses(db, pid, [f"{ext} answer A", f"{ext} answer B", f"{ext} answer C"], **kw)


def record(db: Database, sid: int, pid: int, **kw: Any) -> int:
    kw.setdefault("judge_kind", "human")
    return judgments.record(db, [JudgmentIn(study_id=sid, prompt_id=pid, idempotency_key=uuid.uuid4().hex, **kw)])[0]


def pairwise_vote(db: Database, sid: int, pid: int, who: str, a: int, b: int, winner: str) -> int:
    return record(db, sid, pid, judge=who, method="pairwise", response_id=a, response_b_id=b, shown_order=[a, b],
                  label=winner)


def model_score(db: Database, sid: int, pid: int, rid: int, value: float, method: str = "rubric",
                who: str = M, variant: str | None = None) -> int:
    return record(db, sid, pid, judge_kind="model", judge=who, method=method, response_id=rid, value=value,
                  variant=variant)


def model_order(db: Database, sid: int, pid: int, first: int, second: int, winner: str,
                probs: tuple[float, float, float] | None = None, who: str = M) -> int:
    dist = {"A": probs[0], "B": probs[1], "tie": probs[2]} if probs else None
    return record(db, sid, pid, judge_kind="model", judge=who, method="pairwise", response_id=first,
                  response_b_id=second, shown_order=[first, second], variant=f"order:{first}-{second}",
                  label=winner, dist=dist, prob=probs[0] if probs else None)


def rows_of(db: Database, **opts: Any) -> tuple[list[dict[str, Any]], dict[str, int]]:
    r = preview_dataset(db, "demo", ExportOptions(**opts), n_rows=100)
    return r.first_rows, r.skipped


def pairs(rows: list[dict[str, Any]]) -> list[tuple[int, int]]:
    return [(r["meta"]["chosen_response_id"], r["meta"]["rejected_response_id"]) for r in rows]


# -- per-annotator best picks: exactly the first DPO export's rule ---------------------------------------------
def _random_study(db: Database, sid: int, seed: int) -> None:
    rnd = random.Random(seed)
    for i in range(12):
        pid, ids = three(db, sid, f"p{i}")
        for who in ("alice", "bob", "carol"):
            if rnd.random() < 0.25:
                continue
            shown = rnd.sample(ids, k=rnd.choice([1, 2, 3, 3]))
            pick = rnd.choice(shown)
            rated = {r: float(rnd.randint(1, 4)) for r in shown if rnd.random() < 0.9}
            if rnd.random() < 0.05:
                judge(db, sid, pid, who, "best_of_n", response_id=None, shown_order=shown)
            elif rnd.random() < 0.05:
                judge(db, sid, pid, who, "best_of_n", response_id=pick, shown_order=None)
            else:
                label(db, sid, pid, who, pick, rated, shown=shown)


@pytest.mark.parametrize("seed", range(6))
def test_per_annotator_best_picks_equal_the_first_dpo_export(db: Database, sid: int, seed: int) -> None:
    _random_study(db, sid, seed)
    old_rows, old_skipped = build_dpo_pairs(db, sid)
    new_rows, new_skipped = rows_of(db, per_annotator=True, signal="best")
    assert new_skipped == dict(old_skipped)
    assert len(new_rows) == len(old_rows)
    for old, new in zip(old_rows, new_rows):
        o, n = old["meta"], new["meta"]
        assert (new["prompt"], new["chosen"], new["rejected"]) == (old["prompt"], old["chosen"], old["rejected"])
        assert (n["prompt_id"], n["chosen_response_id"], n["rejected_response_id"], n["annotator"],
                n["chosen_rating"], n["rejected_rating"], n["shown_order"]) == (
            o["prompt_id"], o["chosen_response_id"], o["rejected_response_id"], o["annotator"],
            o["chosen_rating"], o["rejected_rating"], o["shown_order"])
        assert [(x["response_id"], x["rating"]) for x in n["ratings"]] == [(x["response_id"], x["rating"])
                                                                           for x in o["ratings"]]
        assert n["judgment_ids"][0] == o["judgment_id"]
        assert n["margin"] == o["chosen_rating"] - o["rejected_rating"] > 0


def test_with_one_annotator_the_consensus_gives_the_per_annotator_pairs(db: Database, sid: int) -> None:
    _random_study(db, sid, 1)
    db.cursor().execute("DELETE FROM judgment WHERE judge <> 'alice'")
    per, per_skipped = rows_of(db, per_annotator=True)
    cons, cons_skipped = rows_of(db)
    assert pairs(cons) == pairs(per) and cons_skipped == per_skipped
    assert [r["meta"]["annotator"] for r in cons] == [None] * len(cons)
    assert all(r["meta"]["annotators"] == [p["meta"]["annotator"]] for r, p in zip(cons, per))


# -- human consensus: best picks ----------------------------------------------------------------------------
def test_consensus_pick_vs_lowest_mean_rating(db: Database, sid: int) -> None:
    pid, (a, b, c) = three(db, sid)
    label(db, sid, pid, "alice", a, {a: 7, b: 4, c: 2})
    label(db, sid, pid, "bob", a, {a: 6, b: 2, c: 3})
    label(db, sid, pid, "carol", b, {a: 5, b: 6, c: 1})
    rows, skipped = rows_of(db)
    assert skipped == {}
    (row,) = rows
    m = row["meta"]
    # means: a 6, b 4, c 2 → chosen a (2 of 3 picks), rejected c
    assert (m["chosen_response_id"], m["rejected_response_id"]) == (a, c)
    assert (m["chosen_rating"], m["rejected_rating"], m["margin"], m["margin_kind"]) == (6.0, 2.0, 4.0, "rating_gap")
    assert (m["n_annotators"], m["agreement"], m["annotator"]) == (3, pytest.approx(2 / 3), None)
    assert len(m["annotators"]) == 3 and all(x.startswith("annotator-") for x in m["annotators"])
    assert sorted((v["response_id"]) for v in m["votes"]) == [a, a, b]
    assert [(x["response_id"], x["rating"], x["n"]) for x in m["ratings"]] == [(a, 6.0, 3), (b, 4.0, 3), (c, 2.0, 3)]
    assert (m["source"], m["signal"], m["kind"], m["off_policy"]) == ("human", "best", "dpo", False)


@pytest.mark.parametrize(("picks", "ratings", "reason"), [
    ((0, 1), [{0: 7, 1: 6, 2: 1}, {0: 7, 1: 6, 2: 1}], "no_consensus"),      # 1–1 split
    ((0, 0), [{0: 7, 1: 2, 2: 3}, {0: 7, 1: 3, 2: 2}], "tied_lowest"),       # means 2.5 and 2.5
    ((0, 0), [{0: 3, 1: 3, 2: 5}, {0: 3, 1: 3, 2: 5}], "rejected_not_below_chosen"),
    ((0, 0), [{0: 7, 1: 2}, {0: 7, 1: 2}], "missing_ratings"),               # c shown, rated by nobody
])
def test_consensus_skip_reasons(db: Database, sid: int, picks: tuple[int, int], ratings: list[dict[int, float]],
                                reason: str) -> None:
    pid, ids = three(db, sid)
    for who, pick, rated in zip(("alice", "bob"), picks, ratings):
        label(db, sid, pid, who, ids[pick], {ids[i]: v for i, v in rated.items()}, shown=ids)
    assert rows_of(db) == ([], {reason: 1})


def test_min_annotators_and_min_agreement(db: Database, sid: int) -> None:
    p1, (a, b, c) = three(db, sid, "p1")
    p2, (d, e, f) = three(db, sid, "p2")
    for who, pick in (("alice", a), ("bob", a), ("carol", b)):
        label(db, sid, p1, who, pick, {a: 6, b: 4, c: 1})
    label(db, sid, p2, "alice", d, {d: 6, e: 4, f: 1})
    assert pairs(rows_of(db)[0]) == [(a, c), (d, f)]
    assert rows_of(db, min_annotators=2) == (rows_of(db)[0][:1], {"too_few_annotators": 1})
    rows, skipped = rows_of(db, min_agreement=0.7)
    assert pairs(rows) == [(d, f)] and skipped == {"low_agreement": 1}
    assert rows_of(db, min_margin=5.1)[1] == {"below_min_margin": 2}


# -- human pairwise votes -----------------------------------------------------------------------------------
def test_pairwise_consensus_winner_vs_loser(db: Database, sid: int) -> None:
    pid, (a, b, c) = three(db, sid)
    pairwise_vote(db, sid, pid, "alice", a, b, str(b))
    pairwise_vote(db, sid, pid, "bob", b, a, str(b))
    pairwise_vote(db, sid, pid, "carol", a, b, "tie")
    pairwise_vote(db, sid, pid, "alice", a, c, "tie")        # unit a-c: tie + both_bad → tie
    pairwise_vote(db, sid, pid, "bob", c, a, "both_bad")
    pairwise_vote(db, sid, pid, "carol", c, a, "both_bad")   # unit a-c: both_bad is the mode
    pairwise_vote(db, sid, pid, "alice", b, c, str(b))       # unit b-c: 1–1 split
    pairwise_vote(db, sid, pid, "bob", b, c, str(c))
    rows, skipped = rows_of(db, signal="pairwise")
    assert pairs(rows) == [(b, a)]
    m = rows[0]["meta"]
    assert (m["margin"], m["margin_kind"], m["n_annotators"], m["agreement"]) == (
        pytest.approx(2 / 3), "vote_share_gap", 3, pytest.approx(2 / 3))
    assert skipped == {"both_bad": 1, "no_consensus": 1}
    assert rows_of(db)[1] == skipped  # auto: the study has pairwise votes and nothing else
    per, per_skipped = rows_of(db, signal="pairwise", per_annotator=True)
    assert sorted(pairs(per)) == sorted([(b, a), (b, a), (b, c), (c, b)])
    assert per_skipped == {"tie": 2, "both_bad": 2}


# -- human ratings ------------------------------------------------------------------------------------------
def test_ratings_best_vs_worst_and_all_pairs(db: Database, sid: int) -> None:
    p1, (a, b, c) = three(db, sid, "p1")
    p2, (d, e, f) = three(db, sid, "p2")
    p3, (g, h, i) = three(db, sid, "p3")
    p4, (j, k, _) = three(db, sid, "p4")
    for who, vals in (("alice", (7, 4, 1)), ("bob", (6, 5, 2))):
        for rid, v in zip((a, b, c), vals):
            judge(db, sid, p1, who, "likert", response_id=rid, value=v)
    for rid, v in ((d, 5), (e, 5), (f, 1)):
        judge(db, sid, p2, "alice", "likert", response_id=rid, value=v)
    for rid, v in ((g, 5), (h, 2), (i, 2)):
        judge(db, sid, p3, "alice", "likert", response_id=rid, value=v)
    judge(db, sid, p4, "alice", "likert", response_id=j, value=3)
    rows, skipped = rows_of(db, signal="ratings")
    assert pairs(rows) == [(a, c)]
    m = rows[0]["meta"]
    assert (m["chosen_rating"], m["rejected_rating"], m["margin"]) == (6.5, 1.5, 5.0)
    assert (m["n_annotators"], m["agreement"]) == (2, 1.0)
    assert skipped == {"tied_best": 1, "tied_lowest": 1, "missing_ratings": 1}
    rows, skipped = rows_of(db, signal="ratings", all_pairs=True, min_margin=1.0)
    got = {(r["meta"]["chosen_response_id"], r["meta"]["rejected_response_id"]): r["meta"]["margin"] for r in rows}
    assert got == {(a, b): 2.0, (a, c): 5.0, (b, c): 3.0, (d, f): 4.0, (e, f): 4.0, (g, h): 3.0, (g, i): 3.0}
    assert skipped == {"tie": 2, "missing_ratings": 1}
    rows, skipped = rows_of(db, signal="ratings", all_pairs=True, min_margin=3.5)
    assert len(rows) == 3 and skipped == {"tie": 2, "missing_ratings": 1, "below_min_margin": 4}


# -- model sources: self-rewarding -----------------------------------------------------------------------------
def test_model_scores_highest_vs_lowest(db: Database, sid: int) -> None:
    p1, (a, b, c) = three(db, sid, "p1")
    p2, (d, e, f) = three(db, sid, "p2")
    p3, (g, h, i) = three(db, sid, "p3")
    for rid, v in ((a, 4.0), (b, 2.5), (c, 1.0), (d, 3.0), (e, 3.0), (f, 1.0), (g, 3.0)):
        model_score(db, sid, p1 if rid in (a, b, c) else p2 if rid in (d, e, f) else p3, rid, v)
    model_score(db, sid, p1, a, 0.0, who="other-model", method="judge_score")  # other method: ignored
    rows, skipped = rows_of(db, source="model:rubric")
    assert pairs(rows) == [(a, c)]
    m = rows[0]["meta"]
    assert (m["margin"], m["margin_kind"], m["source"], m["signal"]) == (3.0, "score_gap", f"model:rubric@{M}", "rubric")
    assert [(s["response_id"], s["score"]) for s in m["scores"]] == [(a, 4.0), (b, 2.5), (c, 1.0)]
    assert (m["n_annotators"], m["agreement"], m["annotators"]) == (None, None, [])
    assert skipped == {"tied_best": 1, "missing_scores": 1}
    assert rows_of(db, source="model:rubric", min_margin=3.5)[1] == {"tied_best": 1, "missing_scores": 1,
                                                                     "below_min_margin": 1}


def test_model_variants_are_averaged_when_there_is_no_aggregate(db: Database, sid: int) -> None:
    pid, (a, b, c) = three(db, sid)
    for rid, vals in ((a, (5, 2)), (b, (1, 2)), (c, (4, 4))):
        for n, v in enumerate(vals):
            model_score(db, sid, pid, rid, v, variant=f"s{n}")
    rows, _ = rows_of(db, source="model:rubric")
    assert pairs(rows) == [(c, b)] and rows[0]["meta"]["margin"] == 2.5


def test_pairwise_model_only_swap_consistent_verdicts(db: Database, sid: int) -> None:
    pid, (a, b, c) = three(db, sid)
    p2, (d, e, _) = three(db, sid, "p2")
    model_order(db, sid, pid, a, b, str(a), (0.7, 0.2, 0.1))
    model_order(db, sid, pid, b, a, str(a), (0.3, 0.6, 0.1))   # consistent: a wins; gaps 0.5 and 0.3
    model_order(db, sid, pid, a, c, str(a), (0.6, 0.3, 0.1))
    model_order(db, sid, pid, c, a, str(c), (0.6, 0.3, 0.1))   # position bias: inconsistent
    model_order(db, sid, pid, b, c, "tie", (0.2, 0.2, 0.6))
    model_order(db, sid, pid, c, b, "tie", (0.2, 0.2, 0.6))    # consistent tie
    model_order(db, sid, p2, d, e, str(d))                       # one order only
    rows, skipped = rows_of(db, source="model:pairwise")
    assert pairs(rows) == [(a, b)]
    m = rows[0]["meta"]
    assert (m["swap_consistent"], m["margin"], m["margin_kind"]) == (True, pytest.approx(0.4), "prob_gap")
    assert [s["variant"] for s in m["scores"]] == [f"order:{a}-{b}", f"order:{b}-{a}"]
    assert skipped == {"swap_inconsistent": 1, "tie": 1, "single_order": 1}
    # rm needs a margin: the imported-style verdicts without probabilities give none
    model_order(db, sid, p2, e, d, str(d))
    rows, skipped = rows_of(db, source="model:pairwise", kind="rm")
    assert pairs(rows) == [(a, b)] and skipped["no_margin"] == 1


def test_selectors_pick_for_sft_and_refuse_pairs(db: Database, sid: int) -> None:
    pid, (a, b, c) = three(db, sid)
    record(db, sid, pid, judge_kind="model", judge=M, method="select_usc", response_id=b, label="x")
    rows, _ = rows_of(db, kind="sft", source="model:select_usc")
    assert [r["meta"]["chosen_response_id"] for r in rows] == [b]
    assert rows[0]["completion"] == [{"role": "assistant", "content": "p1 answer B"}]
    with pytest.raises(ValueError, match="picks one response per prompt"):
        rows_of(db, source="model:select_usc")
    with pytest.raises(ValueError, match="no current judge_score verdicts"):
        rows_of(db, source="model:judge_score")
    record(db, sid, pid, judge_kind="model", judge="m2", method="select_usc", response_id=a, label="x")
    with pytest.raises(ValueError, match="several judges"):
        rows_of(db, kind="sft", source="model:select_usc")
    rows, _ = rows_of(db, kind="sft", source="model:select_usc@m2")
    assert [r["meta"]["chosen_response_id"] for r in rows] == [a]


# -- consensus of humans and the model -----------------------------------------------------------------------
def test_consensus_keeps_pairs_the_model_agrees_with(db: Database, sid: int) -> None:
    ps = [three(db, sid, f"p{n}") for n in range(4)]
    for pid, (a, b, c) in ps:
        label(db, sid, pid, "alice", a, {a: 7, b: 4, c: 1})   # human pair: (a, c)
    model_score(db, sid, ps[0][0], ps[0][1][0], 0.9, method="judge_score")
    model_score(db, sid, ps[0][0], ps[0][1][2], 0.1, method="judge_score")   # agrees
    model_score(db, sid, ps[1][0], ps[1][1][0], 0.2, method="judge_score")
    model_score(db, sid, ps[1][0], ps[1][1][2], 0.8, method="judge_score")   # disagrees
    model_score(db, sid, ps[2][0], ps[2][1][0], 0.5, method="judge_score")
    model_score(db, sid, ps[2][0], ps[2][1][2], 0.5, method="judge_score")   # tie
    rows, skipped = rows_of(db, source="consensus:judge_score")
    assert pairs(rows) == [(ps[0][1][0], ps[0][1][2])]
    assert skipped == {"model_disagrees": 1, "model_tie": 1, "model_missing": 1}
    assert [s["score"] for s in rows[0]["meta"]["scores"]] == [0.9, 0.1]
    r = preview_dataset(db, "demo", ExportOptions(source="consensus:judge_score"))
    assert r.agreement["human_model_agreement"] == pytest.approx(1 / 3)


def test_consensus_with_the_pairwise_method(db: Database, sid: int) -> None:
    p1, (a, b, c) = three(db, sid, "p1")
    p2, (d, e, f) = three(db, sid, "p2")
    label(db, sid, p1, "alice", a, {a: 7, b: 4, c: 1})
    label(db, sid, p2, "alice", d, {d: 7, e: 4, f: 1})
    model_order(db, sid, p1, a, c, str(a))
    model_order(db, sid, p1, c, a, str(a))
    model_order(db, sid, p2, d, f, str(d))
    model_order(db, sid, p2, f, d, str(f))
    rows, skipped = rows_of(db, source="consensus:pairwise")
    assert pairs(rows) == [(a, c)] and rows[0]["meta"]["swap_consistent"] is True
    assert skipped == {"swap_inconsistent": 1}


# -- kto ---------------------------------------------------------------------------------------------------
def test_kto_from_correct_labels(db: Database, sid: int) -> None:
    pid, (a, b, c) = three(db, sid)
    for who, rid, ok in (("alice", a, True), ("bob", a, True), ("carol", a, False), ("alice", b, False),
                         ("alice", c, True), ("bob", c, False)):
        record(db, sid, pid, judge=who, method="correct", response_id=rid, value=1.0 if ok else 0.0,
               label="correct" if ok else "incorrect")
    rows, skipped = rows_of(db, kind="kto")
    assert [(r["meta"]["response_ids"], r["label"], r["meta"]["agreement"]) for r in rows] == [
        ([a], True, pytest.approx(2 / 3)), ([b], False, 1.0)]
    assert rows[0]["completion"] == [{"role": "assistant", "content": "p1 answer A"}]
    assert skipped == {"no_consensus": 1}
    per, _ = rows_of(db, kind="kto", per_annotator=True)
    assert [r["label"] for r in per] == [True, True, False, False, True, False]


def test_kto_from_checklists_and_ratings(db: Database, sid: int) -> None:
    pid, (a, b, c) = three(db, sid)
    items = checklists.create_checklist(db, pid, M, ["Is it short?", "Is it right?"], method="checklist",
                                        version="1").items
    for rid, answers in ((a, ("YES", "YES")), (b, ("YES", "NO"))):
        for item, ans in zip(items, answers):
            record(db, sid, pid, judge="alice", method="checklist_item", response_id=rid, checklist_item_id=item.id,
                   label=ans, value=1.0 if ans == "YES" else 0.0)
    rows, _ = rows_of(db, kind="kto", signal="checklist")
    assert [(r["meta"]["response_ids"][0], r["label"]) for r in rows] == [(a, True), (b, False)]
    assert [v["label"] for v in rows[1]["meta"]["votes"]] == ["any_no"]
    for rid, v in ((a, 6), (b, 4), (c, 2)):
        judge(db, sid, pid, "alice", "likert", response_id=rid, value=v)
    rows, skipped = rows_of(db, kind="kto", signal="ratings")  # 1–7 scale: threshold 4
    assert [(r["meta"]["response_ids"][0], r["label"]) for r in rows] == [(a, True), (c, False)]
    assert skipped == {"at_threshold": 1}
    rows, skipped = rows_of(db, kind="kto", signal="ratings", kto_threshold=5)
    assert [r["label"] for r in rows] == [True, False, False] and skipped == {}
    assert rows_of(db, kind="kto")[0][0]["meta"]["signal"] == "checklist"  # auto: no correct labels


# -- sft ---------------------------------------------------------------------------------------------------
def test_sft_best_of_n(db: Database, sid: int) -> None:
    p1, (a, b, c) = three(db, sid, "p1")
    p2, (d, e, f) = three(db, sid, "p2")
    label(db, sid, p1, "alice", b, {})
    label(db, sid, p1, "bob", b, {})
    label(db, sid, p2, "alice", d, {})
    label(db, sid, p2, "bob", e, {})
    rows, skipped = rows_of(db, kind="sft")
    assert [r["meta"]["chosen_response_id"] for r in rows] == [b] and skipped == {"no_consensus": 1}
    assert rows[0]["prompt"] == [{"role": "user", "content": "Question p1?"}]
    msgs, _ = rows_of(db, kind="sft", style="messages")
    assert msgs[0]["messages"] == [{"role": "user", "content": "Question p1?"},
                                   {"role": "assistant", "content": "p1 answer B"}]
    assert list(msgs[0]) == ["messages", "meta"]


# -- judge (Self-Rationalization) ----------------------------------------------------------------------------
def critique(db: Database, sid: int, pid: int, rid: int, variant: str, verdict: str, text: str) -> int:
    return record(db, sid, pid, judge_kind="model", judge=M, method="critique", response_id=rid, variant=variant,
                  value=1.0 if verdict == "correct" else 0.0, label=verdict, rationale=text, method_version="1")


def test_judge_pairs_agreeing_vs_disagreeing_critiques(db: Database, sid: int) -> None:
    pid, (a, b, c) = three(db, sid)
    critique(db, sid, pid, a, "s0", "correct", "Looks fine.")
    critique(db, sid, pid, a, "s1", "incorrect", "Step 2 is wrong.\nFirst error: 2 + 2 = 5")
    critique(db, sid, pid, b, "s0", "correct", "ok")
    critique(db, sid, pid, b, "s1", "correct", "ok too")
    critique(db, sid, pid, c, "s0", "incorrect", "bad")
    critique(db, sid, pid, c, "s1", "correct", "good")
    record(db, sid, pid, judge="alice", method="correct", response_id=a, label="incorrect", value=0.0)
    record(db, sid, pid, judge="alice", method="correct", response_id=b, label="correct", value=1.0)
    rows, skipped = rows_of(db, kind="judge")
    (row,) = rows
    assert skipped == {"all_agree": 1, "no_human_label": 1}
    assert json.loads(row["chosen"][0]["content"]) == {"critique": "Step 2 is wrong.", "verdict": "incorrect",
                                                       "first_error": "2 + 2 = 5"}
    assert json.loads(row["rejected"][0]["content"]) == {"critique": "Looks fine.", "verdict": "correct",
                                                         "first_error": "none"}
    assert row["prompt"][0]["role"] == "system" and "p1 answer A" in row["prompt"][-1]["content"]
    m = row["meta"]
    assert (m["chosen_variant"], m["rejected_variant"], m["label"], m["response_ids"]) == ("s1", "s0", False, [a])
    assert m["source"] == f"model:critique@{M}"


# -- origins, schema and files ---------------------------------------------------------------------------------
def test_revisions_are_left_out_unless_included_and_flagged_off_policy(db: Database, sid: int) -> None:
    run = make_run(db, sid)
    pid, (a, b, c) = three(db, sid, run_id=run)
    (rev,) = responses.insert_responses(db, [ResponseIn(prompt_id=pid, origin="revision", parent_id=c,
                                                        text="fixed C", model_id="test/model")])
    for rid, v in ((a, 3.0), (b, 2.0), (c, 1.0), (rev, 5.0)):
        model_score(db, sid, pid, rid, v, method="neg_perplexity")
    rows, _ = rows_of(db, source="model:neg_perplexity")
    assert pairs(rows) == [(a, c)] and rows[0]["meta"]["off_policy"] is False
    assert rows[0]["meta"]["generation_run_id"] == run and rows[0]["meta"]["model_id"] == "test/model"
    rows, _ = rows_of(db, source="model:neg_perplexity", include_origin="sampled,revision")
    assert pairs(rows) == [(rev, c)]
    m = rows[0]["meta"]
    assert m["off_policy"] is True and m["origins"] == [{"response_id": rev, "origin": "revision"},
                                                       {"response_id": c, "origin": "sampled"}]
    assert m["generation_run_id"] is None  # the revision belongs to no run


def test_every_kind_has_one_meta_schema_and_writes_typed_files(db: Database, sid: int, tmp_path: Path) -> None:
    pid, (a, b, c) = three(db, sid)
    label(db, sid, pid, "alice", a, {a: 7, b: 4, c: 1})
    record(db, sid, pid, judge="alice", method="correct", response_id=a, label="correct", value=1.0)
    for kind in ("dpo", "rm", "kto", "sft"):
        rows, _ = rows_of(db, kind=kind)
        assert rows and all(tuple(r["meta"]) == META_FIELDS for r in rows)
        schema = row_schema(kind, "conversational")
        assert list(rows[0]) == schema.names
        pa.Table.from_pylist(rows, schema=schema)  # every value fits the declared type
        out = export_dataset(db, "demo", tmp_path / f"{kind}.parquet", ExportOptions(kind=kind))
        assert pq.read_schema(out.out_path).equals(schema)


def test_export_writes_the_card_and_the_export_run(db: Database, sid: int, tmp_path: Path) -> None:
    run = make_run(db, sid, "HuggingFaceTB/SmolLM2-135M-Instruct")
    pid, (a, b, c) = three(db, sid, run_id=run)
    p2, (d, e, f) = three(db, sid, "p2", run_id=run)
    label(db, sid, pid, "alice", a, {a: 7, b: 4, c: 1})
    label(db, sid, p2, "alice", d, {d: 2, e: 2, f: 2})
    r = export_dataset(db, "demo", tmp_path / "x" / "pairs.jsonl", ExportOptions(min_annotators=1))
    assert (r.rows, r.skipped, r.signal, r.source) == (1, {"tied_lowest": 1}, "best", "human")
    assert r.message == f"1 pair written to {tmp_path / 'x' / 'pairs.jsonl'}; 1 skipped (tied_lowest: 1)"
    card = Path(r.card_path).read_text()
    assert card.startswith("---\nconfigs:") and 'path: "pairs.jsonl"' in card
    for needle in (r.content_hash, '"demo"', "HuggingFaceTB/SmolLM2-135M-Instruct", "| skipped: `tied_lowest` | 1 |",
                   "| kept | 1 |", "temperature", "`min_agreement`: 0.0", f"| export_run | {r.export_run_id} |"):
        assert needle in card, needle
    assert "alice" not in card and "alice" not in Path(r.out_path).read_text()
    row = db.fetchrow("SELECT * FROM export_run WHERE id = ?", [r.export_run_id])
    assert (row["kind"], row["out_path"], row["content_hash"]) == ("dpo", r.out_path, r.content_hash)
    counts = json.loads(row["counts"])
    assert counts["kept"] == 1 and counts["skipped"] == {"tied_lowest": 1}
    assert json.loads(row["params"])["signal"] == "best"
    named = export_dataset(db, "demo", tmp_path / "n.jsonl", ExportOptions(annotator_names=True))
    assert json.loads(Path(named.out_path).read_text())["meta"]["annotators"] == ["alice"]
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["pairs.card.md", "pairs.jsonl"]  # no temp files
    assert r.card_path == str((tmp_path / "x" / "pairs.card.md").resolve())
    assert json.loads(row["params"])["card"] == r.card_path


def test_bad_options_are_refused_before_writing(db: Database, sid: int, tmp_path: Path) -> None:
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    with pytest.raises(ValueError, match="use .jsonl or .parquet"):
        export_dataset(db, "demo", tmp_path / "x.csv", ExportOptions())
    with pytest.raises(ValueError, match="messages"):
        ExportOptions(kind="dpo", style="messages")
    with pytest.raises(ValueError, match="unknown source"):
        ExportOptions(source="robot")
    with pytest.raises(ValueError, match="unknown method"):
        ExportPreview(study="demo", source="model:nope").options()
    with pytest.raises(ValueError, match="kto exports come from human labels"):
        ExportOptions(kind="kto", source="model:rubric")
    with pytest.raises(ValueError, match="does not fit"):
        ExportOptions(kind="dpo", signal="correct")
    with pytest.raises(LookupError):
        export_dataset(db, "nope", tmp_path / "x.jsonl", ExportOptions())
    assert list(tmp_path.iterdir()) == [] and db.fetchval("SELECT count(*) FROM export_run") == 0
