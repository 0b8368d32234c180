"""Prompt rows."""

from __future__ import annotations

import json

import pyarrow as pa

from storage.db import Database
from storage.models import ChatMessage, Prompt, PromptIn  # noqa: F401 (ChatMessage: doctest)


def _prompt(row: dict) -> Prompt:
    return Prompt(**{**row, "messages": json.loads(row["messages"]),
                     "metadata": json.loads(row["metadata"] or "{}")})


def insert_prompts(db: Database, study_id: int, prompts: list[PromptIn]) -> int:
    """Insert all prompts in one transaction (one statement over an Arrow table); returns the count.

    Raises ValueError naming the first external id that already exists in the study.
    """
    if not prompts:
        return 0
    with db.write() as cur:
        ids = [p.external_id for p in prompts]
        clash = cur.execute(
            "SELECT external_id FROM prompt WHERE study_id = ? AND list_contains(?, external_id) LIMIT 1",
            [study_id, ids],
        ).fetchall()
        if clash:
            raise ValueError(f"prompt id {clash[0][0]!r} already exists in this study")
        start = cur.execute("SELECT coalesce(max(position), -1) + 1 FROM prompt WHERE study_id = ?",
                            [study_id]).fetchall()[0][0]
        batch = pa.table({
            "external_id": ids,
            "position": list(range(start, start + len(prompts))),
            "messages": [json.dumps([m.model_dump() for m in p.messages], ensure_ascii=False) for p in prompts],
            "reference": [p.reference for p in prompts],
            "category": [p.category for p in prompts],
            "metadata": [json.dumps(p.metadata, ensure_ascii=False, default=str) for p in prompts],
        })
        cur.register("_prompt_batch", batch)
        try:
            cur.execute(
                """INSERT INTO prompt (study_id, external_id, position, messages, reference, category, metadata)
                   SELECT ?, external_id, position, messages, reference, category, metadata FROM _prompt_batch""",
                [study_id],
            )
        finally:
            cur.unregister("_prompt_batch")
    return len(prompts)


def get_prompt(db: Database, prompt_id: int) -> Prompt:
    row = db.fetchrow("SELECT * FROM prompt WHERE id = ?", [prompt_id])
    if row is None:
        raise LookupError(f"no prompt {prompt_id}")
    return _prompt(row)


def find_prompt_id(db: Database, study_id: int, external_id: str) -> int | None:
    """The id of the study's prompt with this external id, or None."""
    return db.fetchval("SELECT id FROM prompt WHERE study_id = ? AND external_id = ?", [study_id, external_id])


def list_prompts(db: Database, study_id: int) -> list[Prompt]:
    return [_prompt(r) for r in db.fetchdicts(
        "SELECT * FROM prompt WHERE study_id = ? ORDER BY position", [study_id])]


def count_prompts(db: Database, study_id: int) -> int:
    return db.fetchval("SELECT count(*) FROM prompt WHERE study_id = ?", [study_id])


def chat(prompt: Prompt) -> list[dict]:
    """The prompt as a list of plain message dicts.

    >>> chat(Prompt(id=1, study_id=1, external_id="a", position=0,
    ...             messages=[ChatMessage(role="user", content="Hi")]))
    [{'role': 'user', 'content': 'Hi'}]
    """
    return [m.model_dump() for m in prompt.messages]
