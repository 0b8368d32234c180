"""Each annotator's labelling queue: what comes next, what was done, skips."""

from __future__ import annotations

from storage.db import Database

# A prompt is ready to label when the labelling run has all n samples for it (or, in a study with no
# run, when it has imported responses).
_READY = """
  SELECT p.id, p.position FROM prompt p WHERE p.study_id = $study AND (
    CASE WHEN $run IS NULL
      THEN (SELECT count(*) FROM response r WHERE r.prompt_id = p.id AND r.run_id IS NULL
            AND r.origin IN ('imported', 'reference')) >= 1
      ELSE (SELECT count(*) FROM response r WHERE r.prompt_id = p.id AND r.run_id = $run) >= $n
    END)
"""
_LABELLED = """
  SELECT DISTINCT prompt_id, judge FROM judgment WHERE study_id = $study AND judge_kind = 'human'
  AND stage = 'blind' AND superseded_at IS NULL
"""


def next_prompt(db: Database, study_id: int, annotator: str, run_id: int | None, n: int,
                exclude: int | None = None) -> int | None:
    """The next prompt for this annotator: unlabelled by them, skipped ones last (oldest skip first),
    then the least-labelled by others, then file order."""
    rows = db.fetchall(
        f"""WITH ready AS ({_READY}), labelled AS ({_LABELLED}),
            sk AS (SELECT prompt_id, max(created_at) AS t FROM skip
                   WHERE annotator = $who AND study_id = $study GROUP BY prompt_id)
            SELECT r.id FROM ready r LEFT JOIN sk ON sk.prompt_id = r.id
            WHERE r.id NOT IN (SELECT prompt_id FROM labelled WHERE judge = $who)
              AND ($exclude IS NULL OR r.id <> $exclude)
            ORDER BY sk.t NULLS FIRST,
                     (SELECT count(*) FROM labelled l WHERE l.prompt_id = r.id), r.position
            LIMIT 1""",
        {"study": study_id, "run": run_id, "n": n, "who": annotator, "exclude": exclude},
    )
    return rows[0][0] if rows else None


def progress(db: Database, study_id: int, annotator: str) -> tuple[int, int]:
    """(prompts this annotator has labelled, prompts in the study)."""
    done = db.fetchval(
        f"SELECT count(*) FROM ({_LABELLED}) WHERE judge = $who", {"study": study_id, "who": annotator})
    total = db.fetchval("SELECT count(*) FROM prompt WHERE study_id = ?", [study_id])
    return done, total


def ready_count(db: Database, study_id: int, run_id: int | None, n: int) -> int:
    return db.fetchval(f"SELECT count(*) FROM ({_READY})", {"study": study_id, "run": run_id, "n": n})


def labelled_history(db: Database, study_id: int, annotator: str) -> list[int]:
    """Prompts this annotator labelled, in the order of their latest submit (oldest first)."""
    return [r[0] for r in db.fetchall(
        """SELECT prompt_id FROM judgment WHERE study_id = ? AND judge = ? AND judge_kind = 'human'
           AND superseded_at IS NULL AND stage = 'blind'
           GROUP BY prompt_id ORDER BY max(created_at), max(id)""", [study_id, annotator])]


def record_skip(db: Database, study_id: int, prompt_id: int, annotator: str) -> None:
    with db.write() as cur:
        cur.execute("INSERT INTO skip (annotator, study_id, prompt_id) VALUES (?, ?, ?)",
                    [annotator, study_id, prompt_id])
