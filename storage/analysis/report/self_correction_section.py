"""The report's `self_correction` section: how the critique method's corrections change the correctness of
the responses it judged, from the humans' correct / incorrect labels (`storage.analysis.self_correction`:
SCoRe's accuracy before / after and Δ split into fixed and broken; Yang et al.'s confidence level and critique
score)."""

from __future__ import annotations

from typing import Any

import polars as pl

from storage.analysis.consensus import consensus
from storage.analysis.reference_match import RULE as REFERENCE_RULE
from storage.analysis.reference_match import answer_matches
from storage.analysis.report.figures import CORRECT_CLASSES, LEVEL, _est, _unavailable
from storage.analysis.report.loading import _Data, _response_level, _sql
from storage.analysis.report.votes import _correct_votes
from storage.analysis.self_correction import FIGURES, self_correction_stats
from storage.db import Database

CRITIQUE = "critique"  # the method that writes corrections as revision responses (backend/methods/critique.py)
ATTEMPT = ("one attempt per response the judge critiqued: before = the human consensus on the response, after = "
           "the consensus on the judge's first revision of it (its lowest-numbered sample's correction), or the "
           "response's own when the critique wrote no revision (judged correct, or the correction was empty, "
           "unchanged or cut off)")


def _revisions(db: Database, study_id: int) -> pl.DataFrame:
    """Each response's first critique revision per critic model: response_id, judge, revision_id."""
    return _sql(db, """
        SELECT r.parent_id AS response_id, r.model_id AS judge, min(r.id) AS revision_id
        FROM response r JOIN prompt p ON p.id = r.prompt_id
        WHERE p.study_id = $study AND r.origin = 'revision' AND r.parent_id IS NOT NULL
          AND json_extract_string(r.metadata, '$.method') = $method
        GROUP BY ALL""", {"study": study_id, "method": CRITIQUE})


def _figures(stats: dict[str, Any], n_boot: int) -> dict[str, Any]:
    return {f: {"estimate": stats[f]["estimate"],
                "ci": [stats[f]["low"], stats[f]["high"]] if n_boot > 0 else None,
                "n_valid": stats[f]["n_valid"] if n_boot > 0 else None} for f in FIGURES}


def _attempts(critiqued: pl.DataFrame, revisions: pl.DataFrame, ok: pl.DataFrame) -> pl.DataFrame:
    """Each attempt with `correct_before` / `correct_after` from `ok` (response_id, ok 0/1; a response
    missing from it is unlabelled), the revision's, or the original's again where the critique wrote none."""
    return (critiqued.join(revisions, on=["response_id", "judge"], how="left")
            .join(ok.rename({"ok": "correct_before"}), on="response_id", how="left")
            .join(ok.rename({"response_id": "revision_id", "ok": "revised_ok"}), on="revision_id", how="left")
            .with_columns(correct_after=pl.when(pl.col("revision_id").is_null()).then(pl.col("correct_before"))
                          .otherwise(pl.col("revised_ok"))))


def _reference_labels(db: Database, study_id: int) -> pl.DataFrame:
    """response_id, ok (0/1) for every response (revisions included) of a prompt whose reference holds a
    number (`storage.analysis.reference_match`)."""
    rows = db.fetchall("""SELECT r.id, r.text, p.reference FROM response r JOIN prompt p ON p.id = r.prompt_id
                          WHERE p.study_id = ? AND p.reference IS NOT NULL""", [study_id])
    ok = [(rid, int(m)) for rid, text, ref in rows if (m := answer_matches(text, ref)) is not None]
    return pl.DataFrame(ok, schema={"response_id": pl.Int64, "ok": pl.Int64}, orient="row")


