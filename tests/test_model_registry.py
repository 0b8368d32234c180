"""The model registry (storage/model_registry.py) and m023, which renames the bundled model's old id."""

from __future__ import annotations

from pathlib import Path

from storage import model_registry as reg
from storage.db import Database
from storage.migrations import BUNDLED_ID, BUNDLED_OLD_ID, migrate
from storage.models import ModelIdentity
from tests.builders import db_before


def _old_rows(db: Database, model: str, engine: str = "embedded") -> None:
    """One of each row that names a model: a run, its response, a checklist, a model judgment, a method run
    and a job, as a database written before m023 holds them."""
    with db.write() as cur:
        cur.execute("INSERT INTO study (name) VALUES (?) ON CONFLICT DO NOTHING", ["s"])
        run = cur.execute("""INSERT INTO generation_run (study_id, engine, model_id, n, temperature, top_p, max_tokens,
                             seed_base, top_logprobs) VALUES (1, ?, ?, 1, 0.8, 0.9, 8, 0, 5) RETURNING id""",
                          [engine, model]).fetchall()[0][0]
        cur.execute("INSERT INTO prompt (study_id, external_id, position, messages) VALUES (1, ?, 0, '[]') "
                    "ON CONFLICT DO NOTHING", ["p"])
        cur.execute("INSERT INTO response (prompt_id, run_id, sample_index, origin, text, engine, model_id) "
                    "VALUES (1, ?, 0, 'sampled', 't', ?, ?)", [run, engine, model])
        cur.execute("INSERT INTO checklist (prompt_id, author, method, version) VALUES (1, ?, 'checklist', '1')", [model])
        cur.execute("""INSERT INTO judgment (study_id, prompt_id, judge_kind, judge, method, target_key,
                       idempotency_key) VALUES (1, 1, 'model', ?, 'p_true', 'r1', ?)""", [model, f"k-{model}"])
        cur.execute("""INSERT INTO method_run (prompt_id, method, method_version, judge, responses_key, status)
                       VALUES (1, 'p_true', '1', ?, '1', 'ok')""", [model])
        cur.execute("INSERT INTO job (kind, status, engine_model) VALUES ('score', 'done', ?)", [f"{engine}:{model}"])


def _ids(db: Database) -> list[tuple]:
    return db.fetchall(
        """SELECT 'run', model_id FROM generation_run UNION ALL SELECT 'response', model_id FROM response
           UNION ALL SELECT 'checklist', author FROM checklist UNION ALL SELECT 'judgment', judge FROM judgment
           UNION ALL SELECT 'method_run', judge FROM method_run UNION ALL SELECT 'job', engine_model FROM job
           ORDER BY ALL""")


def test_m023_renames_the_bundled_model_everywhere_and_leaves_other_models_alone(tmp_path: Path) -> None:
    db = db_before(tmp_path / "old.duckdb", "m023")
    _old_rows(db, BUNDLED_OLD_ID)
    _old_rows(db, "Qwen/Qwen2.5-7B-Instruct", engine="sglang")
    assert migrate(db)[0] == "m023_model_identity"
    ids = _ids(db)
    assert ("run", BUNDLED_ID) in ids and ("job", f"embedded:{BUNDLED_ID}") in ids
    assert not [r for r in ids if BUNDLED_OLD_ID in r[1]]
    assert [r[0] for r in ids if r[1] == BUNDLED_ID] == ["checklist", "judgment", "method_run", "response", "run"]
    assert len([r for r in ids if "Qwen/Qwen2.5-7B-Instruct" in r[1]]) == 6
    m = reg.get_model(db, BUNDLED_ID)
    assert m is not None and m.bundled and m.sha256.startswith(BUNDLED_ID.rsplit("@", 1)[1])
    assert m.size_bytes == 98_362_432
    db.close()


def test_m023_on_a_database_that_never_used_the_bundled_model_adds_no_model_row(tmp_path: Path) -> None:
    db = db_before(tmp_path / "old.duckdb", "m023")
    _old_rows(db, "Qwen/Qwen2.5-7B-Instruct", engine="sglang")
    migrate(db)
    assert db.fetchval("SELECT count(*) FROM model") == 0
    db.close()


def test_record_model_keeps_the_first_sighting_and_never_erases_a_template(db: Database) -> None:
    m = ModelIdentity(model_id="m@1", engine="embedded", name="m", sha256="1" * 64, path="/a.gguf",
                      context_length=512, chat_template="T")
    reg.record_model(db, m)
    first = db.fetchval("SELECT first_seen_at FROM model")
    reg.record_model(db, m.model_copy(update={"path": "/b.gguf", "chat_template": None, "context_length": 256}))
    got = reg.get_model(db, "m@1")
    assert (got.path, got.context_length, got.chat_template) == ("/b.gguf", 256, "T")
    assert db.fetchval("SELECT first_seen_at FROM model") == first
    assert reg.get_model(db, "other") is None


def test_a_cached_hash_is_used_only_while_size_and_mtime_match(db: Database) -> None:
    reg.remember_sha256(db, "/m.gguf", 10, 111, "a" * 64)
    assert reg.cached_sha256(db, "/m.gguf", 10, 111) == "a" * 64
    assert reg.cached_sha256(db, "/m.gguf", 10, 112) is None
    assert reg.cached_sha256(db, "/m.gguf", 11, 111) is None
    reg.remember_sha256(db, "/m.gguf", 11, 112, "b" * 64)
    assert reg.cached_sha256(db, "/m.gguf", 11, 112) == "b" * 64


def test_a_gguf_is_hashed_once_per_version_with_a_progress_line(db: Database, tmp_path: Path) -> None:
    import hashlib
    import os

    from app.services.model_files import gguf_sha256

    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    lines: list[str] = []
    assert gguf_sha256(db, str(f), lines.append) == hashlib.sha256(f.read_bytes()).hexdigest()
    assert len(lines) == 1 and "SHA-256" in lines[0] and str(f) in lines[0]
    # Same size and mtime: the remembered hash, not the bytes (changed here behind its back) is answered.
    st = f.stat()
    f.write_bytes(b"GGUX" + bytes(range(256)) * 64)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert gguf_sha256(db, str(f), lines.append) == hashlib.sha256(b"GGUF" + bytes(range(256)) * 64).hexdigest()
    assert len(lines) == 1
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # a new version of the file: hashed again
    assert gguf_sha256(db, str(f), lines.append) == hashlib.sha256(f.read_bytes()).hexdigest()
    assert len(lines) == 2
    assert gguf_sha256(db, str(tmp_path / "missing.gguf"), lines.append) is None  # the engine names the file
