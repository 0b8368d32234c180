"""Each annotator's labelling queue: what comes next, what was done, skips, overlap routing."""

from __future__ import annotations

from storage.db import Database

# A prompt is ready to label when the labelling run has all n samples for it (or, in a study with no
# run, when it has imported responses).
_READY = """
  SELECT p.id, p.position FROM prompt p WHERE p.study_id = $study AND (
    CASE WHEN $run IS NULL
      THEN (SELECT count(*) FROM response r WHERE r.prompt_id = p.id AND r.run_id IS NULL
            AND r.origin IN ('imported', 'reference')) >= 1
      ELSE (SELECT count(*) FROM response r WHERE r.prompt_id = p.id AND r.run_id = $run
            AND r.origin = 'sampled') >= $n
    END)
"""
# Who has labelled what: any current human judgment made in the Label tab or imported.
_LABELLED = """
  SELECT DISTINCT prompt_id, judge FROM judgment WHERE study_id = $study AND judge_kind = 'human'
  AND superseded_at IS NULL AND method NOT IN ('criterion_valid')
"""
# How many annotators a prompt needs: the study's overlap, one more per re-queue, and the extra
# annotators of a disagreement-flagged prompt. NULL overlap: no limit.
_NEEDED = """
  CASE WHEN $overlap IS NULL THEN NULL ELSE $overlap
    + (SELECT count(*) FROM requeue q WHERE q.prompt_id = r.id)
    + CASE WHEN coalesce((SELECT f.disagreement FROM prompt_flag f WHERE f.prompt_id = r.id), false)
           THEN $extra ELSE 0 END
  END
"""


LEASE_MINUTES = 30  # how long a served, unlabelled item stays reserved for its annotator


def next_prompt(db: Database, study_id: int, annotator: str, run_id: int | None, n: int,
                exclude: int | None = None, *, overlap: int | None = None, extra: int = 0,
                reserve: bool = True) -> int | None:
    """Serve the annotator's next prompt and reserve it for them (`reserve=False`: only look).

    Their own open reservation comes first (so a reload or a restart resumes where they were);
    otherwise a prompt they have not labelled that still needs annotators, counting others' live
    reservations (so people working at the same time get different items), not skipped before
    skipped (oldest skip first), then the least-labelled, then file order. Selection and
    reservation happen in one serialised transaction, so two requests cannot take the last slot.
    """
    params = {"study": study_id, "run": run_id, "n": n, "who": annotator, "exclude": exclude, "overlap": overlap,
              "extra": extra, "lease": LEASE_MINUTES}
    with db.write() as cur:
        rows = cur.execute(
            f"""WITH ready AS ({_READY}), labelled AS ({_LABELLED})
                SELECT a.prompt_id FROM assignment a JOIN ready r ON r.id = a.prompt_id
                WHERE a.study_id = $study AND a.annotator = $who
                  AND a.prompt_id NOT IN (SELECT prompt_id FROM labelled WHERE judge = $who)
                  AND NOT EXISTS (SELECT 1 FROM skip s WHERE s.annotator = $who AND s.prompt_id = a.prompt_id
                                  AND s.created_at >= a.assigned_at)
                  AND ($exclude IS NULL OR a.prompt_id <> $exclude)
                ORDER BY a.assigned_at LIMIT 1""",
            {k: params[k] for k in ("study", "run", "n", "who", "exclude")}).fetchall()
        if not rows:
            rows = cur.execute(
                f"""WITH ready AS ({_READY}), labelled AS ({_LABELLED}),
                    busy AS (
                      SELECT prompt_id, judge AS who FROM labelled
                      UNION
                      SELECT prompt_id, annotator FROM assignment
                      WHERE study_id = $study AND assigned_at > now() - to_minutes($lease)),
                    counts AS (SELECT prompt_id, count(*) AS c FROM busy WHERE who <> $who GROUP BY prompt_id),
                    sk AS (SELECT prompt_id, max(created_at) AS t FROM skip
                           WHERE annotator = $who AND study_id = $study GROUP BY prompt_id)
                    SELECT r.id FROM ready r LEFT JOIN sk ON sk.prompt_id = r.id
                         LEFT JOIN counts c ON c.prompt_id = r.id
                    WHERE r.id NOT IN (SELECT prompt_id FROM labelled WHERE judge = $who)
                      AND ($exclude IS NULL OR r.id <> $exclude)
                      AND ({_NEEDED} IS NULL OR coalesce(c.c, 0) < {_NEEDED})
                    ORDER BY sk.t NULLS FIRST, coalesce(c.c, 0), r.position
                    LIMIT 1""", params).fetchall()
        if not rows:
            return None
        if not reserve:
            return rows[0][0]
        cur.execute("""INSERT INTO assignment (study_id, prompt_id, annotator) VALUES (?, ?, ?)
                       ON CONFLICT (prompt_id, annotator) DO UPDATE SET assigned_at = now()""",
                    [study_id, rows[0][0], annotator])
        return rows[0][0]


