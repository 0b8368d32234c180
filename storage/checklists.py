"""Checklists: ordered YES/NO questions per prompt, written by a model method or a person."""

from __future__ import annotations

from pydantic import BaseModel

from storage.db import Database


class ChecklistItem(BaseModel):
    id: int
    position: int
    question: str


class Checklist(BaseModel):
    id: int
    prompt_id: int
    author: str
    method: str | None = None
    version: str | None = None
    items: list[ChecklistItem]


def create_checklist(db: Database, prompt_id: int, author: str, questions: list[str], *,
                     method: str | None = None, version: str | None = None) -> Checklist:
    with db.write() as cur:
        cid = cur.execute("INSERT INTO checklist (prompt_id, author, method, version) VALUES (?, ?, ?, ?) RETURNING id",
                          [prompt_id, author, method, version]).fetchall()[0][0]
        for pos, q in enumerate(questions):
            cur.execute("INSERT INTO checklist_item (checklist_id, position, question) VALUES (?, ?, ?)",
                        [cid, pos, q])
    found = get_checklist(db, prompt_id, author=author, method=method, version=version)
    assert found is not None
    return found


def get_checklist(db: Database, prompt_id: int, *, author: str | None = None, method: str | None = None,
                  version: str | None = None) -> Checklist | None:
    """The newest checklist of the prompt matching the filters."""
    where, params = ["prompt_id = ?"], [prompt_id]
    for col, val in (("author", author), ("method", method), ("version", version)):
        if val is not None:
            where.append(f"{col} = ?")
            params.append(val)
    row = db.fetchrow(f"SELECT * FROM checklist WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT 1", params)
    if row is None:
        return None
    items = [ChecklistItem(**r) for r in db.fetchdicts(
        "SELECT id, position, question FROM checklist_item WHERE checklist_id = ? ORDER BY position", [row["id"]])]
    return Checklist(**row, items=items)


def item_counts(db: Database, study_id: int, *, author: str, method: str, version: str) -> dict[int, int]:
    """Per prompt of the study: the number of items of its newest checklist by this author, method and
    version (prompts without one are left out)."""
    return {pid: n for pid, n in db.fetchall(
        """SELECT c.prompt_id, (SELECT count(*) FROM checklist_item i WHERE i.checklist_id = c.id)
           FROM checklist c JOIN prompt p ON p.id = c.prompt_id
           WHERE p.study_id = ? AND c.author = ? AND c.method = ? AND c.version = ?
             AND c.id = (SELECT max(c2.id) FROM checklist c2 WHERE c2.prompt_id = c.prompt_id
                         AND c2.author = c.author AND c2.method = c.method AND c2.version = c.version)""",
        [study_id, author, method, version])}


def item_questions(db: Database, item_ids: list[int]) -> dict[int, str]:
    """The questions of these checklist items, by id, in one query (ids with no item are left out)."""
    if not item_ids:
        return {}
    return dict(db.fetchall("SELECT id, question FROM checklist_item WHERE list_contains(?, id)", [item_ids]))
