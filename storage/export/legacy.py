"""Per-annotator DPO pairs from best-of-N picks (the first DPO export; `critlab export dpo --per-annotator`
uses the same rule through `pick_rejected`), in TRL's conversational explicit-prompt format.

Pair rule (one pair per prompt and annotator): from the annotator's current blind best-of-N pick,
chosen = the picked response and rejected = the shown response with the strictly lowest rating by
the same annotator (current blind likert judgments), among the shown responses other than the
pick. A pick yields no pair, counted by reason, when:

- `no_other_response`: only the picked response was shown;
- `missing_ratings`: the pick or another shown response has no current rating by that annotator;
- `tied_lowest`: two or more of the other responses share the lowest rating;
- `rejected_not_below_chosen`: the lowest other rating is not strictly below the pick's;
- `no_pick` / `no_shown_order`: the best-of-N row names no response / records no shown order
  (not produced by the Label tab; counted so totals add up);
- `missing_response`: a response row the judgment names no longer exists.

Each output row: `prompt` (the prompt's messages), `chosen` and `rejected` (one assistant message
each, text verbatim), and `meta` with the same keys and types in every row (`META_TYPE`).
Annotators appear only as per-database pseudonyms.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, Field

from storage.db import Database
from storage.export.files import _atomic_write, check_free, pseudonymizer
from storage.studies import get_study

PAIR_POLICY = "best_vs_strictly_lowest_rated"
SKIP_REASONS = ("no_pick", "no_shown_order", "no_other_response", "missing_ratings", "tied_lowest",
                "rejected_not_below_chosen", "missing_response")
FORMATS = (".jsonl", ".parquet")

MESSAGE_TYPE = pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())])
META_TYPE = pa.struct([
    pa.field("study", pa.string()),
    pa.field("prompt_id", pa.string()),
    pa.field("prompt_db_id", pa.int64()),
    pa.field("chosen_response_id", pa.int64()),
    pa.field("rejected_response_id", pa.int64()),
    pa.field("annotator", pa.string()),
    pa.field("chosen_rating", pa.float64()),
    pa.field("rejected_rating", pa.float64()),
    pa.field("ratings", pa.list_(pa.struct([pa.field("response_id", pa.int64()),
                                            pa.field("rating", pa.float64())]))),
    pa.field("shown_order", pa.list_(pa.int64())),
    pa.field("generation_run_id", pa.int64()),
    pa.field("model_id", pa.string()),
    pa.field("judgment_id", pa.int64()),
])
DPO_SCHEMA = pa.schema([
    pa.field("prompt", pa.list_(MESSAGE_TYPE)),
    pa.field("chosen", pa.list_(MESSAGE_TYPE)),
    pa.field("rejected", pa.list_(MESSAGE_TYPE)),
    pa.field("meta", META_TYPE),
])


class ExportSummary(BaseModel):
    pairs: int
    skipped: dict[str, int] = Field(default_factory=dict)
    out_path: str
    content_hash: str
    message: str
    export_run_id: int | None = None


# -- the pair rule ---------------------------------------------------------------------------
def pick_rejected(pick: int, shown: Sequence[int], ratings: Mapping[int, float]) -> tuple[int | None, str | None]:
    """(rejected response id, None), or (None, skip reason).

    >>> pick_rejected(1, [1, 2, 3], {1: 6, 2: 4, 3: 2})
    (3, None)
    >>> pick_rejected(1, [1, 2, 3], {1: 6, 2: 2, 3: 2})
    (None, 'tied_lowest')
    >>> pick_rejected(1, [2, 1], {1: 3, 2: 3})
    (None, 'rejected_not_below_chosen')
    >>> pick_rejected(1, [1, 2, 3], {1: 6, 2: 2})
    (None, 'missing_ratings')
    >>> pick_rejected(1, [1], {1: 6})
    (None, 'no_other_response')
    """
    others = [r for r in dict.fromkeys(shown) if r != pick]
    if not others:
        return None, "no_other_response"
    if pick not in ratings or any(r not in ratings for r in others):
        return None, "missing_ratings"
    lowest = min(ratings[r] for r in others)
    at_lowest = [r for r in others if ratings[r] == lowest]
    if len(at_lowest) > 1:
        return None, "tied_lowest"
    if not lowest < ratings[pick]:
        return None, "rejected_not_below_chosen"
    return at_lowest[0], None


# Latest current row per (prompt, judge) / (judge, response), in case an old database holds two.
_LABELS_SQL = """
WITH picks AS (
  SELECT id, prompt_id, judge, response_id, shown_order FROM judgment
  WHERE study_id = $study AND judge_kind = 'human' AND method = 'best_of_n' AND stage = 'blind'
    AND superseded_at IS NULL AND status = 'ok'
  QUALIFY row_number() OVER (PARTITION BY prompt_id, judge ORDER BY created_at DESC, id DESC) = 1
), ratings AS (
  SELECT judge, response_id, value FROM judgment
  WHERE study_id = $study AND judge_kind = 'human' AND method = 'likert' AND stage = 'blind'
    AND superseded_at IS NULL AND status = 'ok' AND response_id IS NOT NULL AND value IS NOT NULL
  QUALIFY row_number() OVER (PARTITION BY judge, response_id ORDER BY created_at DESC, id DESC) = 1
),
-- every response the annotator saw, plus the pick (should shown_order lack it); joins, not list
-- lookups per row, which were quadratic (74 s for 60k labels)
shown AS (
  SELECT id AS judgment_id, judge, unnest(shown_order) AS response_id FROM picks
  UNION
  SELECT id, judge, response_id FROM picks WHERE response_id IS NOT NULL
), rated AS (
  SELECT s.judgment_id, list({'response_id': r.response_id, 'rating': r.value} ORDER BY r.response_id) AS ratings
  FROM shown s JOIN ratings r ON r.judge = s.judge AND r.response_id = s.response_id
  GROUP BY s.judgment_id
)
SELECT p.id AS judgment_id, p.prompt_id, pr.external_id, pr.messages, p.judge, p.response_id AS pick,
       p.shown_order, rated.ratings
