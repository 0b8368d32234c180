"""Finding 3 of the statistics issue: Fleiss' κ is computed at the configured overlap, else at the most common
number of human votes per unit (not the maximum), and the "no consensus" counts hold only units humans judged."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from app.services.agreement import method_info
from storage import judgments
from storage.analysis.report import build_report, report_markdown
from storage.db import Database
from storage.models import JudgmentIn, StudyConfig
from storage.studies import create_study
from tests.builders import make_prompt, make_responses

# Per prompt: (ann1, ann2) winners as "first" / "second" / "tie"; ann3 also votes on prompt 0 (an extra
# annotator routed to it, later than the other two).
VOTES = [("first", "second"), ("first", "first"), ("second", "second"), ("tie", "first"), ("second", "second"),
         ("first", "tie")]
CLASSES = ("first", "second", "tie")


def _fleiss_from_definition(units: list[list[str]]) -> float:
    """Fleiss (1971) with m raters per unit, written out: P_i = (Σ_j n_ij² − m) / (m(m − 1)), p_j = share of
    all ratings in category j, κ = (mean P_i − Σ p_j²) / (1 − Σ p_j²)."""
    m = len(units[0])
    counts = [[u.count(c) for c in CLASSES] for u in units]
    p_i = [(sum(n * n for n in row) - m) / (m * (m - 1)) for row in counts]
    p_j = [sum(row[j] for row in counts) / (len(units) * m) for j in range(len(CLASSES))]
    pe = sum(p * p for p in p_j)
    return (sum(p_i) / len(p_i) - pe) / (1 - pe)


def _study(db: Database, overlap: int | None) -> int:
    s = create_study(db, f"f{overlap}", config=StudyConfig(questions=["pairwise"], overlap=overlap))
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    rows = []
    for i, pair in enumerate([*VOTES, None]):
        pid = make_prompt(db, s.id, f"q{i}")
        a, b = make_responses(db, pid, ["one", "two"])
        label = {"first": str(a), "second": str(b), "tie": "tie"}
        votes = [] if pair is None else list(zip(("ann1", "ann2"), pair)) + [("ann3", "second")] * (i == 0)
        for who, v in votes:
            rows.append(JudgmentIn(study_id=s.id, prompt_id=pid, judge_kind="human", judge=who, method="pairwise",
                                   response_id=a, response_b_id=b, shown_order=[a, b], label=label[v],
                                   idempotency_key=uuid.uuid4().hex))
        for first, second in ((a, b), (b, a)):  # the model judges every pair, q6 too, which no human judged
            rows.append(JudgmentIn(study_id=s.id, prompt_id=pid, judge_kind="model", judge="m", method="pairwise",
                                   variant=f"order:{first}-{second}", response_id=first, response_b_id=second,
                                   shown_order=[first, second], label=str(a), idempotency_key=uuid.uuid4().hex))
    judgments.record(db, rows)
    # ann3's vote on q0 came last: Fleiss at overlap 2 keeps the first two votes of that unit
    with db.write() as cur:
        cur.execute("UPDATE judgment SET created_at = ? WHERE judge = 'ann3'", [t0 + timedelta(days=1)])
        cur.execute("UPDATE judgment SET created_at = ? WHERE judge <> 'ann3'", [t0])
    return s.id


def test_fleiss_uses_the_most_common_count_of_votes_when_no_overlap_is_set(db: Database) -> None:
    rep = build_report(db, _study(db, None), n_boot=0, method_info=method_info)
    fk = rep["pairwise"]["fleiss_kappa"]
    assert (fk["overlap"], fk["overlap_source"]) == (2, "most common human votes per unit")
    assert (fk["n"], fk["n_units_truncated"], fk["n_units_below"]) == (6, 1, 0)  # was 1 unit at the maximum, 3
    assert abs(fk["value"] - _fleiss_from_definition([list(v) for v in VOTES])) < 1e-12
    assert "overlap 2 (most common human votes per unit)" in report_markdown(rep)
    configured = build_report(db, _study(db, 3), n_boot=0, method_info=method_info)["pairwise"]["fleiss_kappa"]
    assert (configured["overlap"], configured["overlap_source"], configured["n"]) == (3, "study config", 1)


def test_no_consensus_counts_only_units_that_humans_judged(db: Database) -> None:
    rep = build_report(db, _study(db, None), n_boot=0, method_info=method_info)
    pw = rep["pairwise"]
    # Human units: q0 (3 votes: second wins), q1..q5; ann1 and ann2 split on q3 and q5 (no unique mode).
    assert (pw["units"]["n_units"], pw["units"]["n_no_consensus"]) == (6, 2)
    model = next(r for r in pw["vs_consensus"] if r["judge"] == "m" and r.get("order") == "combined")
    # The model judged all 7 pairs: 4 with a consensus, 2 without, and q6 (no human) is not "no consensus".
    assert (model["n"], model["n_no_consensus"]) == (4, 2)