def _self_correction(db: Database, d: _Data, n_boot: int, seed: int) -> dict[str, Any]:
    critiqued = (d.model.filter((pl.col("method") == CRITIQUE) & _response_level())
                 .select("judge", "prompt_id", "response_id").unique().sort("judge", "response_id"))
    if critiqued.height == 0:
        return _unavailable("no critique judgments (the method that writes corrections as revisions)")
    revisions = _revisions(db, d.study.id)
    by_reference = _reference_labels(db, d.study.id)
    reference = ({"rule": REFERENCE_RULE, "judges": _judge_rows(d, _attempts(critiqued, revisions, by_reference),
                                                               n_boot, seed)}
                 if by_reference.height else _unavailable("no prompt with a numeric reference answer"))
    votes = _correct_votes(d)
    if votes.height == 0:
        if by_reference.height:
            return {**_header(), "judges": [], "human": _unavailable("no human correct / incorrect labels"),
                    "reference": reference}
        return _unavailable("no human correct / incorrect labels, and no prompt with a numeric reference answer")
    cons = consensus(votes, CORRECT_CLASSES).filter(pl.col("consensus").is_not_null()).select(
        response_id=pl.col("unit").cast(pl.Int64), ok=(pl.col("consensus") == "correct").cast(pl.Int64))
    return {**_header(), "judges": _judge_rows(d, _attempts(critiqued, revisions, cons), n_boot, seed),
            "reference": reference}


def _header() -> dict[str, Any]:
    return {"available": True, "level": LEVEL, "attempt": ATTEMPT,
            "labels": "human consensus on correct / incorrect (plurality, unique mode); responses without one "
                      "are left out (n_unlabelled)",
            "intervals": "percentile cluster bootstrap over prompts"}


def _judge_rows(d: _Data, a: pl.DataFrame, n_boot: int, seed: int) -> list[dict[str, Any]]:
    own = d.responses.select("response_id", generator="model_id")
    rows = []
    for (judge,), g in a.group_by("judge", maintain_order=True):
        done = g.filter(pl.col("correct_before").is_not_null() & pl.col("correct_after").is_not_null())
        base = {"judge": judge, "n_critiqued": g.height, "n_revised": int(g["revision_id"].is_not_null().sum()),
                "n_unlabelled": g.height - done.height,
                "n_own": done.join(own, on="response_id").filter(pl.col("generator") == judge).height}
        if done.height == 0:
            rows.append({**base, "available": False,
                         "reason": "no critiqued response with a label on it and on its revision"})
            continue
        s = self_correction_stats(done.select("prompt_id", "correct_before", "correct_after"),
                                  n=max(n_boot, 1), seed=seed, level=LEVEL)
        rows.append({**base, "available": True, "n": s["n"], "n_prompts": s["n_prompts"],
                     "n_revised_labelled": int(done["revision_id"].is_not_null().sum()),
                     "i_to_c": s["i_to_c"], "c_to_i": s["c_to_i"], **_figures(s, n_boot)})
    return rows


def _table(doc: Any, rows: list[dict[str, Any]]) -> None:
    doc.table(["judge", "attempts", "revised", "accuracy before", "accuracy after", "Δ", "Δ i→c", "Δ c→i",
               "confidence level", "critique score", "own responses", "unlabelled", "note"],
              [[r["judge"], r.get("n", 0), r.get("n_revised_labelled", "–"),
                *(_est(r.get(f)) for f in FIGURES), r["n_own"], r["n_unlabelled"], r.get("reason") or ""]
               for r in rows])


def self_correction_blocks(doc: Any, sec: dict[str, Any]) -> None:
    doc.p(f"Attempts: {sec['attempt']}. Labels: {sec['labels']}. Intervals: {sec['intervals']}.")
    if sec.get("human"):
        doc.p(f"Human labels: {sec['human']['reason']}.")
    else:
        _table(doc, sec["judges"])
    ref = sec.get("reference") or {}
    if ref.get("judges"):
        doc.p(f"By reference answer instead of human labels ({ref['rule']}):")
        _table(doc, ref["judges"])