FROM picks p JOIN prompt pr ON pr.id = p.prompt_id LEFT JOIN rated ON rated.judgment_id = p.id
ORDER BY pr.position, pr.id, p.judge
"""

_RESPONSES_SQL = """
SELECT r.id, r.text, r.run_id, coalesce(r.model_id, g.model_id) AS model_id
FROM response r LEFT JOIN generation_run g ON g.id = r.run_id
WHERE r.id IN (SELECT unnest(?::BIGINT[]))
"""


def build_dpo_pairs(db: Database, study_id: int) -> tuple[list[dict[str, Any]], Counter[str]]:
    """The study's DPO rows (in prompt order) and the skipped picks counted by reason."""
    study = get_study(db, study_id)
    labels = db.fetchdicts(_LABELS_SQL, {"study": study_id})
    skipped: Counter[str] = Counter()
    kept: list[tuple[dict[str, Any], int, dict[int, float]]] = []
    for lab in labels:
        ratings = {r["response_id"]: float(r["rating"]) for r in lab["ratings"] or []}
        if lab["pick"] is None:
            skipped["no_pick"] += 1
            continue
        if not lab["shown_order"]:
            skipped["no_shown_order"] += 1
            continue
        rejected, reason = pick_rejected(lab["pick"], lab["shown_order"], ratings)
        if reason is not None:
            skipped[reason] += 1
            continue
        assert rejected is not None
        kept.append((lab, rejected, ratings))

    needed = sorted({i for lab, rej, _ in kept for i in (lab["pick"], rej)})
    responses = {r["id"]: r for r in db.fetchdicts(_RESPONSES_SQL, [needed])} if needed else {}
    alias = pseudonymizer(db) if kept else (lambda name: name)
    rows: list[dict[str, Any]] = []
    for lab, rej, ratings in kept:
        chosen, rejected = responses.get(lab["pick"]), responses.get(rej)
        if chosen is None or rejected is None:
            skipped["missing_response"] += 1
            continue
        shown = list(dict.fromkeys(lab["shown_order"]))
        rows.append({
            "prompt": [{"role": m["role"], "content": m["content"]} for m in json.loads(lab["messages"])],
            "chosen": [{"role": "assistant", "content": chosen["text"]}],
            "rejected": [{"role": "assistant", "content": rejected["text"]}],
            "meta": {
                "study": study.name,
                "prompt_id": lab["external_id"],
                "prompt_db_id": lab["prompt_id"],
                "chosen_response_id": chosen["id"],
                "rejected_response_id": rejected["id"],
                "annotator": alias(lab["judge"]),
                "chosen_rating": ratings[chosen["id"]],
                "rejected_rating": ratings[rejected["id"]],
                "ratings": [{"response_id": r, "rating": ratings[r]} for r in shown if r in ratings],
                "shown_order": shown,
                # One run/model per pair: the one both responses share, else null (never a guess).
                "generation_run_id": _shared(chosen["run_id"], rejected["run_id"]),
                "model_id": _shared(chosen["model_id"], rejected["model_id"]),
                "judgment_id": lab["judgment_id"],
            },
        })
    return rows, skipped


