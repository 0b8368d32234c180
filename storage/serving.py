"""How the label queue orders prompts (StudyConfig.queue_order) and the record of how each item was served
(table `serving`), so a report can tell which human labels are a uniform random sample and which were routed.

Orders, applied among the open prompts of the same busy count (the least-labelled still come first):
- "position": file order (the default);
- "random": a uniform random permutation, the same for every person: prompts sorted by md5("study:prompt");
- "informative": the highest INFORMATIVE score first, ties (and prompts with no score, 0) in file order.

Policies recorded when a person is served a prompt afresh (a renewal of their own reservation keeps the
first record): the queue order in force, "disagreement" when they are an extra annotator of a prompt
flagged for disagreement (served beyond the overlap and its re-queues), or "gold" for a gold item
(storage.gold). `probability`: for "random", one over the number of prompts the pick was drawn from
uniformly (the open prompts of its busy count, not skipped by the person); for "gold", the gold rate; NULL
for the deterministic policies.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import duckdb

from storage.db import Database

ORDERS = ("position", "random", "informative")
GOLD = "gold"  # a gold item (storage.gold), served at the study's gold rate
UNSERVED = "unserved"  # a label with no serving: imported, added from the Live tab, or opened by link

# A prompt's informativeness, from its current model self-evaluations that carry a probability (`prob`: P(True),
# verbalised confidence, ...): per response, the spread of the methods' probabilities (max - min; 0 with one
# method) and their uncertainty 1 - |2·mean - 1| (1 at p = 0.5, 0 at 0 or 1); the prompt's score is the largest
# of either over its responses, in [0, 1].
INFORMATIVE = """
  SELECT prompt_id, max(greatest(hi - lo, 1 - abs(2 * mean - 1))) AS score FROM (
    SELECT prompt_id, response_id, max(prob) AS hi, min(prob) AS lo, avg(prob) AS mean FROM judgment
    WHERE study_id = $study AND judge_kind = 'model' AND superseded_at IS NULL AND status = 'ok'
      AND prob IS NOT NULL AND response_id IS NOT NULL
    GROUP BY prompt_id, response_id) GROUP BY prompt_id
"""


def order_sql(order: str, alias: str = "r") -> tuple[str, str]:
    """(a join for the ORDER BY, the sort key placed after the busy count) for a queue order."""
    if order == "random":
        return "", f"md5(concat($study::VARCHAR, ':', {alias}.id::VARCHAR)),"
    if order == "informative":
        return f"LEFT JOIN ({INFORMATIVE}) inf ON inf.prompt_id = {alias}.id", "coalesce(inf.score, 0) DESC,"
    return "", ""


def record(cur: duckdb.DuckDBPyConnection, study_id: int, prompt_id: int, annotator: str, policy: str,
           probability: float | None) -> None:
    """Record a fresh serving (the caller holds the write lock)."""
    cur.execute("""INSERT INTO serving (study_id, prompt_id, annotator, policy, probability) VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT (prompt_id, annotator) DO UPDATE SET policy = excluded.policy,
                   probability = excluded.probability, served_at = now()""",
                [study_id, prompt_id, annotator, policy, probability])


def tier_size(cur: duckdb.DuckDBPyConnection, ready_sql: str, labelled_sql: str, params: dict[str, Any],
              busy: int) -> int:
    """How many open prompts, not labelled or skipped by the person, have `busy` other people on them: what a
    random pick was drawn from."""
    return cur.execute(
        f"""WITH ready AS ({ready_sql}), labelled AS ({labelled_sql}),
            busy AS (SELECT prompt_id, judge AS who FROM labelled
                     UNION
                     SELECT prompt_id, annotator FROM assignment
                     WHERE study_id = $study AND assigned_at > now() - to_minutes($lease)),
            counts AS (SELECT prompt_id, count(*) AS c FROM busy WHERE who <> $who GROUP BY prompt_id)
            SELECT count(*) FROM ready r LEFT JOIN counts c ON c.prompt_id = r.id
            WHERE coalesce(c.c, 0) = $busy
              AND r.id NOT IN (SELECT prompt_id FROM labelled WHERE judge = $who)
              AND r.id NOT IN (SELECT prompt_id FROM skip WHERE annotator = $who AND study_id = $study)""",
        {k: params[k] for k in ("study", "runs", "need", "imported", "lease", "who")} | {"busy": busy, "only": None}
    ).fetchone()[0]


class Served(NamedTuple):
    prompt_id: int
    annotator: str
    policy: str  # position | random | informative | disagreement | gold | unserved
    probability: float | None


def labelled_servings(db: Database, study_id: int) -> list[Served]:
    """Per (prompt, person) with a current human label in the study: how the item was served (UNSERVED when
    it never was: an imported label, one added from the Live tab, an item opened by link), and the serving
    probability where the policy defines one. Only "random" rows are a uniform sample of the study."""
    return [Served(*r) for r in db.fetchall(
        """SELECT l.prompt_id, l.judge, coalesce(s.policy, ?), s.probability FROM
             (SELECT DISTINCT prompt_id, judge FROM judgment WHERE study_id = ? AND judge_kind = 'human'
              AND superseded_at IS NULL) l
           LEFT JOIN serving s ON s.prompt_id = l.prompt_id AND s.annotator = l.judge
           ORDER BY l.prompt_id, l.judge""", [UNSERVED, study_id])]
