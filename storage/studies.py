"""Study and generation-run rows."""

from __future__ import annotations

import json

from storage.db import Database
from storage.models import GenerationRun, SamplingSettings, Study, StudyConfig


class NotFoundError(LookupError):
    pass


def _study(row: dict) -> Study:
    return Study(**{**row, "config": StudyConfig(**json.loads(row["config"] or "{}"))})


def create_study(db: Database, name: str, *, description: str = "", guidelines: str = "",
                 config: StudyConfig | None = None) -> Study:
    name = name.strip()
    if not name:
        raise ValueError("study name must not be empty")
    with db.write() as cur:
        if cur.execute("SELECT 1 FROM study WHERE name = ?", [name]).fetchall():
            raise ValueError(f"study {name!r} already exists")
        cur.execute(
            "INSERT INTO study (name, description, guidelines, config) VALUES (?, ?, ?, ?)",
            [name, description, guidelines, (config or StudyConfig()).model_dump_json()],
        )
    return get_study(db, name)


def get_study(db: Database, name_or_id: str | int) -> Study:
    col = "id" if isinstance(name_or_id, int) else "name"
    row = db.fetchrow(f"SELECT * FROM study WHERE {col} = ?", [name_or_id])
    if row is None:
        raise NotFoundError(f"no study {name_or_id!r} (see `critlab studies`)")
    return _study(row)


def get_or_create_study(db: Database, name: str) -> Study:
    try:
        return get_study(db, name)
    except NotFoundError:
        return create_study(db, name)


def list_studies(db: Database) -> list[Study]:
    return [_study(r) for r in db.fetchdicts("SELECT * FROM study ORDER BY id")]


def update_study(db: Database, study_id: int, *, description: str | None = None,
                 guidelines: str | None = None, config: StudyConfig | None = None) -> Study:
    sets, params = [], []
    for col, val in (("description", description), ("guidelines", guidelines)):
        if val is not None:
            sets.append(f"{col} = ?")
            params.append(val)
    if config is not None:
        sets.append("config = ?")
        params.append(config.model_dump_json())
    if sets:
        with db.write() as cur:
            cur.execute(f"UPDATE study SET {', '.join(sets)} WHERE id = ?", [*params, study_id])
    return get_study(db, study_id)


# -- generation runs ---------------------------------------------------------------------------
def find_run(db: Database, study_id: int, engine: str, model_id: str, s: SamplingSettings,
             seed_base: int | None) -> GenerationRun | None:
    """The run with exactly these settings (a seed of None matches any seed base)."""
    rows = db.fetchdicts(
        """SELECT * FROM generation_run WHERE study_id = ? AND engine = ? AND model_id = ? AND n = ?
           AND temperature = ? AND top_p = ? AND max_tokens = ? AND top_logprobs = ?
           AND (? IS NULL OR seed_base = ?) AND kind = 'batch' ORDER BY id DESC""",
        [study_id, engine, model_id, s.n, s.temperature, s.top_p, s.max_tokens, s.top_logprobs,
         seed_base, seed_base],
    )
    return GenerationRun(**rows[0]) if rows else None


def latest_run(db: Database, study_id: int) -> GenerationRun | None:
    row = db.fetchrow("SELECT * FROM generation_run WHERE study_id = ? AND kind = 'batch' ORDER BY id DESC LIMIT 1",
                      [study_id])
    return GenerationRun(**row) if row else None


def list_runs(db: Database, study_id: int, *, include_live: bool = False) -> list[GenerationRun]:
    """The study's generation runs, oldest first; Live-tab runs only with `include_live`."""
    return [GenerationRun(**r) for r in db.fetchdicts(
        "SELECT * FROM generation_run WHERE study_id = ? AND (? OR kind = 'batch') ORDER BY id",
        [study_id, include_live])]


def create_run(db: Database, study_id: int, engine: str, model_id: str, s: SamplingSettings,
               seed_base: int, *, seeds_honoured: bool | None, logprob_mode: str | None,
               kind: str = "batch") -> GenerationRun:
    with db.write() as cur:
        rid = cur.execute(
            """INSERT INTO generation_run (study_id, engine, model_id, n, temperature, top_p, max_tokens,
               seed_base, top_logprobs, seeds_honoured, logprob_mode, kind)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id""",
            [study_id, engine, model_id, s.n, s.temperature, s.top_p, s.max_tokens, seed_base,
             s.top_logprobs, seeds_honoured, logprob_mode, kind],
        ).fetchall()[0][0]
    return GenerationRun(**db.fetchrow("SELECT * FROM generation_run WHERE id = ?", [rid]))
