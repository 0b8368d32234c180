"""Who has been shown the model's view of which prompt.

Once a person has seen the model's judgments of an item, nothing of theirs for that item is stored as
blind: the labelling service records the moment it serves the model's view, and refuses a blind label
afterwards. A revealed label (a revision, a Live label, an import) counts as having seen it too.
"""

from __future__ import annotations

from storage.db import Database


def mark_seen(db: Database, study_id: int, prompt_id: int, annotator: str) -> None:
    """Record that the model's view of the prompt was shown to the annotator (the first time counts)."""
    with db.write() as cur:
        cur.execute("""INSERT INTO reveal (study_id, prompt_id, annotator) VALUES (?, ?, ?)
                       ON CONFLICT (prompt_id, annotator) DO NOTHING""", [study_id, prompt_id, annotator])


def has_seen(db: Database, study_id: int, prompt_id: int, annotator: str) -> bool:
    """Whether the annotator was shown the model's view of the prompt or stored a revealed label for it."""
    return bool(db.fetchall(
        """SELECT 1 FROM reveal WHERE prompt_id = $p AND annotator = $who AND study_id = $study
           UNION ALL
           SELECT 1 FROM judgment WHERE prompt_id = $p AND judge = $who AND study_id = $study
             AND judge_kind = 'human' AND stage = 'revealed'
           LIMIT 1""", {"p": prompt_id, "who": annotator, "study": study_id}))
