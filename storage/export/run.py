"""One export from plan to files: resolve the policy, stream the rows (chunk by chunk) through the filters
into the writer, then the dataset card, the optional `datasets` directory and the `export_run` row, all
published together."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import replace
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from storage.db import Database
from storage.export.card import Stats, render_card
from storage.export.data import Chunk, chunks
from storage.export.files import Published, card_path, check_free, publish, write_temp_text
from storage.export.methods import NO_METHODS, ExportMethods
from storage.export.options import ON_POLICY, ExportOptions
from storage.export.plan import Plan, plan_export
from storage.export.policies import Item, ModelView, items, model_agrees, model_view
from storage.export.pre import EXAM_SKIP, vote_rows
from storage.export.writer import RowWriter, check_format, check_hf_dir, is_datasets_dir, staged_hf_dir

CONSENSUS_NAMES = {"dawid_skene": "Dawid–Skene", "mace": "MACE"}
UNITS = {"dpo": "pair", "rm": "pair", "judge": "pair", "kto": "example", "sft": "example"}


class _Summary(BaseModel):
    kind: str
    study: str
    rows: int
    skipped: dict[str, int] = Field(default_factory=dict)
    signal: str
    source: str
    message: str
    # The gold gate (storage.gold): who was left out (real names: these summaries are for admins) and how many
    # of the labels this export reads were theirs; the gold items left out.
    gated: dict[str, Any] = Field(default_factory=dict)


class ExportResult(_Summary):
    out_path: str
    card_path: str
    content_hash: str
    export_run_id: int | None = None
    hf_dir: str | None = None
    agreement: dict[str, Any] = Field(default_factory=dict)


class PreviewResult(_Summary):
    columns: list[str]
    first_rows: list[dict[str, Any]]
    agreement: dict[str, Any] = Field(default_factory=dict)


# -- rows --------------------------------------------------------------------------------------------------
def consistency_reason(it: Item, view: ModelView) -> str | None:
    """CREAM's agreement of a pair with a second judge: None (keep) when that judge's score of the chosen
    response is strictly higher than its score of the rejected one; else why the pair is dropped."""
    a, b = view.scores.get(it.chosen or -1), view.scores.get(it.rejected or -1)
    if a is None or b is None:
        return "consistency_no_score"
    if a.score == b.score:
        return "consistency_tie"
    return None if a.score > b.score else "consistency_disagrees"


def _shared(values: list[Any]) -> Any:
    return values[0] if values and all(v == values[0] for v in values) else None


def _critique_reply(plan: Plan, sample: Any) -> str:
    assert plan.methods.critique_reply is not None  # plan_export checked
    return plan.methods.critique_reply(sample.rationale or "", sample.label)


def build_row(it: Item, chunk: Chunk, plan: Plan) -> tuple[dict[str, Any], list[tuple[int, str, int | None, str | None]]]:
    kind, style = plan.options.kind, plan.options.style
    resp = chunk.responses
    ids = it.response_ids()
    rows = [resp[i] for i in ids]
    origins = [(r.id, r.origin, r.run_id, r.model_id) for r in rows]
    prompt_msgs = it.prompt.messages
    if kind == "judge":
        prompt_msgs = _judge_chat(plan, it, resp[it.target].text if it.target is not None else "")
    std = style == "standard"
    prompt: Any = plan.template.render(prompt_msgs) if std and plan.template else prompt_msgs

    def completion(text: str) -> Any:
        return text if std else [{"role": "assistant", "content": text}]

    row: dict[str, Any]
    if kind == "judge":
        assert it.chosen_sample is not None and it.rejected_sample is not None
        row = {"prompt": prompt, "chosen": completion(_critique_reply(plan, it.chosen_sample)),
               "rejected": completion(_critique_reply(plan, it.rejected_sample))}
    elif kind in ("dpo", "rm"):
        row = {"prompt": prompt, "chosen": completion(resp[it.chosen].text),  # type: ignore[index]
               "rejected": completion(resp[it.rejected].text)}  # type: ignore[index]
        if kind == "rm":
            row["margin"] = it.margin
    elif kind == "kto":
        row = {"prompt": prompt, "completion": completion(resp[it.completion].text), "label": it.label}  # type: ignore[index]
    elif style == "messages":
        row = {"messages": prompt_msgs + [{"role": "assistant", "content": resp[it.completion].text}]}  # type: ignore[index]
    else:
        row = {"prompt": prompt, "completion": completion(resp[it.completion].text)}  # type: ignore[index]
    alias = plan.alias
    row["meta"] = {
        "study": plan.study.name,
        "kind": kind,
        "source": plan.source_label,
        "signal": it.signal,
        "prompt_id": it.prompt.external_id,
        "prompt_db_id": it.prompt.id,
        "response_ids": ids,
        "chosen_response_id": it.chosen if kind != "sft" else it.completion,
        "rejected_response_id": it.rejected,
        "origins": [{"response_id": r.id, "origin": r.origin} for r in rows],
        "off_policy": any(r.origin not in ON_POLICY for r in rows),
        "annotator": alias(it.annotator) if it.annotator is not None else None,
        "annotators": [alias(a) for a in it.voters],
        "n_annotators": it.n_annotators,
        "agreement": it.agreement,
        "votes": [{"annotator": alias(a), "response_id": r, "label": lab, "value": v} for a, r, lab, v in it.votes],
        "chosen_rating": it.chosen_rating,
        "rejected_rating": it.rejected_rating,
        "ratings": [{"response_id": r, "rating": m, "n": n} for r, m, n in it.ratings],
        "scores": [{"response_id": r, "method": m, "judge": j, "variant": var, "score": sc, "label": lab}
                   for r, m, j, var, sc, lab in it.scores],
        "margin": it.margin,
        "margin_kind": it.margin_kind if it.margin is not None else None,
        "swap_consistent": it.swap_consistent,
        "label": it.label,
        "chosen_variant": it.chosen_sample.variant if it.chosen_sample else None,
        "rejected_variant": it.rejected_sample.variant if it.rejected_sample else None,
        "shown_order": it.shown_order,
        "generation_run_id": _shared([r.run_id for r in rows]),
        "model_id": _shared([r.model_id for r in rows]),
        "method_version": it.method_version,
        "judgment_ids": it.judgment_ids,
    }
    return row, origins


def _judge_chat(plan: Plan, it: Item, response_text: str) -> list[dict[str, str]]:
    """The critique method's chat in the version that wrote the critiques."""
    assert plan.methods.judge_chat is not None  # plan_export checked
    question = next((m["content"] for m in reversed(it.prompt.messages) if m["role"] == "user"), "")
    return plan.methods.judge_chat(it.method_version, question, response_text)


