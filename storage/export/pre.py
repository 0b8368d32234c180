"""`--source pre:METHOD`: PRE's weighted vote (Chu et al. 2024; the report's `judges.pre`) as the model verdicts
an export pairs from. Every judge's current verdicts of METHOD are loaded, the judges that passed the exam vote
with their exam score as weight (storage.analysis.judges, the same rule the report scores), and the vote takes
their place as the verdicts of one judge, `pre`, so the self-rewarding policies (storage.export.policies.model)
read it as they read one model's verdicts. The exam prompts are not exported (`pre_exam`): their human labels
chose the weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from storage.analysis.judges import weighted_scores, weighted_verdicts
from storage.analysis.pairwise import TIE_LABELS, combine_orders, pairwise_votes
from storage.export.data import ModelRow

EXAM_SKIP = "pre_exam"


@dataclass(frozen=True)
class PreVote:
    judge: str  # PRE's name (`pre`)
    weights: dict[str, float]  # qualified judge → weight (its exam score)
    exam: frozenset[int]  # exam prompt ids: skipped
    seed: int
    threshold: float
    exam_scores: dict[str, float | None]


def _pairwise(rows: list[ModelRow], pid: int, weights: dict[str, float], judge: str) -> list[ModelRow]:
    ok = [r for r in rows if r.judge in weights and r.variant and r.variant.startswith("order:")
          and r.response_id is not None and r.response_b_id is not None and r.label is not None
          and (r.label in TIE_LABELS or r.label in (str(r.response_id), str(r.response_b_id)))]
    if not ok:
        return []
    votes = pairwise_votes(pl.DataFrame({"prompt_id": [pid] * len(ok), "judge": [r.judge for r in ok],
                                         "response_id": [r.response_id for r in ok],
                                         "response_b_id": [r.response_b_id for r in ok],
                                         "label": [r.label for r in ok], "id": [r.id for r in ok]}))
    ids = votes.group_by("unit").agg(pl.col("id")).rows_by_key("unit", unique=True)
    comb = combine_orders(votes.select("prompt_id", "unit", "judge", "shown", "label"))
    out: list[ModelRow] = []
    for v in weighted_verdicts(comb.select("prompt_id", "unit", "judge", "label"), weights).iter_rows(named=True):
        lo, hi = (int(x) for x in v["unit"].split("-"))
        total = v["weight_first"] + v["weight_second"] + v["weight_tie"]
        label = {"first": str(lo), "second": str(hi)}.get(v["label"], "tie")
        voters = sorted(ids[v["unit"]][0])
        share = {lo: v["weight_first"] / total, hi: v["weight_second"] / total}
        for a, b in ((lo, hi), (hi, lo)):  # both orders naming the vote: the policies' swap check passes it
            out.append(ModelRow(voters[0], judge, a, b, f"order:{a}-{b}", None, None, label,
                                {"A": share[a], "B": share[b]}, None, None, voter_ids=voters))
    return out


def _scores(rows: list[ModelRow], pid: int, weights: dict[str, float], judge: str, column: str) -> list[ModelRow]:
    ok = [r for r in rows if r.judge in weights and r.variant is None and r.response_id is not None
          and r.response_b_id is None and getattr(r, column) is not None]
    if not ok:
        return []
    frame = pl.DataFrame({"prompt_id": [pid] * len(ok), "response_id": [r.response_id for r in ok],
                          "judge": [r.judge for r in ok], "score": [float(getattr(r, column)) for r in ok]})
    ids: dict[int, list[int]] = {}
    for r in ok:
        ids.setdefault(r.response_id, []).append(r.id)  # type: ignore[arg-type]
    out = []
    for s in weighted_scores(frame, weights).iter_rows(named=True):
        voters = sorted(ids[s["response_id"]])
        value: dict[str, Any] = {"value": None, "prob": None, column: s["score"]}
        out.append(ModelRow(voters[0], judge, s["response_id"], None, None, value["value"], value["prob"], None,
                            None, None, None, voter_ids=voters))
    return out


def vote_rows(model: dict[int, list[ModelRow]], pre: PreVote, score_column: str) -> dict[int, list[ModelRow]]:
    """Each prompt's verdicts of every judge → PRE's verdicts (one judge, `pre.judge`); each vote row keeps the
    ids of the judgments that voted (`voter_ids`), which the export records as the row's provenance."""
    out: dict[int, list[ModelRow]] = {}
    for pid, rows in model.items():
        out[pid] = (_pairwise(rows, pid, pre.weights, pre.judge) if score_column == "label"
                    else _scores(rows, pid, pre.weights, pre.judge, score_column))
    return out
