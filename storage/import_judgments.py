"""Judgments files (JSONL) → prompts, imported responses and judgment rows, in one transaction.

A judgments file holds existing human and model verdicts (from other tools, published datasets) so
they can be studied without generating anything. One JSON object per line, one item per object:

    {"item_id": "q17", "prompt": "...", "category": "optional",
     "responses": [{"id": "r1", "text": "...", "model": "optional"}, {"id": "r2", "text": "..."}],
     "judgments": [{"judge": "ann1", "judge_kind": "human", "type": "pairwise", "shown": ["r1", "r2"],
                    "winner": "r1"}, ...]}

Human judgments have type pairwise, likert, best_of_n or correct (a pydantic union discriminated on
`type`, storage/judgment_records.py); model judgments are pairwise, or any method id with a `score` and/or
`prob` on one response.
docs/formats.md ("Judgments files") lists every field and how each type is stored.

The whole file is read and validated before anything is written; the first problem stops the import,
nothing is imported, and the error names the place the way prompt files do:
`judgments.jsonl:7: field 'judgments[2].winner': 'r9' is not one of the shown responses (r1, r2, 'tie',
'both_bad')`.

Storage: one `prompt` per item (external_id = item_id), one `response` per response (origin
"imported", no run, external_id = the file's id, model_id = model), one `judgment` per judgment
(source "import"), inserted with one statement per table over Arrow tables. Each judgment's
idempotency key derives from (study, item_id, its index in the item), so one file cannot be stored
twice; an item_id already in the study is an error.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, cast

import pyarrow as pa
from pydantic import BaseModel, ValidationError

from storage.db import Database
from storage.fileio import read_lines
from storage.importers import (
    MAX_PROMPT_CHARS_ENV,
    PromptFileError,
    json_objects,
    max_prompt_chars_setting,
)
from storage.judgment_records import (
    HUMAN_TYPES,
    HumanBestOfN,
    HumanCorrect,
    HumanLikert,
    HumanPairwise,
    ItemIn,
    ModelPairwise,
    ModelScore,
    _pydantic_problem,
)
from storage.judgments import target_key
from storage.models import JudgmentIn, PromptIn
from storage.prompts import insert_prompts
from storage.studies import get_study

__all__ = ["HUMAN_TYPES", "ImportSummary", "ItemIn", "JudgmentFileError", "import_judgments", "read_judgments_file"]

WINNER_WORDS = ("tie", "both_bad")  # pairwise verdicts that are not a response id ("both_bad" counts as a tie)
SOURCE = "import"
MAX_LINE_BYTES = 64 * 1024 * 1024  # one item: its prompt, every response and every judgment


class JudgmentFileError(PromptFileError):
    """A judgments file that cannot be imported: `file:line: field 'judgments[2].winner': detail`.

    >>> str(JudgmentFileError("j.jsonl", 3, "judgments[2].winner", "'r9' is not one of the shown responses"))
    "j.jsonl:3: field 'judgments[2].winner': 'r9' is not one of the shown responses"
    """


class ImportSummary(BaseModel):
    study: str
    items: int
    responses: int
    judgments: int
    format: str = "critlab"
    # Another format's reader: what it mapped, kept aside in metadata, and deliberately did not use.
    tally: dict[str, dict[str, int]] | None = None
    tally_line: str | None = None

    @property
    def message(self) -> str:
        text = (f"imported {self.items} items, {self.responses} responses and {self.judgments} judgments "
                f"into study {self.study!r}")
        return f"{text} from {self.format} ({self.tally_line})" if self.tally_line else text


# -- public API ------------------------------------------------------------------------------
def read_judgments_file(path: str | os.PathLike[str], *, display_name: str | None = None,
                        max_prompt_chars: int | None = None) -> list[ItemIn]:
    """Read and validate a whole judgments file; raises `JudgmentFileError` at the first problem."""
    return [item for _, item in _read(path, display_name, max_prompt_chars)]


def import_judgments(db: Database, study_id: int, path: str | os.PathLike[str], *,
                     display_name: str | None = None, max_prompt_chars: int | None = None,
                     fmt: str = "critlab") -> ImportSummary:
    """Validate the whole file, then store every item in one transaction.

    `fmt` names the file's format (`storage.formats.FORMATS`); other formats are read into items by
    their reader, then validated and stored the same way. An item_id already in the study is an error
    naming its line, and nothing is imported.
    """
    study = get_study(db, study_id)
    tally = None
    if fmt == "critlab":
        located = _read(path, display_name, max_prompt_chars)
    else:
        from storage.formats import read_records  # the readers build on this module

        records, tally = read_records(fmt, path, display_name)
        located = _validate_all(path, display_name, max_prompt_chars, records)
    items = [item for _, item in located]
    with db.write() as cur:
        # Checked inside the transaction that inserts, so no concurrent import can slip in between.
        taken = {r[0] for r in cur.execute("SELECT external_id FROM prompt WHERE study_id = ?",
                                           [study_id]).fetchall()}
        for line, item in located:
            if item.item_id in taken:
                raise JudgmentFileError(path, line, "item_id", f"item_id {item.item_id!r} already exists in "
                                        f"study {study.name!r}", display_name=display_name)
        start = cur.execute("SELECT coalesce(max(position), -1) + 1 FROM prompt WHERE study_id = ?",
                            [study_id]).fetchall()[0][0]
        insert_prompts(db, study_id, [
            PromptIn(external_id=it.item_id, messages=it.chat(), reference=it.reference, category=it.category,
                     metadata=it.metadata) for it in items])
        prompt_ids = dict(cur.execute("SELECT external_id, id FROM prompt WHERE study_id = ? AND position >= ?",
                                      [study_id, start]).fetchall())

        n_responses = sum(len(it.responses) for it in items)
        response_ids = iter(_reserve(cur, "response_id_seq", n_responses))
        resp: dict[str, list] = {"id": [], "prompt_id": [], "external_id": [], "text": [], "model_id": [],
                                 "metadata": []}
        db_ids: list[dict[str, int]] = []
        for it in items:
            pid = prompt_ids[it.item_id]
            ids: dict[str, int] = {}
            for r in it.responses:
                ids[r.id] = rid = next(response_ids)
                for col, val in (("id", rid), ("prompt_id", pid), ("external_id", r.id), ("text", r.text),
                                 ("model_id", r.model),
                                 ("metadata", json.dumps(r.metadata or {}, ensure_ascii=False))):
                    resp[col].append(val)
            db_ids.append(ids)
        _insert(cur, "response", pa.table(resp, schema=_RESPONSE_SCHEMA),
                "id, prompt_id, run_id, sample_index, origin, external_id, text, model_id, metadata",
                "id, prompt_id, NULL, NULL, 'imported', external_id, text, model_id, metadata")

        n_judgments = _insert_judgments(cur, study_id, items, [prompt_ids[it.item_id] for it in items], db_ids)
    return ImportSummary(study=study.name, items=len(items), responses=n_responses, judgments=n_judgments,
                         format=fmt, tally=tally.as_dict() if tally else None,
                         tally_line=tally.line() if tally else None)


def judgment_rows(item: ItemIn, *, study_id: int, prompt_id: int, response_ids: dict[str, int]) -> list[JudgmentIn]:
    """The judgment rows an item's judgments are stored as (docs/formats.md, "Storage mapping");
    `response_ids` maps the file's response ids to database ids."""
    return [JudgmentIn(study_id=study_id, prompt_id=prompt_id, judge_kind=j.judge_kind, judge=j.judge, method=j.type,
                       stage=j.stage, rationale=j.rationale, source=SOURCE,
                       idempotency_key=idempotency_key(study_id, item.item_id, index), **_fields(j, response_ids))
            for index, j in enumerate(item.judgments)]


