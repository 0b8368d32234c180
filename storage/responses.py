"""Response rows: sampled, imported, revisions, aggregates."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from storage.db import Database
from storage.label_sources import IMPORTED, LabelSources, mix
from storage.models import Origin, Response, ResponseIn

_COLS = ("prompt_id, run_id, sample_index, origin, parent_id, external_id, text, engine, model_id, params, "
         "seed, token_count, finish_reason, mean_logprob, neg_perplexity, mean_topk_entropy, self_certainty, "
         "self_certainty_mode, logprob_mode, metadata")


def _values(r: ResponseIn) -> list:
    s = r.stats
    return [r.prompt_id, r.run_id, r.sample_index, r.origin, r.parent_id, r.external_id, r.text, r.engine,
            r.model_id, json.dumps(r.params) if r.params is not None else None, r.seed,
            s.token_count if s else None, r.finish_reason,
            s.mean_logprob if s else None, s.neg_perplexity if s else None,
            s.mean_topk_entropy if s else None, s.self_certainty if s else None,
            s.self_certainty_mode if s else None, s.logprob_mode if s else None,
            json.dumps(r.metadata, ensure_ascii=False, default=str)]


def insert_responses(db: Database, responses: list[ResponseIn]) -> list[int]:
    """Insert in one transaction; a sample already stored for (run, prompt, index) is kept, not duplicated."""
    ids: list[int] = []
    with db.write() as cur:
        for r in responses:
            rows = cur.execute(
                f"INSERT INTO response ({_COLS}) VALUES ({', '.join('?' * 20)}) "
                "ON CONFLICT (run_id, prompt_id, sample_index) DO NOTHING RETURNING id",
                _values(r),
            ).fetchall()
            if rows:
                ids.append(rows[0][0])
    return ids


def get_response(db: Database, response_id: int) -> Response:
    row = db.fetchrow("SELECT * FROM response WHERE id = ?", [response_id])
    if row is None:
        raise LookupError(f"no response {response_id}")
    return Response(**row)


def responses_for_prompt(db: Database, prompt_id: int, run_id: int | None = None) -> list[Response]:
    """Responses a person labels for this prompt: one run's samples (or, with no run, the non-sampled ones)."""
    if run_id is None:
        rows = db.fetchdicts(
            "SELECT * FROM response WHERE prompt_id = ? AND run_id IS NULL AND origin IN ('imported', 'reference') "
            "ORDER BY id", [prompt_id])
    else:
        rows = db.fetchdicts(
            "SELECT * FROM response WHERE prompt_id = ? AND run_id = ? AND origin = 'sampled' ORDER BY sample_index",
            [prompt_id, run_id])
    return [Response(**r) for r in rows]


def all_for_prompt(db: Database, prompt_id: int) -> list[Response]:
    """Every response of the prompt, of every run and origin, in id order (what an admin picks a gold answer from)."""
    return [Response(**r) for r in db.fetchdicts("SELECT * FROM response WHERE prompt_id = ? ORDER BY id", [prompt_id])]


def run_samples(db: Database, prompt_id: int, run_id: int) -> list[Response]:
    """One run's samples of a prompt in sample order (`responses_for_prompt`'s run case; sorted here: DuckDB's
    ORDER BY of whole rows costs about half a millisecond, and the label loop asks on every served item)."""
    rows = db.fetchdicts("SELECT * FROM response WHERE prompt_id = ? AND run_id = ? AND origin = 'sampled'",
                         [prompt_id, run_id])
    rows.sort(key=lambda r: (r["sample_index"] is None, r["sample_index"] or 0))  # NULLS LAST
    return [Response(**r) for r in rows]


def _source_rows(rows: list[dict[str, Any]], source: int | str | None) -> list[dict[str, Any]]:
    """One source's responses of a prompt in its order: a run's samples by sample index, or (None or
    "imported") the imported and reference responses by id."""
    if source is None or source == IMPORTED:
        return sorted((r for r in rows if r["run_id"] is None and r["origin"] in ("imported", "reference")),
                      key=lambda r: r["id"])
    return sorted((r for r in rows if r["run_id"] == source and r["origin"] == "sampled"),
                  key=lambda r: (r["sample_index"] is None, r["sample_index"] or 0))


