"""The reference the tests hold `critlab export dpo --per-annotator --signal best` to: the first DPO exporter's
pair builder, one SQL query and a Python loop, kept as an independent second reading of the pair rule
(tests/test_export_dpo.py pins the rule on it, tests/test_export_policies.py compares the export with it on
random studies). Its file writer and export_run insert are gone: exports have one path, storage/export/run.py.

Per-annotator DPO pairs from best-of-N picks, in TRL's conversational explicit-prompt format.

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
from collections import Counter
from typing import Any

import pyarrow as pa

from storage.db import Database
from storage.export.files import pseudonymizer
from storage.export.policies import pick_rejected
from storage.studies import get_study

PAIR_POLICY = "best_vs_strictly_lowest_rated"
SKIP_REASONS = ("no_pick", "no_shown_order", "no_other_response", "missing_ratings", "tied_lowest",
                "rejected_not_below_chosen", "missing_response")

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