def _fields(j: Any, rid: dict[str, int]) -> dict[str, Any]:
    """A judgment's type-specific columns (every one of `_TYPED_COLUMNS`), with database ids."""
    out: dict[str, Any] = dict.fromkeys(_TYPED_COLUMNS)
    if isinstance(j, HumanPairwise | ModelPairwise):
        a, b = rid[j.shown[0]], rid[j.shown[1]]
        out.update(response_id=a, response_b_id=b, shown_order=[a, b],
                   label=j.winner if j.winner in WINNER_WORDS else str(rid[j.winner]))
        if isinstance(j, ModelPairwise):
            out["variant"] = f"order:{a}-{b}"
            if j.prob is not None:
                out["dist"] = {k if k == "tie" else str(rid[k]): p for k, p in j.prob.items()}
                out["prob"] = j.prob.get(j.shown[0])
    elif isinstance(j, HumanLikert):
        out.update(response_id=rid[j.response], value=j.score, dist={"scale_min": j.scale[0], "scale_max": j.scale[1]})
    elif isinstance(j, HumanBestOfN):
        out.update(response_id=rid[j.winner], shown_order=[rid[s] for s in j.shown])
    elif isinstance(j, HumanCorrect):
        out.update(response_id=rid[j.response], value=1.0 if j.value else 0.0,
                   label="correct" if j.value else "incorrect")
    else:
        out.update(response_id=rid[j.response], value=j.score, prob=j.prob, label=j.label, variant=j.variant,
                   dist={"scale_min": j.scale[0], "scale_max": j.scale[1]} if j.scale else None)
    return out


