"""What each model id stands for, and the SHA-256 of GGUF files hashed before (by path, size and mtime)."""

from __future__ import annotations

import json

from storage.db import Database
from storage.models import ModelIdentity

_COLS = ("model_id", "engine", "name", "quantisation", "size_bytes", "sha256", "path", "context_length",
         "chat_template", "special_tokens", "bundled")
_SELECT = ("SELECT model_id, engine, name, quantisation, size_bytes, sha256, path, context_length, chat_template, "
           "special_tokens, bundled, parent_model_id, trained_on_export_id FROM model")


class LineageError(ValueError):
    """A lineage that cannot be recorded (unknown parent or export, a cycle, a conflicting earlier record)."""


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


def _identity(row: dict, iteration: int = 0) -> ModelIdentity:
    return ModelIdentity(**{**row, "special_tokens": json.loads(row["special_tokens"] or "{}"),
                            "iteration": iteration})


def _parents(db: Database) -> dict[str, str | None]:
    return dict(db.fetchall("SELECT model_id, parent_model_id FROM model"))


def _ancestors(parents: dict[str, str | None], model_id: str) -> list[str]:
    """model_id's parent, grandparent ... up to the root. set_lineage keeps the graph acyclic; the `seen`
    check only stops a walk over a database edited by hand."""
    out: list[str] = []
    cur = parents.get(model_id)
    while cur is not None and cur not in out and cur != model_id:
        out.append(cur)
        cur = parents.get(cur)
    return out


def get_model(db: Database, model_id: str) -> ModelIdentity | None:
    row = db.fetchrow(_SELECT + " WHERE model_id = ?", [model_id])
    return _identity(row, len(_ancestors(_parents(db), model_id))) if row else None


def list_models(db: Database) -> list[ModelIdentity]:
    rows = db.fetchdicts(_SELECT + " ORDER BY first_seen_at, model_id")
    parents = {r["model_id"]: r["parent_model_id"] for r in rows}
    return [_identity(r, len(_ancestors(parents, r["model_id"]))) for r in rows]


def set_lineage(db: Database, model_id: str, parent_model_id: str | None,
                trained_on_export_id: int | None) -> ModelIdentity:
    """Record that `model_id` was trained from `parent_model_id` on export run `trained_on_export_id` (either
    may be None: not given). The parent must be a model this database knows, the export an export run it
    holds, and the model must not become its own ancestor. A value already recorded is kept; a different
    one is refused rather than silently rewriting a family tree others' reports rely on."""
    with db.write() as cur:  # read and write in one transaction: two links cannot race into a cycle
        row = cur.execute("SELECT parent_model_id, trained_on_export_id FROM model WHERE model_id = ?",
                          [model_id]).fetchall()
        if not row:
            raise LineageError(f"model {model_id!r} is not in this database's model registry")
        old_parent, old_export = row[0]
        if parent_model_id is not None:
            if parent_model_id == model_id:
                raise LineageError(f"model {model_id!r} cannot be its own parent (--parent-model)")
            if not cur.execute("SELECT 1 FROM model WHERE model_id = ?", [parent_model_id]).fetchall():
                raise LineageError(f"unknown parent model {parent_model_id!r} (--parent-model): give an id that "
                                   "`critlab models` lists")
            parents = dict(cur.execute("SELECT model_id, parent_model_id FROM model").fetchall())
            if model_id in _ancestors(parents, parent_model_id):
                raise LineageError(f"model {model_id!r} is an ancestor of {parent_model_id!r}: making it the "
                                   "parent would make the model its own ancestor (--parent-model)")
            if old_parent is not None and old_parent != parent_model_id:
                raise LineageError(f"model {model_id!r} is already recorded as trained from {old_parent!r}, "
                                   f"not {parent_model_id!r} (--parent-model)")
        if trained_on_export_id is not None:
            if not cur.execute("SELECT 1 FROM export_run WHERE id = ?", [trained_on_export_id]).fetchall():
                raise LineageError(f"no export run #{trained_on_export_id} in this database (--trained-on-export): "
                                   "give the id an export printed")
            if old_export is not None and old_export != trained_on_export_id:
                raise LineageError(f"model {model_id!r} is already recorded as trained on export run "
                                   f"#{old_export}, not #{trained_on_export_id} (--trained-on-export)")
        cur.execute("""UPDATE model SET parent_model_id = coalesce(?, parent_model_id),
                       trained_on_export_id = coalesce(?, trained_on_export_id) WHERE model_id = ?""",
                    [parent_model_id, trained_on_export_id, model_id])
    got = get_model(db, model_id)
    assert got is not None
    return got


def has_bundled(db: Database) -> bool:
    """Whether a bundled (demo) model was ever recorded here: a look at the small model table, which spares
    bundled_use's scan of every response and judgment when none was."""
    return db.fetchval("SELECT count(*) FROM model WHERE bundled") > 0


def bundled_use(db: Database) -> dict[int, bool | None]:
    """Per study id: True when it holds responses or current model judgments of a bundled (demo) model,
    None when it holds no responses and no model judgments at all, else False (the demo banner's rule)."""
    rows = db.fetchall(
        """WITH demo AS (SELECT model_id FROM model WHERE bundled),
           resp AS (SELECT p.study_id, coalesce(r.model_id, g.model_id) AS model_id
                    FROM response r JOIN prompt p ON p.id = r.prompt_id
                    LEFT JOIN generation_run g ON g.id = r.run_id),
           judged AS (SELECT study_id, judge AS model_id FROM judgment
                      WHERE judge_kind = 'model' AND superseded_at IS NULL),
           used AS (SELECT * FROM resp UNION ALL SELECT * FROM judged)
           SELECT s.id, count(u.study_id), count(d.model_id)
           FROM study s LEFT JOIN used u ON u.study_id = s.id LEFT JOIN demo d ON d.model_id = u.model_id
           GROUP BY s.id""")
    return {sid: (None if n == 0 else n_demo > 0) for sid, n, n_demo in rows}


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
    the registry knows of the model (nothing for an imported judge or a run stored before m023) and its
    iteration (steps from its family's root; None for a model the registry does not know)."""
    rows = db.fetchdicts(
        """WITH used AS (
               SELECT g.study_id, 'run #' || g.id || ' (' || g.kind || ', ' || g.engine || ')' AS role,
                      g.model_id, 0 AS part, g.id AS ord
               FROM generation_run g
               UNION ALL
               SELECT j.study_id, 'judge of ' || count(DISTINCT j.method) || ' method(s)', j.judge, 1, 0
               FROM judgment j WHERE j.judge_kind = 'model' AND j.superseded_at IS NULL
               GROUP BY j.study_id, j.judge)
           SELECT s.name AS study, u.role, u.model_id, m.quantisation, m.size_bytes, m.sha256,
                  m.parent_model_id, m.trained_on_export_id
           FROM used u JOIN study s ON s.id = u.study_id LEFT JOIN model m ON m.model_id = u.model_id
           ORDER BY s.name, u.part, u.ord, u.model_id""")
    parents = _parents(db)
    for r in rows:
        r["iteration"] = len(_ancestors(parents, r["model_id"])) if r["model_id"] in parents else None
    return rows