def _label_rows(rows: list[dict[str, Any]], run_id: int | None | LabelSources,
                study_id: int | None = None) -> list[dict[str, Any]]:
    """Of one prompt's response rows (with the run's `run_kind`), those people label and the model
    judges: the labelling run's samples in sample order (with no run, the imported and reference ones by
    id), or the mix of several sources (storage.label_sources, at most MAX_RESPONSES), or, for a prompt
    added from the Live tab that has none, its live samples."""
    if isinstance(run_id, LabelSources) and run_id.single_run is None:
        prompt_id = rows[0]["prompt_id"] if rows else 0
        chosen = mix(study_id or 0, prompt_id, {s: _source_rows(rows, s) for s in run_id.names})
    else:
        chosen = _source_rows(rows, run_id.single_run if isinstance(run_id, LabelSources) else run_id)
    if chosen:
        return chosen
    return sorted((r for r in rows if r["run_kind"] == "live" and r["origin"] == "sampled"),
                  key=lambda r: (r["run_id"], r["sample_index"]))


def label_set(db: Database, prompt_id: int, run_id: int | None | LabelSources,
              study_id: int | None = None) -> list[Response]:
    """The responses people label and the model judges for this prompt (see `_label_rows`); `study_id`
    seeds the mix of several sources."""
    rows = db.fetchdicts(
        "SELECT r.*, g.kind AS run_kind FROM response r LEFT JOIN generation_run g ON g.id = r.run_id "
        "WHERE r.prompt_id = ? AND r.origin IN ('sampled', 'imported', 'reference')", [prompt_id])
    return [Response(**r) for r in _label_rows(rows, run_id, study_id)]


class CardOrigin(BaseModel):
    """Where a card came from: the response's run (None: imported), its model and origin."""

    response_id: int
    run_id: int | None = None
    model_id: str | None = None
    origin: Origin


def origins(db: Database, response_ids: list[int]) -> list[CardOrigin]:
    """The origin of each response id, in the order given (e.g. a judgment's shown_order: what was shown,
    card by card); an id with no response is left out."""
    found = {r["id"]: r for r in db.fetchdicts(
        "SELECT id AS response_id, run_id, model_id, origin, id FROM response WHERE list_contains(?, id)",
        [list(response_ids)])}
    return [CardOrigin(**found[i]) for i in response_ids if i in found]


class ResponseFigures(BaseModel):
    """A response without its text: what a cost estimate needs to know about it."""

    id: int
    origin: Origin
    token_count: int | None = None
    mean_logprob: float | None = None
    neg_perplexity: float | None = None
    mean_topk_entropy: float | None = None
    self_certainty: float | None = None
    self_certainty_mode: str | None = None
    logprob_mode: str | None = None


def study_label_sets(db: Database, study_id: int, run_id: int | None | LabelSources
                     ) -> dict[int, tuple[list[ResponseFigures], list[ResponseFigures]]]:
    """Per prompt of the study that has any response: (its label set as `label_set` picks it, its
    revisions and aggregates oldest first), in one query instead of one per prompt."""
    by_prompt: dict[int, list[dict[str, Any]]] = {}
    for r in db.fetchdicts(
            """SELECT r.prompt_id, r.run_id, r.sample_index, g.kind AS run_kind, r.id, r.origin, r.token_count,
                      r.mean_logprob, r.neg_perplexity, r.mean_topk_entropy, r.self_certainty,
                      r.self_certainty_mode, r.logprob_mode
               FROM response r JOIN prompt p ON p.id = r.prompt_id
               LEFT JOIN generation_run g ON g.id = r.run_id WHERE p.study_id = ?""", [study_id]):
        by_prompt.setdefault(r["prompt_id"], []).append(r)
    out = {}
    for prompt_id, rows in by_prompt.items():
        derived = sorted((r for r in rows if r["origin"] in ("revision", "aggregate")), key=lambda r: r["id"])
        out[prompt_id] = ([ResponseFigures(**r) for r in _label_rows(rows, run_id, study_id)],
                          [ResponseFigures(**r) for r in derived])
    return out


def missing_samples(db: Database, run_id: int, study_id: int, n: int) -> list[tuple[int, int]]:
    """(prompt_id, sample_index) pairs of this run that have no stored response yet, in prompt order."""
    return [tuple(r) for r in db.fetchall(
        """SELECT p.id, s.i FROM prompt p CROSS JOIN range(?) s(i)
           WHERE p.study_id = ? AND NOT EXISTS (
             SELECT 1 FROM response r WHERE r.run_id = ? AND r.prompt_id = p.id AND r.sample_index = s.i)
           ORDER BY p.position, s.i""",
        [n, study_id, run_id])]


def count_run_responses(db: Database, run_id: int) -> int:
    return db.fetchval("SELECT count(*) FROM response WHERE run_id = ?", [run_id])


def derived_responses(db: Database, prompt_id: int) -> list[Response]:
    """Responses the model wrote from others (revisions of a critique, aggregates), oldest first."""
    return [Response(**r) for r in db.fetchdicts(
        "SELECT * FROM response WHERE prompt_id = ? AND origin IN ('revision', 'aggregate') ORDER BY id", [prompt_id])]
