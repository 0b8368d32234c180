"""What each model id stands for, and the SHA-256 of GGUF files hashed before (by path, size and mtime)."""

from __future__ import annotations

import json

from storage.db import Database
from storage.models import ModelIdentity

_COLS = ("model_id", "engine", "name", "quantisation", "size_bytes", "sha256", "path", "context_length",
         "chat_template", "special_tokens", "bundled")
_SELECT = ("SELECT model_id, engine, name, quantisation, size_bytes, sha256, path, context_length, chat_template, "
           "special_tokens, bundled FROM model")


def record_model(db: Database, m: ModelIdentity) -> None:
    """Store (or refresh) a model's identity. A known id keeps its first sighting; what the engine reports
    now (path, context length, template) replaces what was there, except that a template is never erased."""
    values = [json.dumps(m.special_tokens) if c == "special_tokens" else getattr(m, c) for c in _COLS]
    with db.write() as cur:
        cur.execute(
            """INSERT INTO model (model_id, engine, name, quantisation, size_bytes, sha256, path, context_length,
                                  chat_template, special_tokens, bundled) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (model_id) DO UPDATE SET engine = excluded.engine, name = excluded.name,
                   quantisation = excluded.quantisation, size_bytes = excluded.size_bytes, sha256 = excluded.sha256,
                   path = excluded.path, context_length = excluded.context_length, bundled = excluded.bundled,
                   chat_template = coalesce(excluded.chat_template, model.chat_template),
                   special_tokens = CASE WHEN excluded.chat_template IS NULL THEN model.special_tokens
                                         ELSE excluded.special_tokens END,
                   last_seen_at = now()""",
            values)


def _identity(row: dict) -> ModelIdentity:
    return ModelIdentity(**{**row, "special_tokens": json.loads(row["special_tokens"] or "{}")})


def get_model(db: Database, model_id: str) -> ModelIdentity | None:
    row = db.fetchrow(_SELECT + " WHERE model_id = ?", [model_id])
    return _identity(row) if row else None


def list_models(db: Database) -> list[ModelIdentity]:
    rows = db.fetchdicts(_SELECT + " ORDER BY first_seen_at, model_id")
    return [_identity(r) for r in rows]


def cached_sha256(db: Database, path: str, size_bytes: int, mtime_ns: int) -> str | None:
    """The SHA-256 recorded for this file, if its size and mtime are still those it had when hashed."""
    row = db.fetchrow("SELECT sha256 FROM model_file_hash WHERE path = ? AND size_bytes = ? AND mtime_ns = ?",
                      [path, size_bytes, mtime_ns])
    return row["sha256"] if row else None


def remember_sha256(db: Database, path: str, size_bytes: int, mtime_ns: int, sha256: str) -> None:
    with db.write() as cur:
        cur.execute(
            """INSERT INTO model_file_hash (path, size_bytes, mtime_ns, sha256) VALUES (?, ?, ?, ?)
               ON CONFLICT (path) DO UPDATE SET size_bytes = excluded.size_bytes, mtime_ns = excluded.mtime_ns,
                   sha256 = excluded.sha256, hashed_at = now()""",
            [path, size_bytes, mtime_ns, sha256])


def usage(db: Database) -> list[dict]:
    """Per study, each generation run's model and each model judge with the methods it ran, joined to what
    the registry knows of the model (nothing for an imported judge or a run stored before m023)."""
    return db.fetchdicts(
        """WITH used AS (
               SELECT g.study_id, 'run #' || g.id || ' (' || g.kind || ', ' || g.engine || ')' AS role,
                      g.model_id, 0 AS part, g.id AS ord
               FROM generation_run g
               UNION ALL
               SELECT j.study_id, 'judge of ' || count(DISTINCT j.method) || ' method(s)', j.judge, 1, 0
               FROM judgment j WHERE j.judge_kind = 'model' AND j.superseded_at IS NULL
               GROUP BY j.study_id, j.judge)
           SELECT s.name AS study, u.role, u.model_id, m.quantisation, m.size_bytes, m.sha256
           FROM used u JOIN study s ON s.id = u.study_id LEFT JOIN model m ON m.model_id = u.model_id
           ORDER BY s.name, u.part, u.ord, u.model_id""")