_TYPED_COLUMNS = ("response_id", "response_b_id", "variant", "shown_order", "value", "label", "prob", "dist")


class _Target:
    """What `target_key()` reads, without building a pydantic model per row (the bulk path)."""

    __slots__ = ("checklist_item_id", "method", "prompt_id", "response_b_id", "response_id", "variant")

    def __init__(self, method: str, prompt_id: int, fields: dict[str, Any]):
        self.method, self.prompt_id, self.checklist_item_id = method, prompt_id, None
        self.response_id, self.response_b_id, self.variant = (
            fields["response_id"], fields["response_b_id"], fields["variant"])


def _target_key(method: str, prompt_id: int, fields: dict[str, Any]) -> str:
    return target_key(cast(JudgmentIn, _Target(method, prompt_id, fields)))


def idempotency_key(study_id: int, item_id: str, index: int) -> str:
    """Deterministic per (study, item, judgment index), so the same file cannot store a verdict twice.

    >>> idempotency_key(1, "q17", 0) == idempotency_key(1, "q17", 0) != idempotency_key(2, "q17", 0)
    True
    """
    digest = hashlib.sha256(f"{study_id}\x00{item_id}\x00{index}".encode()).hexdigest()[:32]
    return f"import:{study_id}:{digest}:{index}"


# -- reading ---------------------------------------------------------------------------------
def _read(path: str | os.PathLike[str], display_name: str | None,
          max_prompt_chars: int | None) -> list[tuple[int, ItemIn]]:
    def err(line: int, field: str | None, detail: str) -> JudgmentFileError:
        return JudgmentFileError(path, line, field, detail, display_name=display_name)

    p = Path(path)
    if not p.is_file():
        raise err(0, None, "file not found" if not p.exists() else "not a file")

    def records() -> Any:
        with open(p, "rb") as f:
            # MAX_LINE_BYTES read per call, so a test can lower it instead of writing 64 MiB.
            yield from json_objects(read_lines(f, err, MAX_LINE_BYTES), err,
                                    '{"item_id": ..., "responses": [...], "judgments": [...]}')

    return _validate_all(path, display_name, max_prompt_chars, records())


def _validate_all(path: str | os.PathLike[str], display_name: str | None, max_prompt_chars: int | None,
                  records: Any) -> list[tuple[int, ItemIn]]:
    """Every (line, item dict) as a validated item; the first problem raises, naming its line."""
    limit = max_prompt_chars_setting() if max_prompt_chars is None else max_prompt_chars

    def err(line: int, field: str | None, detail: str) -> JudgmentFileError:
        return JudgmentFileError(path, line, field, detail, display_name=display_name)

    out: list[tuple[int, ItemIn]] = []
    first_line: dict[str, int] = {}
    for line, rec in records:
        try:
            item = ItemIn.model_validate(rec)
        except ValidationError as e:
            raise err(line, *_pydantic_problem(e)) from None
        problem = _check_item(item, limit)
        if problem:
            raise err(line, *problem)
        if item.item_id in first_line:
            raise err(line, "item_id", f"duplicate item_id {item.item_id!r} (first used on line "
                      f"{first_line[item.item_id]})")
        first_line[item.item_id] = line
        out.append((line, item))
    if not out:
        raise err(0, None, "file is empty (no items)")
    return out


