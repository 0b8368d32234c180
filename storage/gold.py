"""Gold items: prompts with a known answer an admin set, and each person's accuracy on them.

A gold answer is a best pick (HumanMethod.BEST: the response that is best) or a verdict on one response
(HumanMethod.CORRECT: "correct" or "incorrect"). A person's answer is their current label of that method and
target, the blind one where they have both stages (what they chose before any model view).

Serving (storage.label_queue.next_prompt, StudyConfig.gold_rate > 0): gold items leave the routine queue and
come unannounced, at a fresh pick with probability gold_rate (`draws_gold`), the person's next one by
`next_gold`; once nothing else is left, the rest in turn. Each is recorded in `serving` as policy "gold".

The gate (StudyConfig.gold_min_accuracy, `gate`): a person who has answered at least MIN_GOLD_ANSWERS gold items
and got a share below the minimum right is gated. It is applied when labels are read, never by deleting them:
their labels are left out of exports (storage.export) and of the agreement report (its human rows, hence every
consensus); lowering or clearing the minimum brings them back. Gold items themselves are never data: they are
left out of every export and of the report's figures, whatever the gold rate (the rate only decides how they
are served).
"""

from __future__ import annotations

import hashlib
import random
from typing import Any, NamedTuple

import duckdb

from storage.db import Database
from storage.models import HumanMethod

GOLD_METHODS = (HumanMethod.BEST, HumanMethod.CORRECT)
VERDICTS = ("correct", "incorrect")
# Fewer gold answers than this never gate anyone: one slip on the first gold item would otherwise gate a person
# at accuracy 0 (with 5 answers, one wrong is 80%).
MIN_GOLD_ANSWERS = 5


class GoldAnswer(NamedTuple):
    prompt_id: int
    method: str
    response_id: int
    answer: str | None  # None for a best pick; "correct" | "incorrect" for a verdict


class GoldAccuracy(NamedTuple):
    annotator: str
    answered: int  # gold answers the person has a label for
    right: int
    accuracy: float


def add(db: Database, study_id: int, prompt_id: int, method: str, response_id: int, answer: str | None,
        created_by: str | None = None) -> GoldAnswer:
    """Set (or replace) a gold answer; ValueError naming what is wrong, with nothing stored, otherwise."""
    if method not in GOLD_METHODS:
        raise ValueError(f"a gold answer is a {HumanMethod.BEST.value} pick or a {HumanMethod.CORRECT.value} "
                         f"verdict, not {method!r}")
    if method == HumanMethod.CORRECT and answer not in VERDICTS:
        raise ValueError(f"a {HumanMethod.CORRECT.value} gold answer is 'correct' or 'incorrect', not {answer!r}")
    if method == HumanMethod.BEST and answer is not None:
        raise ValueError(f"a {HumanMethod.BEST.value} gold answer is the best response's id, with no answer text")
    with db.write() as cur:
        where = cur.execute("SELECT p.study_id FROM response r JOIN prompt p ON p.id = r.prompt_id "
                            "WHERE r.id = ? AND r.prompt_id = ?", [response_id, prompt_id]).fetchall()
        if not where or where[0][0] != study_id:
            raise ValueError(f"response {response_id} is not a response of prompt {prompt_id} of this study")
        if method == HumanMethod.BEST:  # one best pick per prompt
            cur.execute("DELETE FROM gold WHERE prompt_id = ? AND method = ?", [prompt_id, str(method)])
        cur.execute("""INSERT INTO gold (study_id, prompt_id, method, response_id, answer, created_by)
                       VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (prompt_id, method, response_id)
                       DO UPDATE SET answer = excluded.answer, created_by = excluded.created_by,
                       created_at = now()""", [study_id, prompt_id, str(method), response_id, answer, created_by])
    return GoldAnswer(prompt_id, str(method), response_id, answer)


def list_gold(db: Database, study_id: int) -> list[GoldAnswer]:
    return [GoldAnswer(*r) for r in db.fetchall(
        "SELECT prompt_id, method, response_id, answer FROM gold WHERE study_id = ? ORDER BY prompt_id, method, "
        "response_id", [study_id])]


