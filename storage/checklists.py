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
