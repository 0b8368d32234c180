"""An export's plan: the study, the policy's source and signal, the gold gate, the second judge, the chat
template; everything the rows need resolved before the first one is read (run.py streams them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from storage import gold, model_registry
from storage.db import Database
from storage.export.consensus import fit as fit_consensus
from storage.export.data import chunks, human_methods_present, model_judges
from storage.export.files import pseudonymizer
from storage.export.gate import ExportGate
from storage.export.methods import NO_METHODS, ExportMethods, Template
from storage.export.options import SIGNALS, ExportOptions, Source
from storage.export.policies import Ctx
from storage.export.pre import PreVote
from storage.export.schema import row_schema
from storage.models import HumanMethod, Study
from storage.studies import get_study

_H = HumanMethod
# The human judgments each export signal reads (ratings break ties and give margins), and those it needs.
HUMAN_METHODS = {"best": [_H.BEST, _H.RATING], "pairwise": [_H.PAIRWISE, _H.RATING], "ratings": [_H.RATING],
                 "correct": [_H.CORRECT], "checklist": [_H.CHECKLIST_ITEM]}
SIGNAL_NEEDS = {"best": (_H.BEST,), "pairwise": (_H.PAIRWISE,), "ratings": (_H.RATING,), "correct": (_H.CORRECT,),
                "checklist": (_H.CHECKLIST_ITEM,)}


@dataclass
class Plan:
    study: Study
    options: ExportOptions
    source: Source
    signal: str
    ctx: Ctx
    human_methods: list[str]
    schema: pa.Schema
    alias: Callable[[str], str]
    methods: ExportMethods = NO_METHODS
    template: Template | None = None
    consistency_judge: str | None = None  # --consistent-with: the second judge of ctx.model_method
    pre: PreVote | None = None  # --source pre:METHOD: the vote's weights and exam
    gate: ExportGate = ExportGate()

    @property
    def source_label(self) -> str:
        return self.source.label(self.ctx.model_judge)


def plan_export(db: Database, study: str | int, options: ExportOptions,
                methods: ExportMethods = NO_METHODS) -> Plan:
    s = get_study(db, study)
    src = options.parsed_source
    kind = options.kind
    if kind == "judge":  # the critiques are the model's; the human label is the signal
        src = Source("model", "critique", src.judge if src.kind == "model" else None)
    model_method = score_column = model_judge = None
    pre = None
    if src.kind == "pre":
        score_column = methods.score_column(src.method or "", options.source)
        pre = _pre_vote(db, s, src.method or "", options, methods)
        model_judge, model_method = pre.judge, src.method
    elif src.kind != "human":
        score_column = methods.score_column(src.method or "", options.source)
        if src.method == "gsa":
            raise ValueError("gsa writes one aggregate response per prompt and scores none; export the aggregate "
                             "with --include-origin aggregate under a human or selector policy")
        if score_column == "response_id" and src.kind == "model" and kind in ("dpo", "rm"):
            raise ValueError(f"{src.method} picks one response per prompt and scores none, so it makes no pairs; "
                             f"use it with sft (--source model:{src.method}) or as --source consensus:{src.method}")
        judges = model_judges(db, s.id, src.method or "")
        if src.judge is not None:
            if src.judge not in judges:
                raise ValueError(f"no current {src.method} verdicts by {src.judge!r} in study {s.name!r}"
                                 + (f"; judges: {', '.join(judges)}" if judges else ""))
            model_judge = src.judge
        elif len(judges) > 1:
            raise ValueError(f"study {s.name!r} has {src.method} verdicts by several judges ({', '.join(judges)}): "
                             f"name one, e.g. --source {src.kind}:{src.method}@{judges[0]}")
        elif not judges:
            raise ValueError(f"study {s.name!r} has no current {src.method} verdicts: run "
                             f"`critlab score --study {s.name} --methods {src.method}` (or import them) first")
        else:
            model_judge = judges[0]
        model_method = src.method
    gated = gold.gate(db, s.id, s.config.gold_min_accuracy)
    if src.kind in ("model", "pre") and kind != "judge":
        signal, human = model_method or "", []
    else:
        signal = _signal(db, s.id, options, gated.names)
        human = HUMAN_METHODS[signal]
    lo, hi = s.config.rating_scale
    ctx = Ctx(kind=kind, signal=signal, per_annotator=options.per_annotator, all_pairs=options.all_pairs,
              origins=options.origins(), kto_threshold=options.kto_threshold if options.kto_threshold is not None
              else (lo + hi) / 2, model_method=model_method, score_column=score_column, model_judge=model_judge)
    alias = (lambda name: name) if options.annotator_names else pseudonymizer(db)
    plan = Plan(s, options, src, signal, ctx, human, row_schema(kind, options.style), alias, methods,
                gate=ExportGate.of(db, s.id, gated, human))
    plan.pre = pre
    if options.consistent_with is not None:
        plan.consistency_judge = _consistency_judge(db, s, options.consistent_with, ctx)
    if options.consensus != "plurality":  # one EM fit over every vote of the signal, before the rows stream
        ctx.fitted = fit_consensus(chunks(db, s.id, human_methods=human, model_method=None, model_judge=None,
                                          leave_out=plan.gate.names), signal, options.consensus)
    if kind == "judge":
        methods.need("judge_chat")
        methods.need("critique_reply")
    if options.style == "standard":
        plan.template = _template(db, s, options, model_judge if kind == "judge" else None, methods)
    return plan


def _pre_vote(db: Database, s: Study, method: str, options: ExportOptions, methods: ExportMethods) -> PreVote:
    """PRE's exam of `method` as the report scores it (--pre-seed, default the study id; --pre-threshold)."""
    from storage.analysis.report.judges_section import pre_exam

    if methods.method_info is None:
        methods.need("method_info")
    seed = s.id if options.pre_seed is None else options.pre_seed
    exam = pre_exam(db, s.id, method, methods.method_info,  # type: ignore[arg-type]
                    seed=seed, threshold=options.pre_threshold)
    if not exam["weights"]:
        raise ValueError(f"no PRE vote for {method!r} in study {s.name!r}: "
                         f"{exam.get('reason') or 'no judge passed the exam'}")
    return PreVote(exam["judge"], dict(exam["weights"]), frozenset(exam["exam_prompt_ids"]), seed,
                   options.pre_threshold, {r["judge"]: (r["score"] or {}).get("value") for r in exam["exam"]})