def _shared(a: Any, b: Any) -> Any:
    return a if a == b else None


# -- writing ---------------------------------------------------------------------------------
def export_dpo(db: Database, study_name: str, out_path: str | os.PathLike[str], *,
               overwrite: bool = False) -> ExportSummary:
    """Write the study's DPO pairs to `.jsonl` or `.parquet` (atomically) and record an export_run. An
    existing file at `out_path` is refused unless `overwrite`."""
    out = Path(out_path)
    fmt = out.suffix.lower()
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {out.suffix or '(no extension)'!r} for {out}: "
                         "use .jsonl or .parquet")
    check_free({out: "the data file"}, overwrite=overwrite)
    study = get_study(db, study_name)
    rows, skipped = build_dpo_pairs(db, study.id)
    content_hash = _atomic_write(out, rows, fmt, overwrite=overwrite)
    labels = len(rows) + sum(skipped.values())
    message = _message(len(rows), skipped, labels, out)
    with db.write() as cur:
        run_id = cur.execute(
            "INSERT INTO export_run (kind, study_id, params, counts, out_path, content_hash) "
            "VALUES ('dpo', ?, ?, ?, ?, ?) RETURNING id",
            [study.id,
             json.dumps({"format": fmt.lstrip("."), "pair_policy": PAIR_POLICY, "judge_kind": "human",
                         "stage": "blind", "layout": "trl_conversational_explicit_prompt"}),
             json.dumps({"pairs": len(rows), "best_of_n_labels": labels, "skipped": dict(skipped)}),
             str(out.resolve()), content_hash],
        ).fetchall()[0][0]
    return ExportSummary(pairs=len(rows), skipped=dict(skipped), out_path=str(out.resolve()),
                         content_hash=content_hash, message=message, export_run_id=run_id)


def _message(pairs: int, skipped: Counter[str], labels: int, out: Path) -> str:
    """What happened, and for an empty export why.

    >>> _message(0, Counter(), 0, Path("x.jsonl"))
    '0 pairs: no best-of-N labels yet'
    >>> _message(0, Counter(tied_lowest=2, missing_ratings=1), 3, Path("x.jsonl"))
    '0 pairs: 3 skipped (tied_lowest: 2, missing_ratings: 1)'
    >>> _message(1, Counter(tied_lowest=1), 2, Path("x.jsonl"))
    '1 pair written to x.jsonl; 1 skipped (tied_lowest: 1)'
    """
    why = ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items(), key=lambda kv: (-kv[1], kv[0])))
    n_skipped = sum(skipped.values())
    if pairs == 0:
        return "0 pairs: no best-of-N labels yet" if labels == 0 else f"0 pairs: {n_skipped} skipped ({why})"
    text = f"{pairs} pair{'s' if pairs != 1 else ''} written to {out}"
    return f"{text}; {n_skipped} skipped ({why})" if n_skipped else text