# -- streaming ---------------------------------------------------------------------------------------------
def _filter(it: Item, chunk: Chunk, plan: Plan, views: dict[int, ModelView], stats: Stats) -> str | None:
    o = plan.options
    ids = it.response_ids()
    if any(i not in chunk.responses for i in ids):
        return "missing_response"
    if any(chunk.responses[i].origin not in plan.ctx.origins for i in ids):
        return "excluded_origin"
    if it.n_annotators is not None and it.n_annotators < o.min_annotators:
        return "too_few_annotators"
    if o.min_agreement > 0 and it.n_annotators is not None and (it.agreement is None or it.agreement < o.min_agreement):
        return "low_agreement"
    if o.min_margin > 0 and (it.margin is None or it.margin < o.min_margin):
        return "below_min_margin" if it.margin is not None else "no_margin"
    if o.kind == "rm" and it.margin is None:
        return "no_margin"
    if plan.source.kind == "consensus":
        view = views.get(it.prompt.id)
        if view is None:
            view = views[it.prompt.id] = model_view(chunk.model.get(it.prompt.id, []), plan.ctx)
        reason = model_agrees(it, view, plan.ctx)
        if reason in (None, "model_disagrees", "model_tie"):
            stats.model_checked += 1
            stats.model_agreed += reason is None
        if reason is not None:
            return reason
    return None


def stream_rows(db: Database, plan: Plan, stats: Stats) -> Iterator[dict[str, Any]]:
    second = replace(plan.ctx, model_judge=plan.consistency_judge)
    pre = plan.pre
    for chunk in chunks(db, plan.study.id, human_methods=plan.human_methods, model_method=plan.ctx.model_method,
                        model_judge=None if pre else plan.ctx.model_judge, consistency_judge=plan.consistency_judge,
                        leave_out=plan.gate.names):
        if pre is not None:  # every judge's verdicts → the vote; the exam prompts chose the weights: not exported
            stats.skipped[EXAM_SKIP] += sum(p.id in pre.exam for p in chunk.prompts)
            chunk.prompts = [p for p in chunk.prompts if p.id not in pre.exam]
            chunk.model = vote_rows(chunk.model, pre, plan.ctx.score_column or "")
        views: dict[int, ModelView] = {}
        seconds: dict[int, ModelView] = {}
        for it in items(chunk, plan.ctx, plan.source.kind):
            if isinstance(it, str):
                stats.skipped[it] += 1
                continue
            reason = _filter(it, chunk, plan, views, stats)
            if reason is None and plan.consistency_judge is not None:  # last: the pair is otherwise kept
                pid = it.prompt.id
                if pid not in seconds:
                    seconds[pid] = model_view(chunk.consistency.get(pid, []), second)
                reason = consistency_reason(it, seconds[pid])
            if reason is not None:
                stats.skipped[reason] += 1
                continue
            row, origins = build_row(it, chunk, plan)
            stats.add(row["meta"], origins)
            yield row