def _consistency_judge(db: Database, s: Study, judge: str, ctx: Ctx) -> str:
    """The --consistent-with judge, once it is known to have scored with the source's method in this study."""
    if ctx.score_column not in ("value", "prob"):
        raise ValueError(f"--consistent-with compares per-response scores, and {ctx.model_method} has none "
                         f"({'pairwise verdicts' if ctx.score_column == 'label' else 'one pick per prompt'}): "
                         "use a scoring method in --source (e.g. judge_score, p_true, rubric)")
    if judge == ctx.model_judge:
        raise ValueError(f"--consistent-with {judge!r} is the source's own judge, which always agrees with "
                         "itself: name another model judge (e.g. the previous iteration)")
    judges = model_judges(db, s.id, ctx.model_method or "")
    if judge not in judges:
        raise ValueError(f"--consistent-with: no current {ctx.model_method} verdicts by {judge!r} in study "
                         f"{s.name!r}; judges: {', '.join(judges)}")
    return judge


def _signal(db: Database, study_id: int, options: ExportOptions, gated: list[str]) -> str:
    if options.signal != "auto":
        return options.signal
    present = human_methods_present(db, study_id, leave_out=gated)
    order = SIGNALS[options.kind]
    for sig in order:
        needs = SIGNAL_NEEDS[sig] + ((_H.RATING,) if sig == "best" and options.kind in ("dpo", "rm") else ())
        if all(m in present for m in needs):
            return sig
    return next((sig for sig in order if all(m in present for m in SIGNAL_NEEDS[sig])), order[0])


def _template(db: Database, study: Study, options: ExportOptions, judge: str | None,
              methods: ExportMethods) -> Template:
    """--chat-template when given, else the template recorded for the one model whose responses (or, for
    judge rows, whose verdicts) are exported."""
    if options.chat_template:
        methods.need("load_template")
        assert methods.load_template is not None
        return methods.load_template(options.chat_template)
    if judge is not None:
        models = {judge}
    else:
        models = {r[0] for r in db.fetchall(
            """SELECT DISTINCT coalesce(r.model_id, g.model_id) FROM response r JOIN prompt p ON p.id = r.prompt_id
               LEFT JOIN generation_run g ON g.id = r.run_id WHERE p.study_id = ? AND r.origin IN
               (SELECT unnest(?::VARCHAR[]))""", [study.id, sorted(options.origins())])}
    ask = ("give --chat-template PATH (the model's GGUF file, Hugging Face tokenizer directory or Jinja template "
           "file)")
    if len(models) != 1 or None in models:
        named = ", ".join(sorted(str(m) for m in models if m is not None))
        extra = " and responses of no recorded model" if None in models else ""
        raise ValueError(f"--style standard renders the prompt with the generating model's chat template, and study "
                         f"{study.name!r} has responses of {named or 'no recorded model'}{extra}: {ask}")
    (model_id,) = models
    m = model_registry.get_model(db, model_id)
    if m is None or not m.chat_template:
        raise ValueError(f"--style standard renders the prompt with the generating model's chat template, and none is "
                         f"recorded for {model_id} (an SGLang model served without --sglang-tokenizer, or a "
                         f"run stored before critlab recorded templates): {ask}")
    methods.need("template_from_text")
    assert methods.template_from_text is not None
    return methods.template_from_text(m.chat_template, dict(m.special_tokens),
                                      f"{model_id} (the template it ran with)")
