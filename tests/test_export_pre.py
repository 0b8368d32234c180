"""`critlab export dpo --source pre:METHOD`: PRE's weighted vote of every judge of METHOD as the pair source, on
the two-judge study of tests/test_report_judges.py. The exam (seeded by the study id, as the report's
default), the weights and the vote are worked out here from the definitions; the exam prompts are skipped."""

from __future__ import annotations

import hashlib
from functools import partial

import pytest

from app.services.exports import export_methods
from storage.db import Database
from storage.export import ExportOptions
from storage.export import preview_dataset as _preview_dataset
from tests.builders import make_study
from tests.test_report_judges import ANN, G, H1, H2, J, N, SCORE, two_judge_study

preview_dataset = partial(_preview_dataset, methods=export_methods())


def _combined(pair: tuple[str, str]) -> str:
    return pair[0] if pair[0] == pair[1] else "tie"


def _exam(sid: int, P: list[dict[str, int]]) -> tuple[list[int], list[int]]:
    order = sorted(range(N), key=lambda k: hashlib.md5(f"pre:{sid}:{P[k]['p']}".encode()).hexdigest())
    return sorted(order[:2]), sorted(order[2:])  # round(0.3 · 6) = 2


def test_pre_pairwise_pairs_follow_the_weighted_vote(db: Database) -> None:
    make_study(db, "first")  # study id 2: a draw where both judges pass the exam with different weights
    sid, P = two_judge_study(db, "demo")
    exam, held = _exam(sid, P)
    comb = {"gen-a": [_combined(v) for v in G], "judge-b": [_combined(v) for v in J]}
    # exam score: MT-Bench S1 of the judge's combined verdict against both humans' votes on the exam prompts
    score = {j: sum((c[k] == H1[k]) + (c[k] == H2[k]) for k in exam) / (2 * len(exam)) for j, c in comb.items()}
    weights = {j: s for j, s in score.items() if s >= 0.5}
    assert weights  # this study's draw lets at least one judge vote
    want = {}
    for k in held:
        tot = {"a": 0.0, "b": 0.0, "tie": 0.0}
        for j, w in weights.items():
            tot[comb[j][k]] += w
        top = max(tot.values())
        winners = [c for c, t in tot.items() if t == top]
        if len(winners) == 1 and winners[0] != "tie":
            win, lose = ("a1", "b1") if winners[0] == "a" else ("b1", "a1")
            want[P[k]["p"]] = (P[k][win], P[k][lose], (tot[winners[0]] - tot["b" if winners[0] == "a" else "a"])
                               / sum(tot.values()))
    r = preview_dataset(db, "demo", ExportOptions(source="pre:pairwise"), n_rows=100)
    got = {row["meta"]["prompt_db_id"]: (row["meta"]["chosen_response_id"], row["meta"]["rejected_response_id"],
                                         row["meta"]["margin"]) for row in r.first_rows}
    assert want and got.keys() == want.keys()
    for pid, (ch, rj, margin) in want.items():
        assert got[pid][:2] == (ch, rj) and got[pid][2] == pytest.approx(margin)
    assert r.skipped["pre_exam"] == 2 and r.source == "pre:pairwise"
    assert r.skipped.get("tie", 0) == len(held) - len(want)
    assert all(row["meta"]["source"] == "pre:pairwise" for row in r.first_rows)
    # by hand for this draw (exam q0, q3): S1 gen-a 4/4, judge-b 2/4, weights 1 and 0.5. q1: a (1) beats b (0.5),
    # margin 0.5 / 1.5, where a plain majority would tie; q2: tie (1) beats b (0.5): no pair; q4: both b,
    # margin 1; q5: a (1) beats tie (0.5), margin 1 / 1.5
    assert (sid, exam, weights) == (2, [0, 3], {"gen-a": 1.0, "judge-b": 0.5})
    assert {k: want[P[k]["p"]][2] for k in (1, 4, 5)} == pytest.approx({1: 1 / 3, 4: 1.0, 5: 2 / 3})
    assert P[2]["p"] not in want and r.skipped["tie"] == 1


def test_pre_scores_pairs_are_the_weighted_means(db: Database) -> None:
    sid, P = two_judge_study(db, "demo")
    _, held = _exam(sid, P)
    # exam: Spearman of [a1, a2, b1, b2] against the humans' means, prompt by prompt: gen-a 1, judge-b 0.8
    means = [sum(v[i] for v in ANN.values()) / 2 for i in range(4)]
    assert means == [6.5, 5.0, 2.5, 1.5]
    w = {"gen-a": 1.0, "judge-b": 0.8}
    pre = [sum(w[j] * SCORE[j][i] for j in w) / sum(w.values()) for i in range(4)]
    r = preview_dataset(db, "demo", ExportOptions(source="pre:judge_score"), n_rows=100)
    assert r.skipped == {"pre_exam": 2}
    assert sorted(row["meta"]["prompt_db_id"] for row in r.first_rows) == sorted(P[k]["p"] for k in held)
    for row in r.first_rows:
        k = next(i for i in range(N) if P[i]["p"] == row["meta"]["prompt_db_id"])
        assert row["meta"]["chosen_response_id"] == P[k]["a1"]  # (9 + 0.8 · 8) / 1.8 = 8.556, the highest
        assert row["meta"]["margin"] == pytest.approx(pre[0] - pre[3]) and pre[3] == 1.0
        assert len(row["meta"]["judgment_ids"]) == 4  # both judges' scores of the chosen and the rejected


def test_pre_source_refusals(db: Database) -> None:
    two_judge_study(db, "demo")
    with pytest.raises(ValueError, match="names no judge"):
        ExportOptions(source="pre:pairwise@gen-a")
    with pytest.raises(ValueError, match="dpo, rm or sft"):
        ExportOptions(kind="kto", source="pre:pairwise")
    with pytest.raises(ValueError, match="no current model verdicts"):
        preview_dataset(db, "demo", ExportOptions(source="pre:rubric"))


def test_pre_seed_and_threshold_choose_the_exam_and_the_voters(db: Database) -> None:
    """--pre-seed draws another exam (its prompts are the ones skipped) and --pre-threshold 0.9 leaves judge-b
    (exam Spearman 0.8) out of the vote: every pair is then gen-a's own, a1 (9) over b2 (1)."""
    sid, P = two_judge_study(db, "demo")
    seed = next(s for s in range(100) if _exam(s, P)[1] != _exam(sid, P)[1])
    _, held = _exam(seed, P)
    r = preview_dataset(db, "demo", ExportOptions(source="pre:judge_score", pre_seed=seed, pre_threshold=0.9),
                        n_rows=100)
    assert r.skipped == {"pre_exam": 2}
    assert sorted(row["meta"]["prompt_db_id"] for row in r.first_rows) == sorted(P[k]["p"] for k in held)
    for row in r.first_rows:
        k = next(i for i in range(N) if P[i]["p"] == row["meta"]["prompt_db_id"])
        assert row["meta"]["chosen_response_id"] == P[k]["a1"]
        assert row["meta"]["margin"] == SCORE["gen-a"][0] - SCORE["gen-a"][3]  # 9 − 1: b2 is the rejected
        assert len(row["meta"]["judgment_ids"]) == 2  # gen-a's scores only
    with pytest.raises(ValueError, match="--pre-seed and --pre-threshold"):
        ExportOptions(source="model:judge_score", pre_threshold=0.9)
