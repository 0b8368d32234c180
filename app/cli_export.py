"""`critlab export dpo|rm|kto|sft|judge`: preference data that TRL and `datasets` load as is.

Registered on the CLI's `export` group by `add_export_commands(export, call, db_option)`; every command
sends the `export` operation (locally, or to the server that holds the database).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import click

SUMMARY_KEYS = ("rows", "skipped", "signal", "source", "out_path", "card_path", "content_hash", "hf_dir",
                "export_run_id")

KIND_HELP = {
    "dpo": """Write DPO preference pairs: prompt, chosen, rejected (TRL's explicit-prompt preference format).

    \b
    Default policy (--source human): one pair per prompt from the human consensus (the plurality
    label when it is a unique mode, over the current blind labels). The signal is the first the
    study has (--signal auto): best-of-N picks (consensus pick vs the other shown response with the
    strictly lowest mean rating), pairwise votes (consensus winner vs loser per response pair; ties
    and both-bad dropped) or ratings (best vs worst mean rating; --all-pairs: every pair whose means
    differ by at least --min-margin). --per-annotator gives one pair per (prompt, annotator) instead:
    with best picks, the annotator's pick vs the response they rated strictly lowest.
    --source model:METHOD pairs the highest- vs lowest-scored response of a self-scoring method
    (self-rewarding; pairwise: only verdicts that survived the order swap); --source
    consensus:METHOD keeps the human pairs the method agrees with. --consistent-with JUDGE (a model
    judge id; model and consensus sources) keeps only pairs on which JUDGE's own scores of the same
    method also rank chosen strictly above rejected (CREAM's consistency filter, e.g. the previous
    iteration's judge); ties and missing scores are skipped with their reason. --source pre:METHOD
    votes with every judge of METHOD (PRE, Chu et al. 2024): judges whose agreement with the humans
    on a seeded 30% exam of the labelled prompts (seed = the study id) is at least 0.5 vote, weighted
    by it (pairwise: largest summed weight, a shared largest a tie; scores: weighted mean); the exam
    prompts are skipped (pre_exam), as their labels chose the weights.

    Skipped units are counted by reason. Each row carries `meta` (provenance: prompt and response
    ids, origins, votes, ratings, scores, margin, swap consistency, pseudonymised annotators) and
    the export writes a dataset card (FILE's stem + .card.md) beside the file.""",
    "rm": """Write reward-model pairs: DPO's pairs plus a `margin` column.

    The margin is the rating gap (best picks, ratings), the vote-share gap (pairwise votes), or the
    score / probability gap of a model source; pairs without one are skipped (no_margin). Same
    policies and flags as `critlab export dpo`.""",
    "kto": """Write KTO unpaired examples: prompt, completion, label (true = desirable).

    \b
    One example per response from human labels (--signal auto picks the first the study has):
      correct    the consensus of correct / incorrect labels;
      checklist  true when every checklist item is answered YES, false on any NO;
      ratings    the mean rating against --kto-threshold (default: the scale's midpoint);
                 above: true, below: false, equal: skipped (at_threshold).
    --per-annotator gives one example per (response, annotator).""",
    "sft": """Write best-of-N SFT examples: prompt + the chosen completion.

    The chosen response comes from the same policies as dpo (consensus best pick, the unique best
    mean rating, the one response that wins a pairwise comparison and loses none, or the best score /
    pick of --source model:METHOD, including selectors such as select_usc). --style messages writes
    one `messages` list instead of prompt + completion.""",
    "judge": """Write judge-training pairs from the model's own critiques (Self-Rationalization).

    For each response with two or more sampled critiques (method `critique`, variants s0, s1, ...):
    chosen = a critique whose verdict agrees with the human correct/incorrect label (consensus, or
    each annotator's with --per-annotator), rejected = one that disagrees. The prompt is the
    critique method's own chat; the completions are the critiques (JSON: critique, verdict,
    first_error). --source model:critique@JUDGE picks the critiquing model when there are several.""",
}


def export_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option("--study", required=True, help="Study to export."),
        click.option("--out", required=True, type=click.Path(dir_okay=False),
                     help="Output file: .jsonl or .parquet. Its dataset card is written beside it as "
                          "STEM.card.md (pairs.jsonl: pairs.card.md); an existing file or card is refused "
                          "unless --overwrite, and no other file in the folder is touched."),
        click.option("--overwrite", is_flag=True,
                     help="Replace an existing --out file and its card (an earlier export; nothing else)."),
        click.option("--style", type=click.Choice(["conversational", "standard", "messages"]),
                     default="conversational", show_default=True,
                     help="conversational: message lists; standard: strings, the prompt rendered with the "
                          "generating model's chat template; messages: one chat list (sft only)."),
        click.option("--source", default="human", show_default=True,
                     metavar="human|model:METHOD|consensus:METHOD|pre:METHOD",
                     help="Where preferences come from: human labels, a self-scoring method (METHOD or "
                          "METHOD@JUDGE), only where both agree, or PRE's weighted vote of every judge of "
                          "METHOD (dpo, rm, sft; the exam prompts are not exported)."),
        click.option("--signal", type=click.Choice(["auto", "best", "pairwise", "ratings", "correct", "checklist"]),
                     default="auto", show_default=True,
                     help="Which human labels: auto = the first the study has (dpo/rm/sft: best, pairwise, "
                          "ratings; kto: correct, checklist, ratings; judge: correct)."),
        click.option("--min-margin", type=click.FloatRange(0), default=0.0, show_default=True,
                     help="Drop pairs whose margin (rating, vote-share or score gap) is below this."),
        click.option("--min-annotators", type=click.IntRange(1, 1000), default=1, show_default=True,
                     help="Drop rows with fewer human annotators behind them."),
        click.option("--min-agreement", type=click.FloatRange(0, 1), default=0.0, show_default=True,
                     help="Drop rows where fewer than this share of the annotators agree with the row's verdict."),
        click.option("--consensus", type=click.Choice(["plurality", "dawid_skene", "mace"]), default="plurality",
                     show_default=True,
                     help="How a unit's human consensus is reached (best, pairwise and correct signals): the "
                          "plurality (a unique mode), or the argmax of a Dawid-Skene or MACE annotator model "
                          "fitted over every vote of the signal, which weighs down annotators who disagree with "
                          "the others throughout (a spammer pair can then lose to one careful annotator)."),
        click.option("--pre-seed", type=int, default=None,
                     help="--source pre:METHOD: the seed that draws PRE's exam prompts (default: the study id, as "
                          "in `critlab agreement --judges`)."),
        click.option("--pre-threshold", type=click.FloatRange(0, 1, min_open=True), default=0.5, show_default=True,
                     help="--source pre:METHOD: the exam score (agreement with the humans) a judge needs to vote."),
        click.option("--per-annotator", is_flag=True,
                     help="One row per (unit, annotator) from each person's own labels, not the consensus."),
        click.option("--all-pairs", is_flag=True,
                     help="Ratings (dpo, rm): every pair of responses whose mean ratings differ, not best vs worst."),
        click.option("--include-origin", default="sampled", show_default=True, metavar="LIST",
                     help="Comma-separated response origins to export: sampled (the study's own responses, "
                          "imported ones included), revision, aggregate, reference. Others are flagged "
                          "off-policy in meta."),
        click.option("--kto-threshold", type=float, default=None,
                     help="kto from ratings: desirable above, undesirable below (default: the scale's midpoint)."),
        click.option("--hf-dir", type=click.Path(file_okay=False),
                     help="Also write a datasets.save_to_disk directory here, with the card as README.md (needs "
                          "the datasets package; an earlier one is replaced, any other non-empty directory "
                          "refused)."),
        click.option("--consistent-with", metavar="JUDGE", default=None,
                     help="dpo, rm with a model or consensus --source: keep only pairs that model judge's scores "
                          "of the same method rank the same way (chosen strictly above rejected; a tie or a "
                          "missing score is skipped as consistency_tie / consistency_no_score, the reverse as "
                          "consistency_disagrees). CREAM's consistency-filtered self-rewarding data."),
        click.option("--annotator-names", is_flag=True, help="Write annotator names instead of pseudonyms."),
        click.option("--chat-template", type=click.Path(exists=True),
                     help="--style standard: a GGUF file or Hugging Face tokenizer directory whose chat template "
                          "renders the prompt (default: the embedded model's, for studies it generated)."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def add_export_commands(export_group: click.Group, call: Callable[[str, str, dict[str, Any]], dict[str, Any]],
                        db_option: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """Register `dpo`, `rm`, `kto`, `sft` and `judge` on the `export` group."""
    for kind in ("dpo", "rm", "kto", "sft", "judge"):
        export_group.add_command(_command(kind, call, db_option))


def _command(kind: str, call: Callable[[str, str, dict[str, Any]], dict[str, Any]],
             db_option: Callable[[Callable[..., Any]], Callable[..., Any]]) -> click.Command:
    def run(db_path: str, out: str, hf_dir: str | None, chat_template: str | None, **kw: Any) -> None:
        payload = {"kind": kind, **kw, "out": os.path.abspath(out),
                   "hf_dir": os.path.abspath(hf_dir) if hf_dir else None,
                   "chat_template": os.path.abspath(chat_template) if chat_template else None}
        r = call(db_path, "export", payload)
        click.echo(r["message"])
        summary = {k: r[k] for k in SUMMARY_KEYS if r.get(k) is not None}
        gate = r.get("gated") or {}
        if gate.get("annotators") or gate.get("gold_items"):  # what the gold gate left out (storage.gold)
            summary["gated"] = gate
        click.echo(json.dumps(summary, indent=2))

    run.__doc__ = KIND_HELP[kind]
    return click.command(kind)(db_option(export_options(run)))