# -- entry points ------------------------------------------------------------------------------------------
def export_dataset(db: Database, study: str | int, out_path: str | os.PathLike[str], options: ExportOptions,
                   *, hf_dir: str | os.PathLike[str] | None = None, overwrite: bool = False,
                   methods: ExportMethods = NO_METHODS) -> ExportResult:
    """Write the export to `.jsonl` / `.parquet` (streaming) with its card (`<stem>.card.md` beside it), the
    `datasets` directory when asked (with the card as README.md), and record an export_run.

    Everything is written to temp names first and moved into place together once the export_run row is in,
    so a failure anywhere leaves none of the files (and no row). An existing data file or card is refused
    unless `overwrite`; nothing else in the folder (a README.md, say) is ever touched. `methods`: the method
    facts and chat templates that model sources, judge rows and the standard style need (storage.export.methods)."""
    out = Path(out_path)
    fmt = check_format(out)
    card = card_path(out)
    check_free({out: "the data file", card: f"the dataset card of {out.name}"}, overwrite=overwrite)
    hf = Path(hf_dir) if hf_dir is not None else None
    if hf is not None:
        check_hf_dir(hf, out)
    plan = plan_export(db, study, options, methods)
    stats = Stats()
    writer = RowWriter(out, plan.schema)
    card_tmp: Path | None = None
    try:
        for row in stream_rows(db, plan, stats):
            writer.write(row)
        content_hash = writer.finish()
        params = {**options.model_dump(), "format": fmt.lstrip("."), "signal": plan.signal,
                  "source_resolved": plan.source_label, "columns": plan.schema.names,
                  "hf_dir": str(hf.resolve()) if hf is not None else None, "card": str(card.resolve())}
        counts = {**stats.counts(), "agreement": stats.agreement_figures(), "gated": plan.gate.summary()}
        with staged_hf_dir(writer.tmp, fmt, plan.schema, hf) if hf is not None else nullcontext() as staged:
            placed: Published | None = None
            try:
                with db.write() as cur:
                    run_id = cur.execute(
                        "INSERT INTO export_run (kind, study_id, params, counts, out_path, content_hash) "
                        "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                        [options.kind, plan.study.id, json.dumps(params), json.dumps(counts), str(out.resolve()),
                         content_hash]).fetchall()[0][0]
                    card_tmp = write_card(out, _card(db, plan, stats, out.name, content_hash, run_id))
                    moves = [(writer.tmp, out, "the data file"), (card_tmp, card, f"the dataset card of {out.name}")]
                    if hf is not None and staged is not None:
                        (staged / "README.md").write_text(
                            _card(db, plan, stats, out.name, content_hash, run_id, saved_copy=True), encoding="utf-8")
                        moves.append((staged, hf, "the --hf-dir datasets directory"))
                    # Last step of the transaction, so only the COMMIT can fail after the files are in place.
                    placed = publish(moves, replace=lambda t: is_datasets_dir(t) if t == hf else overwrite)
            except BaseException:
                if placed is not None:  # the export_run row did not commit: take the files out again
                    placed.undo()
                raise
            placed.done()
    finally:
        writer.abort()  # the temp files are gone once published; after a failure, this removes them
        if card_tmp is not None:
            card_tmp.unlink(missing_ok=True)
    return ExportResult(kind=options.kind, study=plan.study.name, rows=stats.kept, skipped=stats.counts()["skipped"],
                        signal=plan.signal, source=plan.source_label, out_path=str(out.resolve()),
                        card_path=str(card.resolve()), content_hash=content_hash,
                        message=message(options.kind, stats.kept, stats.skipped, out, plan.signal) + plan.gate.note(),
                        gated=plan.gate.summary(), export_run_id=run_id, hf_dir=params["hf_dir"],
                        agreement=counts["agreement"])


