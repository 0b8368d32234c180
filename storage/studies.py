"""Study and generation-run rows."""

from __future__ import annotations

import json
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from storage import settings_history
from storage.db import Database
from storage.models import GenerationRun, SamplingSettings, Study, StudyConfig


class NotFoundError(LookupError):
    pass


# Study and run rows, cached per database: the label loop reads its study and run twice per label (about 1 ms
# each even on one-row tables), and they change only here, through create_study, update_study and create_run,
# which clear the cache once their transaction commits. A read that raced a write cannot store what it saw:
# each entry is stored only if no write committed since the read began (the generation below). Rows, not
# objects, are kept, so a caller that changes the Study it got changes nobody else's.
class _RowCache:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.generation = 0
        self.rows: dict[tuple, Any] = {}


_by_path: dict[str, _RowCache] = {}  # a file opened twice in one process is one DuckDB database: one cache
_by_db: weakref.WeakKeyDictionary[Database, _RowCache] = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()


def _cache(db: Database) -> _RowCache:
    cache = _by_db.get(db)
    if cache is None:
        with _caches_lock:  # realpath once per Database: it stats every directory of the path
            cache = _by_db.get(db)
            if cache is None:
                cache = _by_db[db] = (_RowCache() if db.path == ":memory:"
                                      else _by_path.setdefault(os.path.realpath(db.path), _RowCache()))
    return cache


def _cached(db: Database, key: tuple, load: Callable[[], Any]) -> Any:
    cache = _cache(db)
    with cache.lock:
        if key in cache.rows:
            return cache.rows[key]
        generation = cache.generation
    value = load()
    # Inside a write() this thread may see its own uncommitted rows: never share those.
    if not db.in_write():
        with cache.lock:
            if cache.generation == generation:
                cache.rows[key] = value
    return value


def _changed(db: Database) -> None:
    """Called in a write() that changes study or generation_run rows: forget them once it commits."""
    def clear() -> None:
        cache = _cache(db)
        with cache.lock:
            cache.generation += 1
            cache.rows.clear()
    # Also now: a read between this write and its commit must not store a row either.
    clear()
    db.after_commit(clear)


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
        _changed(db)
    return get_study(db, name)


def get_study(db: Database, name_or_id: str | int) -> Study:
    col = "id" if isinstance(name_or_id, int) else "name"
    row = _cached(db, ("study", col, name_or_id),
                  lambda: db.fetchrow(f"SELECT * FROM study WHERE {col} = ?", [name_or_id]))
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


class StudyCounts(BaseModel):
    name: str
    prompts: int
    runs: int
    responses: int
    labelled_prompts: int  # prompts with at least one current human judgment


def study_counts(db: Database) -> list[StudyCounts]:
    """Every study with its sizes, in creation order (the Studies tab's table)."""
    cols = list(StudyCounts.model_fields)
    return [StudyCounts(**dict(zip(cols, r))) for r in db.fetchall(
        """SELECT s.name,
                  (SELECT count(*) FROM prompt p WHERE p.study_id = s.id),
                  (SELECT count(*) FROM generation_run g WHERE g.study_id = s.id),
                  (SELECT count(*) FROM response r JOIN prompt p ON p.id = r.prompt_id WHERE p.study_id = s.id),
                  (SELECT count(DISTINCT prompt_id) FROM judgment j WHERE j.study_id = s.id
                     AND j.judge_kind = 'human' AND j.superseded_at IS NULL)
           FROM study s ORDER BY s.id""")]


def update_study(db: Database, study_id: int, *, description: str | None = None,
                 guidelines: str | None = None, config: StudyConfig | None = None,
                 changed_by: str | None = None, confirmed: bool = False) -> Study:
    """Change a study's description, guidelines or settings; every changed setting is recorded in the
    settings history (storage.settings_history) in the same transaction, with who and when."""
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
            row = db.fetchrow("SELECT * FROM study WHERE id = ?", [study_id])
            if row is None:
                raise NotFoundError(f"no study with id {study_id}")
            before = _study(row)
            cur.execute(f"UPDATE study SET {', '.join(sets)} WHERE id = ?", [*params, study_id])
            after = _study(db.fetchrow("SELECT * FROM study WHERE id = ?", [study_id]))
            settings_history.record(cur, study_id, settings_history.diff(before, after), changed_by, confirmed)
            _changed(db)
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


def get_run(db: Database, run_id: int) -> GenerationRun:
    row = db.fetchrow("SELECT * FROM generation_run WHERE id = ?", [run_id])
    if row is None:
        raise NotFoundError(f"no generation run {run_id}")
    return GenerationRun(**row)


def latest_run(db: Database, study_id: int) -> GenerationRun | None:
    runs = list_runs(db, study_id)
    return runs[-1] if runs else None


def list_runs(db: Database, study_id: int, *, include_live: bool = False) -> list[GenerationRun]:
    """The study's generation runs, oldest first; Live-tab runs only with `include_live`."""
    # Sorted here: an ORDER BY costs DuckDB about half a millisecond even on a handful of rows.
    rows = _cached(db, ("runs", study_id, include_live), lambda: sorted(db.fetchdicts(
        "SELECT * FROM generation_run WHERE study_id = ? AND (? OR kind = 'batch')", [study_id, include_live]),
        key=lambda r: r["id"]))
    return [GenerationRun(**r) for r in rows]


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
        _changed(db)
    return get_run(db, rid)
