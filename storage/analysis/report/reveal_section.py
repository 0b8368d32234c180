"""The report's `reveal` section: how often annotators changed a blind label once the model's view was
revealed, and whether the changes moved toward the other humans."""

from __future__ import annotations

from typing import Any

import polars as pl

from storage.analysis.consensus import consensus
from storage.analysis.pairwise import pairwise_votes
from storage.analysis.report.figures import CORRECT_CLASSES, HUMANS, LOO, VOTE, _figure, _unavailable
from storage.analysis.report.intervals import _Boot, _ratio
from storage.analysis.report.loading import _Data
from storage.analysis.report.votes import _code_picks
from storage.models import HumanMethod


_H = HumanMethod
_REVEAL_METHODS = (_H.BEST, _H.PAIRWISE, _H.RATING, _H.CORRECT, _H.CHECKLIST_ITEM, _H.CRITERION_VALID)


def _reveal(d: _Data, boot: _Boot) -> dict[str, Any]:
    h = d.human_all.filter(pl.col("method").is_in(list(_REVEAL_METHODS)))
    key = ["judge", "method", "target_key"]
    b = h.filter(pl.col("stage") == "blind")
    r = h.filter(pl.col("stage") == "revealed")
    pairs = b.join(r.select(*key, "response_id", "response_b_id", "label", "value"), on=key, suffix="_r")
    if pairs.height == 0:
        return _unavailable("no annotator has both a blind and a revealed label on the same item")
    changed = (pl.when(pl.col("method") == _H.BEST).then(pl.col("response_id").ne_missing(pl.col("response_id_r")))
               .when(pl.col("method") == _H.RATING).then(pl.col("value").ne_missing(pl.col("value_r")))
               .otherwise(pl.col("label").ne_missing(pl.col("label_r"))))
    pairs = pairs.with_columns(changed=changed)
    per_unit = pairs.group_by("judge", "prompt_id", "method").agg(changed=pl.col("changed").any())
    per_any = pairs.group_by("judge", "prompt_id").agg(changed=pl.col("changed").any())

    def rate(units: pl.DataFrame, judges: list[str], **extra: Any) -> dict[str, Any]:
        pp = units.group_by("prompt_id").agg(changed=pl.col("changed").sum().cast(pl.Int64), n=pl.len().cast(pl.Int64))
        n = units.height
        return _figure("changed_after_reveal_rate", judges, units["changed"].sum() / n if n else None, n,
                       boot.sums(pp, _ratio("changed", "n")), n_changed=int(units["changed"].sum()), **extra)
    jd = [HUMANS + " (blind)", HUMANS + " (revealed)"]
    by_method = [rate(per_unit.filter(pl.col("method") == m), jd, question=m)
                 for m in _REVEAL_METHODS if per_unit.filter(pl.col("method") == m).height]
    by_annotator = [rate(per_any.filter(pl.col("judge") == a), [f"{a} (blind)", f"{a} (revealed)"], judge=a)
                    for a in sorted(per_any["judge"].unique().to_list())]
    toward = [t for t in (_toward(d, _H.BEST), _toward(d, _H.PAIRWISE), _toward(d, _H.CORRECT)) if t is not None]
    return {"available": True, "n_annotator_prompts": per_any.height,
            "overall": rate(per_any, jd, question="any"), "by_question": by_method, "by_annotator": by_annotator,
            "toward_others": toward}


def _stage_votes(d: _Data, method: str, stage: str) -> pl.DataFrame:
    """One stage's human votes of a categorical question as a vote frame (for the reveal comparison)."""
    h = d.human_all.filter((pl.col("stage") == stage) & (pl.col("method") == method))
    if method == _H.BEST:
        h = h.filter(pl.col("response_id").is_not_null())
        return h.select("prompt_id", unit=pl.lit("best"), judge="judge", label=pl.col("response_id").cast(pl.String))
    if method == _H.PAIRWISE:
        h = h.filter(pl.col("response_id").is_not_null() & pl.col("response_b_id").is_not_null()
                     & pl.col("label").is_not_null())
        if h.height == 0:
            return pl.DataFrame(schema=dict.fromkeys(VOTE, pl.String)).cast({"prompt_id": pl.Int64})
        return pairwise_votes(h.select("prompt_id", "judge", "response_id", "response_b_id", "label")).select(VOTE)
    h = h.filter(pl.col("response_id").is_not_null() & pl.col("label").is_in(list(CORRECT_CLASSES)))
    return h.select("prompt_id", unit=pl.col("response_id").cast(pl.String), judge="judge", label="label")


def _toward(d: _Data, method: str) -> dict[str, Any] | None:
    """Did revisions move toward the other humans? Over (annotator, unit) with a blind and a revealed label and a
    leave-one-out BLIND consensus of the other humans: how often the blind and the revised label equal it."""
    blind, revealed = _stage_votes(d, method, "blind"), _stage_votes(d, method, "revealed")
    if blind.height == 0 or revealed.height == 0:
        return None
    if method == _H.BEST:  # response ids → per-prompt codes (few classes)
        both, _ = _code_picks(pl.concat([blind.with_columns(_b=True), revealed.with_columns(_b=False)]))
        blind = both.filter(pl.col("_b")).select(VOTE)
        revealed = both.filter(~pl.col("_b")).select(VOTE)
    classes = sorted(pl.concat([blind["label"], revealed["label"]]).unique().to_list())
    loo = consensus(blind, classes, leave_one_out=True)
    u = loo.join(revealed.rename({"label": "revised"}), on=["prompt_id", "unit", "judge"]).filter(
        pl.col("consensus").is_not_null())
    n = u.height
    if n == 0:
        return {"question": method, "n": 0, "blind_match": None, "revised_match": None, "n_changed": 0,
                "n_moved_toward": 0, "n_moved_away": 0, "moved_toward_others": None,
                "note": "no revised label has a blind consensus of the other humans"}
    bm = int((u["label"] == u["consensus"]).sum())
    rm = int((u["revised"] == u["consensus"]).sum())
    ch = u.filter(pl.col("label") != pl.col("revised"))
    jd = [HUMANS + " (blind)", LOO]
    return {"question": method, "n": n,
            "blind_match": _figure("match_rate", jd, bm / n, n, stage="blind", question=method),
            "revised_match": _figure("match_rate", [HUMANS + " (revealed)", LOO], rm / n, n, stage="revealed",
                                     question=method),
            "n_changed": ch.height,
            "n_moved_toward": int((ch["revised"] == ch["consensus"]).sum()),
            "n_moved_away": int((ch["label"] == ch["consensus"]).sum()),
            "moved_toward_others": rm > bm}