def write_card(out: Path, text: str) -> Path:
    """The card's text in a temp file beside the data file `out` (published with it)."""
    return write_temp_text(card_path(out), text)


def preview_dataset(db: Database, study: str | int, options: ExportOptions, *, n_rows: int = 5,
                    methods: ExportMethods = NO_METHODS) -> PreviewResult:
    """The counts (kept, skipped by reason) and first rows of an export, writing nothing."""
    plan = plan_export(db, study, options, methods)
    stats = Stats()
    first: list[dict[str, Any]] = []
    for row in stream_rows(db, plan, stats):
        if len(first) < n_rows:
            first.append(row)
    return PreviewResult(kind=options.kind, study=plan.study.name, rows=stats.kept, skipped=stats.counts()["skipped"],
                         signal=plan.signal, source=plan.source_label,
                         message=message(options.kind, stats.kept, stats.skipped, None, plan.signal) + plan.gate.note(),
                         gated=plan.gate.summary(),
                         columns=plan.schema.names, first_rows=first, agreement=stats.agreement_figures())


def message(kind: str, kept: int, skipped: Counter[str], out: Path | None, signal: str) -> str:
    """What happened, and for an empty export why.

    >>> message("dpo", 0, Counter(), Path("x.jsonl"), "best")
    '0 pairs: no labels for this policy yet (signal: best)'
    >>> message("dpo", 1, Counter(tied_lowest=1), Path("x.jsonl"), "best")
    '1 pair written to x.jsonl; 1 skipped (tied_lowest: 1)'
    >>> message("kto", 3, Counter(), None, "correct")
    '3 examples'
    """
    unit = UNITS[kind]
    why = ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items(), key=lambda kv: (-kv[1], kv[0])))
    n_skipped = sum(skipped.values())
    if kept == 0:
        return (f"0 {unit}s: no labels for this policy yet (signal: {signal})" if n_skipped == 0
                else f"0 {unit}s: {n_skipped} skipped ({why})")
    text = f"{kept} {unit}{'s' if kept != 1 else ''}" + (f" written to {out}" if out is not None else "")
    return f"{text}; {n_skipped} skipped ({why})" if n_skipped else text


def _card(db: Database, plan: Plan, stats: Stats, file_name: str, content_hash: str, run_id: int | None,
          *, saved_copy: bool = False) -> str:
    s = plan.study
    runs = [r for r in db.fetchdicts("SELECT * FROM generation_run WHERE study_id = ? ORDER BY id", [s.id])
            if r["id"] in stats.runs]
    o = plan.options
    return render_card(
        file_name=file_name, schema=plan.schema, kind=o.kind, style=o.style,
        study={"id": s.id, "name": s.name, "description": s.description,
               "prompts": db.fetchval("SELECT count(*) FROM prompt WHERE study_id = ?", [s.id])},
        runs=runs, policy=policy_text(plan), filters=_filters(plan), stats=stats, content_hash=content_hash,
        export_run_id=run_id, created=datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        version=_version(), template_source=plan.template.source if plan.template else None, saved_copy=saved_copy)


def _version() -> str:
    try:
        return md.version("critlab")
    except md.PackageNotFoundError:
        return "dev"


def _filters(plan: Plan) -> dict[str, Any]:
    o = plan.options
    out: dict[str, Any] = {"min_annotators": o.min_annotators, "min_agreement": o.min_agreement,
                           "min_margin": o.min_margin, "per_annotator": o.per_annotator,
                           "include_origin": ", ".join(o.include_origin) + " (sampled includes imported responses)",
                           "labels": "current blind human labels (superseded and revealed ones are left out)",
                           "annotators": "real names (--annotator-names)" if o.annotator_names
                           else "pseudonymised per database"}
    if o.kind in ("dpo", "rm"):
        out["all_pairs"] = o.all_pairs
    if plan.consistency_judge is not None:
        out["consistent_with"] = plan.consistency_judge
    if o.kind == "kto" and plan.signal == "ratings":
        out["kto_threshold"] = plan.ctx.kto_threshold
    out.update(plan.gate.card_filters(plan.alias))
    return out