def progress(db: Database, study_id: int, annotator: str) -> tuple[int, int]:
    """(prompts this annotator has labelled, prompts in the study)."""
    done = db.fetchval(
        f"SELECT count(*) FROM ({_LABELLED}) WHERE judge = $who", {"study": study_id, "who": annotator})
    total = db.fetchval("SELECT count(*) FROM prompt WHERE study_id = ?", [study_id])
    return done, total


def annotator_progress(db: Database, study_id: int) -> list[tuple[str, int, int]]:
    """Per annotator: (name, prompts labelled, prompts skipped and not labelled)."""
    return [tuple(r) for r in db.fetchall(
        f"""WITH labelled AS ({_LABELLED})
            SELECT a.name,
                   (SELECT count(*) FROM labelled l WHERE l.judge = a.name),
                   (SELECT count(DISTINCT s.prompt_id) FROM skip s WHERE s.study_id = $study AND s.annotator = a.name
                      AND s.prompt_id NOT IN (SELECT prompt_id FROM labelled l WHERE l.judge = a.name))
            FROM annotator a ORDER BY a.id""", {"study": study_id})]


def ready_count(db: Database, study_id: int, run_id: int | None, n: int) -> int:
    return db.fetchval(f"SELECT count(*) FROM ({_READY})", {"study": study_id, "run": run_id, "n": n})


def labelled_history(db: Database, study_id: int, annotator: str) -> list[int]:
    """Prompts this annotator labelled, in the order of their latest submit (oldest first)."""
    return [r[0] for r in db.fetchall(
        """SELECT prompt_id FROM judgment WHERE study_id = ? AND judge = ? AND judge_kind = 'human'
           AND superseded_at IS NULL GROUP BY prompt_id ORDER BY min(created_at), min(id)""", [study_id, annotator])]


def record_skip(db: Database, study_id: int, prompt_id: int, annotator: str) -> None:
    with db.write() as cur:
        cur.execute("INSERT INTO skip (annotator, study_id, prompt_id) VALUES (?, ?, ?)",
                    [annotator, study_id, prompt_id])
        # A skipped item is no longer reserved: someone else may take it now.
        cur.execute("DELETE FROM assignment WHERE prompt_id = ? AND annotator = ?", [prompt_id, annotator])


def requeue(db: Database, prompt_id: int, created_by: str | None = None) -> None:
    """Ask for one more annotator on this prompt (on top of the study's overlap)."""
    with db.write() as cur:
        cur.execute("INSERT INTO requeue (prompt_id, created_by) VALUES (?, ?)", [prompt_id, created_by])


def update_disagreement(db: Database, study_id: int, prompt_id: int) -> bool:
    """Flag the prompt when the humans' blind best picks split, or when a model selector picked a
    different response than the first human did. Returns the flag."""
    with db.write() as cur:
        flag = cur.execute(
            """WITH human AS (
                 SELECT judge, response_id, created_at FROM judgment WHERE study_id = ? AND prompt_id = ?
                 AND judge_kind = 'human' AND method = 'best_of_n' AND stage = 'blind' AND superseded_at IS NULL),
               first_pick AS (SELECT response_id FROM human ORDER BY created_at LIMIT 1),
               model AS (
                 SELECT response_id FROM judgment WHERE study_id = ? AND prompt_id = ? AND judge_kind = 'model'
                 AND method LIKE 'select\\_%' ESCAPE '\\' AND status = 'ok' AND superseded_at IS NULL)
               SELECT (SELECT count(DISTINCT response_id) FROM human) > 1
                   OR EXISTS (SELECT 1 FROM model m, first_pick f WHERE m.response_id <> f.response_id)""",
            [study_id, prompt_id, study_id, prompt_id]).fetchall()[0][0]
        cur.execute("""INSERT INTO prompt_flag (prompt_id, disagreement) VALUES (?, ?)
                       ON CONFLICT (prompt_id) DO UPDATE SET disagreement = excluded.disagreement, updated_at = now()""",
                    [prompt_id, bool(flag)])
    return bool(flag)