# -- checks across fields ----------------------------------------------------------------------
def _check_item(item: ItemIn, max_chars: int) -> tuple[str, str] | None:
    """The first problem pydantic's per-field types cannot see, as (field, detail), or None."""
    if not item.item_id.strip():
        return "item_id", "item_id is empty"
    if item.prompt is not None and item.messages is not None:
        return "prompt", "give either 'prompt' or 'messages', not both"
    if item.prompt is None and item.messages is None:
        return "prompt", "missing: give 'prompt' (text) or 'messages' (a list of {role, content})"
    if item.prompt is not None and not item.prompt.strip():
        return "prompt", "prompt is empty"
    if item.messages is not None:
        if not item.messages:
            return "messages", "expected a list of {role, content} messages"
        for i, m in enumerate(item.messages):
            if not m.content.strip():
                return f"messages[{i}].content", f"message {i + 1} ({m.role}): content is empty"
        if item.messages[-1].role != "user":
            return "messages", f"the last message must be from the user (it is from the {item.messages[-1].role})"
    size = sum(len(m.content) for m in item.chat())
    if size > max_chars:
        return ("prompt" if item.prompt is not None else "messages",
                f"prompt has {size:,} characters; the limit is {max_chars:,} (set {MAX_PROMPT_CHARS_ENV} to change it)")

    ids: dict[str, int] = {}
    for i, r in enumerate(item.responses):
        if r.id in WINNER_WORDS:
            return f"responses[{i}].id", f"{r.id!r} is reserved for pairwise verdicts; use another response id"
        if r.id in ids:
            return f"responses[{i}].id", f"duplicate response id {r.id!r} (first used by responses[{ids[r.id]}])"
        ids[r.id] = i
    known = ", ".join(ids)

    def unknown(rid: str) -> str:
        return f"unknown response id {rid!r} (this item's responses: {known})"

    for n, j in enumerate(item.judgments):
        at = f"judgments[{n}]"
        if isinstance(j, HumanPairwise | ModelPairwise | HumanBestOfN):
            for s in j.shown:
                if s not in ids:
                    return f"{at}.shown", unknown(s)
            dup = next((s for k, s in enumerate(j.shown) if s in j.shown[:k]), None)
            if dup is not None:
                return f"{at}.shown", f"response {dup!r} is shown twice"
            words = WINNER_WORDS if isinstance(j, HumanPairwise | ModelPairwise) else ()
            if j.winner not in j.shown and j.winner not in words:
                choices = ", ".join([*j.shown, *(repr(w) for w in words)])
                extra = (" (a best-of-N winner must be a response, not a tie)" if j.winner in WINNER_WORDS
                         else "")
                return f"{at}.winner", f"{j.winner!r} is not one of the shown responses ({choices}){extra}"
            if isinstance(j, ModelPairwise) and j.prob is not None:
                allowed = [*j.shown, "tie"]
                for key in j.prob:
                    if key not in allowed:
                        return f"{at}.prob", (f"key {key!r} is not one of the shown ids or 'tie' "
                                              f"({', '.join(allowed)})")
                if not j.prob:
                    return f"{at}.prob", "empty mapping; give probabilities for the shown ids and/or 'tie'"
                if sum(j.prob.values()) > 1 + 1e-6:
                    return f"{at}.prob", f"probabilities sum to {sum(j.prob.values()):.4g}, more than 1"
        else:
            if j.response not in ids:
                return f"{at}.response", unknown(j.response)
            if isinstance(j, HumanLikert):
                lo, hi = j.scale
                if not lo < hi:
                    return f"{at}.scale", (f"expected [lowest, highest] with lowest < highest, got "
                                           f"[{_num(lo)}, {_num(hi)}]")
                if not lo <= j.score <= hi:
                    return f"{at}.score", f"score {_num(j.score)} is outside the scale [{_num(lo)}, {_num(hi)}]"
            if isinstance(j, ModelScore) and j.score is None and j.prob is None:
                return f"{at}.score", f"a model judgment of type {j.type!r} needs a 'score' or a 'prob' (or both)"
            if isinstance(j, ModelScore) and j.scale is not None:
                lo, hi = j.scale
                if not lo < hi:
                    return f"{at}.scale", (f"expected [lowest, highest] with lowest < highest, got "
                                           f"[{_num(lo)}, {_num(hi)}]")
                if j.score is None or not lo <= j.score <= hi:
                    return f"{at}.score", (f"a score within the scale [{_num(lo)}, {_num(hi)}] is needed, got "
                                           f"{'none' if j.score is None else _num(j.score)}")
    return _check_duplicates(item, ids)