def accuracy(db: Database, study_id: int) -> list[GoldAccuracy]:
    """Per person with a label on a gold item: how many gold answers they labelled and got right."""
    rows = db.fetchall(
        """WITH mine AS (
             SELECT judge, prompt_id, method, response_id, label,
                    row_number() OVER (PARTITION BY judge, prompt_id, method,
                                       CASE WHEN method = $best THEN -1 ELSE response_id END
                                       ORDER BY stage = 'blind' DESC, created_at DESC) AS k
             FROM judgment WHERE study_id = $study AND judge_kind = 'human' AND superseded_at IS NULL
               AND method IN ($best, $correct))
           SELECT m.judge, count(*),
                  count(*) FILTER (WHERE (g.method = $best AND m.response_id = g.response_id)
                                      OR (g.method = $correct AND m.label = g.answer))
           FROM gold g JOIN mine m ON m.k = 1 AND m.prompt_id = g.prompt_id AND m.method = g.method
             AND (g.method = $best OR m.response_id = g.response_id)
           WHERE g.study_id = $study GROUP BY m.judge ORDER BY m.judge""",
        {"study": study_id, "best": str(HumanMethod.BEST), "correct": str(HumanMethod.CORRECT)})
    return [GoldAccuracy(who, n, right, right / n) for who, n, right in rows]


def is_gated(a: GoldAccuracy, min_accuracy: float | None) -> bool:
    """Whether `a` is below the gate: at least MIN_GOLD_ANSWERS gold answers and a share right below
    `min_accuracy` (None: no gate).

    >>> is_gated(GoldAccuracy("ann", 5, 3, 0.6), 0.8), is_gated(GoldAccuracy("ann", 4, 0, 0.0), 0.8)
    (True, False)
    """
    return min_accuracy is not None and a.answered >= MIN_GOLD_ANSWERS and a.accuracy < min_accuracy


class Gate(NamedTuple):
    """What the gold gate leaves out of a study's exports and report: the gated people (with their accuracy)
    and the gold items."""

    min_accuracy: float | None
    people: tuple[GoldAccuracy, ...]
    gold_prompts: tuple[int, ...]

    @property
    def names(self) -> list[str]:
        return [a.annotator for a in self.people]


def gate(db: Database, study_id: int, min_accuracy: float | None) -> Gate:
    """The study's gate at `min_accuracy` (StudyConfig.gold_min_accuracy)."""
    people = tuple(a for a in accuracy(db, study_id) if is_gated(a, min_accuracy))
    return Gate(min_accuracy, people, tuple(gold_prompt_ids(db, study_id)))


def gated(db: Database, study_id: int, min_accuracy: float | None) -> set[str]:
    """The people the gate at `min_accuracy` leaves out (`is_gated`)."""
    return set(gate(db, study_id, min_accuracy).names)


def gold_prompt_ids(db: Database, study_id: int) -> list[int]:
    return [r[0] for r in db.fetchall("SELECT DISTINCT prompt_id FROM gold WHERE study_id = ? ORDER BY prompt_id",
                                      [study_id])]


def draws_gold(db: Database, study_id: int, who: str, rate: float) -> bool:
    """Whether this fresh pick of `who` is a gold item: a uniform draw below `rate`, seeded by (study, person,
    how many fresh servings they have had), so a reload asks the same question and the next pick a new one."""
    if rate <= 0:
        return False
    n = db.fetchval("SELECT count(*) FROM serving WHERE study_id = ? AND annotator = ?", [study_id, who])
    seed = int.from_bytes(hashlib.sha256(f"gold:{study_id}:{who}:{n}".encode()).digest()[:8], "big")
    return random.Random(seed).random() < rate


def next_gold(cur: duckdb.DuckDBPyConnection, ready_sql: str, labelled_sql: str, params: dict[str, Any]) -> int | None:
    """The person's next gold item: ready, not labelled by them, not `exclude`; the ones they never skipped
    first in file order, then the skipped ones, the oldest skip first."""
    rows = cur.execute(
        f"""WITH ready AS ({ready_sql}), labelled AS ({labelled_sql}),
            sk AS (SELECT prompt_id, max(created_at) AS t FROM skip
                   WHERE annotator = $who AND study_id = $study GROUP BY prompt_id)
            SELECT r.id FROM ready r LEFT JOIN sk ON sk.prompt_id = r.id
            WHERE r.id IN (SELECT prompt_id FROM gold WHERE study_id = $study)
              AND r.id NOT IN (SELECT prompt_id FROM labelled WHERE judge = $who)
              AND ($exclude IS NULL OR r.id <> $exclude)
            ORDER BY sk.t NULLS FIRST, r.position LIMIT 1""",
        {k: params[k] for k in ("study", "runs", "need", "imported", "who", "exclude")} | {"only": None}).fetchall()
    return rows[0][0] if rows else None
