"""A study's prompts, responses and current judgments as a judgments file (the format
`storage.import_judgments` reads; docs/formats.md, "Judgments files").

One line per prompt that has responses, in prompt order: item_id = the prompt's external id, `prompt`
when the prompt is one user message (else `messages`), category (and reference / metadata when set),
responses in id order as `{id, text, model}` (id = the response's external id, else `r<db id>`), and
every current (not superseded) judgment mapped back to the file's types:

- human pairwise / likert / best_of_n / correct as the four human types;
- model pairwise per-order rows (variant `order:<first>-<second>`) as model pairwise with their shown
  order; the combined row (variant None) is skipped, since it derives from the per-order rows;
- any other model row on one response as `{type: method, response, score, prob, label}`, with
  `variant` when it has one (the k samples of critique, rubric ...);
- `stage` when not blind, `rationale` when set.

Skipped and counted by reason: `failed` model judgments, `combined_pairwise` rows, `unsupported` rows
(human methods outside the four types, checklist-item verdicts, pairwise rows of other variants),
`incomplete` rows (no score or probability, a response that is not among the prompt's, no label), `gated`
human rows (the people the study's gold gate leaves out: storage.gold). Gold items (prompts with a gold
answer) are not data and are left out, counted in `gold_items`.
Judge names are exported as stored (no pseudonyms), so a file re-imports to the same study.

Written atomically (a temp file beside the target, then a rename) and recorded in `export_run`; text is
written verbatim (JSON escapes only). A full disk or read-only target raises `StorageWriteError` and
records nothing.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from storage.current import current_sql
from storage import gold
from storage.db import Database
from storage.fileio import atomic_write_jsonl
from storage.human_labels import CorrectLabel, decode, Pick, Rating, StoredLabel
from storage.import_judgments import HUMAN_TYPES, WINNER_WORDS
from storage.models import HumanMethod
from storage.studies import get_study

SKIP_REASONS = ("failed", "combined_pairwise", "unsupported", "incomplete", "gated")


class JudgmentsExportSummary(BaseModel):
    items: int
    responses: int
    judgments: int
    skipped: dict[str, int] = Field(default_factory=dict)
    prompts_without_responses: int = 0
    gold_items: int = 0  # prompts with a gold answer, left out (storage.gold)
    out_path: str
    content_hash: str
    export_run_id: int | None = None
    format: str = "critlab"
    label_config: str | None = None  # label_studio: the labelling config written beside the tasks


    @property
    def message(self) -> str:
        text = (f"{self.items} items, {self.responses} responses and {self.judgments} judgments written to "
                f"{self.out_path}")
        if self.label_config:
            text += f" (labelling config: {self.label_config})"
        if self.skipped:
            why = ", ".join(f"{k}: {v}" for k, v in sorted(self.skipped.items()))
            text += f"; {sum(self.skipped.values())} judgments skipped ({why})"
        if self.gold_items:
            text += f"; {self.gold_items} gold items left out (not data)"
        return text


def build_judgment_items(db: Database, study_id: int) -> tuple[list[dict[str, Any]], Counter[str], int]:
    """(one dict per exported item, skipped judgments by reason, prompts without responses); gold items are
    left out, and the human rows of the people the gold gate leaves out are skipped as `gated`."""
    study = get_study(db, study_id)
    gate = gold.gate(db, study_id, study.config.gold_min_accuracy)
    gated, gold_items = set(gate.names), set(gate.gold_prompts)
    scale = [_num(x) for x in study.config.rating_scale]
    prompts = db.fetchdicts("SELECT id, external_id, messages, reference, category, metadata FROM prompt "
                            "WHERE study_id = ? ORDER BY position, id", [study_id])
    responses: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in db.fetchdicts("""SELECT r.id, r.prompt_id, r.external_id, r.text, r.model_id, r.metadata FROM response r
                              JOIN prompt p ON p.id = r.prompt_id WHERE p.study_id = ? ORDER BY r.id""", [study_id]):
        responses[r["prompt_id"]].append(r)
    judgments: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for j in db.fetchdicts(current_sql("*", "j.study_id = ?") + " ORDER BY j.id", [study_id]):
        judgments[j["prompt_id"]].append(j)

    items: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    bare = 0
    for p in prompts:
        if p["id"] in gold_items:
            continue
        rows = responses.get(p["id"])
        if not rows:
            bare += 1
            continue
        ext = _response_ids(rows)
        item: dict[str, Any] = {"item_id": p["external_id"]}
        messages = json.loads(p["messages"])
        if len(messages) == 1 and messages[0]["role"] == "user":
            item["prompt"] = messages[0]["content"]
        else:
            item["messages"] = messages
        if p["category"] is not None:
            item["category"] = p["category"]
        if p["reference"] is not None:
            item["reference"] = p["reference"]
        metadata = json.loads(p["metadata"] or "{}")
        if metadata:
            item["metadata"] = metadata
        item["responses"] = [_response(r, ext) for r in rows]
        out = []
        for j in judgments.get(p["id"], []):
            if j["judge_kind"] == "human" and j["judge"] in gated:
                skipped["gated"] += 1
                continue
            got = _judgment(j, ext, scale)
            if isinstance(got, str):
                skipped[got] += 1
            else:
                out.append(got)
        item["judgments"] = out
        items.append(item)
    return items, skipped, bare


def export_judgments(db: Database, study: str | int, out_path: str | os.PathLike[str], *,
                     fmt: str = "critlab") -> JudgmentsExportSummary:
    """Write the study as a judgments file (JSONL, atomically), or in another tool's format (`fmt`, one of
    `storage.formats.WRITERS`), and record an export_run."""
    out = Path(out_path)
    if fmt == "critlab":
        if out.suffix.lower() not in (".jsonl", ".ndjson"):
            raise ValueError(f"unknown export format {out.suffix or '(no extension)'!r} for {out}: use .jsonl")
    else:
        from storage.formats import writer

        module = writer(fmt)
        if out.suffix.lower() not in module.SUFFIXES:
            raise ValueError(f"a {fmt} export is written as {' or '.join(module.SUFFIXES)}, not "
                             f"{out.suffix or '(no extension)'!r} ({out})")
    s = get_study(db, study)
    items, skipped, bare = build_judgment_items(db, s.id)
    extra: dict[str, Any] = {}
    extra_lost: Counter[str] = Counter()
    if fmt == "critlab":
        content_hash = atomic_write_jsonl(out, items)
    else:
        # The writer counts what its format cannot hold, by reason, like the skips above.
        content_hash, extra_lost, extra = module.write(items, out, study=s)
        skipped.update(extra_lost)
    counts = {"items": len(items), "responses": sum(len(i["responses"]) for i in items),
              "judgments": sum(len(i["judgments"]) for i in items) - sum(extra_lost.values()),
              "skipped": dict(sorted(skipped.items())), "prompts_without_responses": bare}
    if n_gold := len(gold.gold_prompt_ids(db, s.id)):
        counts["gold_items"] = n_gold
    with db.write() as cur:
        run_id = cur.execute(
            "INSERT INTO export_run (kind, study_id, params, counts, out_path, content_hash) "
            "VALUES ('judgments', ?, ?, ?, ?, ?) RETURNING id",
            [s.id, json.dumps({"format": "jsonl" if fmt == "critlab" else fmt, "current_only": True, **extra}),
             json.dumps(counts), str(out.resolve()), content_hash]).fetchall()[0][0]
    return JudgmentsExportSummary(**counts, out_path=str(out.resolve()), content_hash=content_hash,
                                  export_run_id=run_id, format=fmt, label_config=extra.get("label_config"))


# -- one judgment row back to the file's shape ---------------------------------------------------
def _response(r: dict[str, Any], ext: dict[int, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"id": ext[r["id"]], "text": r["text"]}
    if r["model_id"] is not None:
        out["model"] = r["model_id"]
    metadata = json.loads(r["metadata"]) if r.get("metadata") else None
    if metadata:
        out["metadata"] = metadata
    return out


def _response_ids(rows: list[dict[str, Any]]) -> dict[int, str]:
    """db id → the id written to the file: the external id, else `r<db id>`, made unique per item."""
    out: dict[int, str] = {}
    used: set[str] = set()
    for r in rows:
        rid = r["external_id"] if r["external_id"] else f"r{r['id']}"
        if rid in used or rid in WINNER_WORDS:
            rid = f"{rid}#{r['id']}"
        used.add(rid)
        out[r["id"]] = rid
    return out


def _judgment(j: dict[str, Any], ext: dict[int, str], scale: list[float | int]) -> dict[str, Any] | str:
    """The file's judgment object, or the reason it is skipped."""
    if j["status"] != "ok":
        return "failed"
    kind, method = j["judge_kind"], j["method"]
    head: dict[str, Any] = {"judge": j["judge"], "judge_kind": kind, "type": method}
    dist = json.loads(j["dist"]) if j["dist"] else None
    rid = j["response_id"]
    if rid is not None and rid not in ext:
        return "incomplete"
    if method == HumanMethod.PAIRWISE:  # the model method of the same name is stored the same way
        if kind == "model" and j["variant"] is None:
            return "combined_pairwise"
        a, b = j["response_id"], j["response_b_id"]
        if (kind == "model" and j["variant"] != f"order:{a}-{b}") or (kind == "human" and j["variant"] is not None):
            return "unsupported"
        if a is None or b is None or b not in ext or a == b:
            return "incomplete"
        winner = _winner(j["label"], ext)
        if winner is None or winner not in (ext[a], ext[b], *WINNER_WORDS):
            return "incomplete"
        body: dict[str, Any] = {"shown": [ext[a], ext[b]], "winner": winner}
        if kind == "model" and dist:
            prob = _pair_probs(dist, a, b, ext)
            if prob:
                body["prob"] = prob
    elif kind == "human":
        if method not in HUMAN_TYPES or j["variant"] is not None or j["checklist_item_id"] is not None:
            return "unsupported"
        lab = decode(StoredLabel(**{k: j[k] for k in StoredLabel._fields}))
        if rid is None or lab is None:
            return "incomplete"
        if isinstance(lab, Rating):
            lo, hi = ((dist["scale_min"], dist["scale_max"]) if dist and "scale_min" in dist and "scale_max" in dist
                      else scale)
            body = {"response": ext[rid], "score": _num(lab.value), "scale": [_num(lo), _num(hi)]}
        elif isinstance(lab, Pick):
            shown = lab.shown if lab.shown else list(ext)
            if rid not in shown or any(s not in ext for s in shown) or len(set(shown)) != len(shown):
                return "incomplete"
            body = {"shown": [ext[s] for s in shown], "winner": ext[rid]}
        else:  # correct
            assert isinstance(lab, CorrectLabel)
            body = {"response": ext[rid], "value": lab.ok}
    else:
        if j["response_b_id"] is not None or j["checklist_item_id"] is not None:
            return "unsupported"
        if rid is None:
            return "incomplete"
        if j["value"] is None and j["prob"] is None:
            return "incomplete"
        body = {"response": ext[rid]}
        if j["value"] is not None:
            body["score"] = j["value"]
        if j["prob"] is not None:
            body["prob"] = j["prob"]
        if j["label"] is not None:
            body["label"] = j["label"]
        if j["variant"] is not None:
            body["variant"] = j["variant"]
        if dist and "scale_min" in dist and "scale_max" in dist and j["value"] is not None:
            body["scale"] = [_num(dist["scale_min"]), _num(dist["scale_max"])]
    out = {**head, **body}
    if j["stage"] != "blind":
        out["stage"] = j["stage"]
    if j["rationale"] is not None:
        out["rationale"] = j["rationale"]
    return out


def _winner(label: str | None, ext: dict[int, str]) -> str | None:
    if label in WINNER_WORDS:
        return label
    try:
        return ext.get(int(label)) if label is not None else None
    except ValueError:
        return None


def _pair_probs(dist: dict[str, float], a: int, b: int, ext: dict[int, str]) -> dict[str, float]:
    """An order's distribution keyed by the file's ids: stored by db id (imported) or by A/B (the
    pairwise method, A = shown first); other keys (label_mass) are left out."""
    if "A" in dist or "B" in dist:
        named = {ext[a]: dist.get("A"), ext[b]: dist.get("B"), "tie": dist.get("tie")}
        return {k: v for k, v in named.items() if v is not None}
    out: dict[str, float] = {}
    for key, p in dist.items():
        if key == "tie":
            out["tie"] = p
        elif key.isdigit() and int(key) in (a, b):
            out[ext[int(key)]] = p
    return out


def _num(x: float) -> float | int:
    """Whole numbers as ints (a 1–7 scale reads `[1, 7]`), others unchanged."""
    return int(x) if isinstance(x, float) and x.is_integer() else x