def _policy_lines(plan: Plan) -> list[str]:
    o, c, sig = plan.options, plan.ctx, plan.signal
    who = "each annotator's own labels, one row per (unit, annotator)" if o.per_annotator else \
        "the human consensus (plurality with a unique mode over the current blind labels; mean for ratings)"
    if o.consensus != "plurality":
        who = (f"the human consensus by {CONSENSUS_NAMES[o.consensus]} (the argmax of each unit's posterior, "
               "fitted by EM over every current blind vote of the signal; none where the maximum is shared)")
    lines = [f"Source: `{plan.source_label}`; signal: `{sig}`."]
    if o.kind == "judge":
        lines.append(f"For each response with two or more sampled critiques by `{c.model_judge}`: chosen = a critique "
                     f"whose verdict agrees with {who} of the `correct` labels, rejected = one that disagrees "
                     "(the lowest-numbered sample of each); the prompt is the critique method's own chat.")
        return lines
    if o.kind == "kto":
        rule = {"correct": "label = the response was judged correct",
                "checklist": "label = every checklist item answered YES (any NO: false)",
                "ratings": f"label = mean rating above {c.kto_threshold} (below: false; equal: skipped)"}[sig]
        return lines + [f"One example per response from {who}: {rule}."]
    if plan.pre is not None:
        p = plan.pre
        lines.append(f"PRE (peer review of judges): the judges of `{c.model_method}` took an exam, their agreement "
                     f"with the humans on {len(p.exam)} seeded prompts (seed {p.seed}); those scoring ≥ {p.threshold} "
                     "vote with that score as weight ("
                     + ", ".join(f"{j} {w:.3f}" for j, w in sorted(p.weights.items()))
                     + "): pairwise, the verdict with the largest summed weight (a shared largest a tie); scores, "
                       "the weighted mean. The exam prompts are not exported.")
    if plan.source.kind in ("model", "pre"):
        if c.score_column == "label":
            rule = ("every response pair the method judged in both orders with the same winner (swap-consistent); "
                    "ties, single-order and inconsistent verdicts dropped; margin = mean probability gap")
        elif c.score_column == "response_id":
            rule = "the method's pick"
        else:
            rule = (f"highest vs lowest `{c.score_column}` of the method per prompt, ties at the top or bottom "
                    "dropped; margin = the score gap")
        return lines + [f"Self-rewarding: {rule}" + (" (sft: the unique best)." if o.kind == "sft" else ".")]
    base = {"best": "chosen = the consensus best pick, rejected = the response rated strictly lowest among the other "
                    "shown responses (mean ratings); margin = the rating gap",
            "pairwise": "per response pair, the consensus winner vs loser; ties and both-bad dropped; margin = "
                        "(winner votes − loser votes) / votes",
            "ratings": ("every pair of rated responses whose mean ratings differ" if o.all_pairs else
                        "the best vs the worst mean-rated response (a shared best or worst is dropped)")
                       + "; margin = the rating gap"}[sig]
    if o.kind == "sft":
        base = {"best": "completion = the consensus best pick",
                "pairwise": "completion = the one response that wins a consensus pair and loses none",
                "ratings": "completion = the unique best mean-rated response"}[sig]
    if o.per_annotator and sig == "best" and o.kind != "sft":
        base = ("chosen = the annotator's best pick, rejected = the response that annotator rated strictly lowest "
                "among the other shown responses (ties, missing ratings and a lowest rating not below the pick's "
                "are skipped)")
    lines.append(f"From {who}: {base}.")
    if plan.source.kind == "consensus":
        lines.append(f"Kept only where `{c.model_method}` (judge `{c.model_judge}`) agrees: "
                     + ("its swap-consistent verdict names the chosen response." if c.score_column == "label" else
                        "its pick is the chosen response." if c.score_column == "response_id" else
                        f"its `{c.score_column}` ranks the chosen response strictly higher."))
    return lines


def policy_text(plan: Plan) -> list[str]:
    lines, c = _policy_lines(plan), plan.ctx
    if plan.consistency_judge is not None:
        lines.append(f"Consistency filter (CREAM): kept only where `{c.model_method}` by `{plan.consistency_judge}` "
                     f"also scores the chosen response strictly higher (its `{c.score_column}`, variants averaged); "
                     "ties skipped as consistency_tie, a missing score as consistency_no_score, the reverse order "
                     "as consistency_disagrees.")
    return lines


def recorded_file(db: Database, export_run_id: int) -> tuple[int | None, str] | None:
    """(study id, data file path) an export_run row recorded (None: no such export)."""
    row = db.fetchrow("SELECT study_id, out_path FROM export_run WHERE id = ?", [export_run_id])
    return (row["study_id"], row["out_path"]) if row else None