def _check_duplicates(item: ItemIn, ids: dict[str, int]) -> tuple[str, str] | None:
    """A second judgment by one judge of one type on one target (model pairwise: in one order), the
    target being what `storage.judgments.target_key` makes of it."""
    local = {rid: i + 1 for i, rid in enumerate(ids)}
    seen: dict[tuple, int] = {}
    for n, j in enumerate(item.judgments):
        target = _target_key(j.type, 0, _fields(j, local))
        key = (j.judge_kind, j.judge, j.type, j.stage, target)
        if key in seen:
            what = (f"the order {', '.join(j.shown)}" if isinstance(j, ModelPairwise)
                    else f"the pair {' / '.join(j.shown)}" if isinstance(j, HumanPairwise)
                    else "this item" if target.startswith("prompt:") else f"response {j.response!r}")
            stage = "" if j.stage == "blind" else f" at stage {j.stage!r}"
            detail = (f"a second {j.type} judgment by {j.judge!r}{stage} on {what} "
                      f"(the first is judgments[{seen[key]}])")
            return f"judgments[{n}].judge", detail
        seen[key] = n
    return None


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


# -- bulk inserts ------------------------------------------------------------------------------
_RESPONSE_SCHEMA = pa.schema([("id", pa.int64()), ("prompt_id", pa.int64()), ("external_id", pa.string()),
                              ("text", pa.string()), ("model_id", pa.string()), ("metadata", pa.string())])
_JUDGMENT_SCHEMA = pa.schema([
    ("id", pa.int64()), ("study_id", pa.int64()), ("prompt_id", pa.int64()), ("judge_kind", pa.string()),
    ("judge", pa.string()), ("method", pa.string()), ("target_key", pa.string()), ("response_id", pa.int64()),
    ("response_b_id", pa.int64()), ("variant", pa.string()), ("shown_order", pa.list_(pa.int64())),
    ("value", pa.float64()), ("label", pa.string()), ("prob", pa.float64()), ("dist", pa.string()),
    ("rationale", pa.string()), ("stage", pa.string()), ("source", pa.string()),
    ("idempotency_key", pa.string())])


def _reserve(cur: Any, sequence: str, n: int) -> list[int]:
    """n fresh ids from a sequence, ascending (so rows keep the file's order by id)."""
    if not n:
        return []
    return sorted(r[0] for r in cur.execute(f"SELECT nextval('{sequence}') FROM range(?)", [n]).fetchall())


def _insert(cur: Any, table: str, batch: pa.Table, columns: str, select: str) -> None:
    name = f"_import_{table}_batch"
    cur.register(name, batch)
    try:
        cur.execute(f"INSERT INTO {table} ({columns}) SELECT {select} FROM {name}")
    finally:
        cur.unregister(name)


def _insert_judgments(cur: Any, study_id: int, items: list[ItemIn], prompt_ids: list[int],
                      response_ids: list[dict[str, int]]) -> int:
    cols: dict[str, list] = {f.name: [] for f in _JUDGMENT_SCHEMA}
    for item, pid, rid in zip(items, prompt_ids, response_ids):
        for index, j in enumerate(item.judgments):
            fields = _fields(j, rid)
            for name in _TYPED_COLUMNS:
                cols[name].append(fields[name])
            for name, val in (("study_id", study_id), ("prompt_id", pid), ("judge_kind", j.judge_kind),
                              ("judge", j.judge), ("method", j.type), ("rationale", j.rationale),
                              ("stage", j.stage), ("source", SOURCE),
                              ("target_key", _target_key(j.type, pid, fields)),
                              ("idempotency_key", idempotency_key(study_id, item.item_id, index))):
                cols[name].append(val)
    n = len(cols["study_id"])
    if not n:
        return 0
    cols["id"] = _reserve(cur, "judgment_id_seq", n)
    cols["dist"] = [json.dumps(d) if d is not None else None for d in cols["dist"]]
    names = [f.name for f in _JUDGMENT_SCHEMA]
    _insert(cur, "judgment", pa.table(cols, schema=_JUDGMENT_SCHEMA), ", ".join(names), ", ".join(names))
    return n
