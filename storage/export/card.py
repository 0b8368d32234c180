"""The dataset card (`<stem>.card.md` beside the exported file, and README.md in the --hf-dir copy, a folder
critlab makes): Hugging Face YAML header with the features, then where the data came from, the pair policy
and filters, the counts, and the agreement of what was kept."""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from storage.export.schema import features_yaml

KIND_TITLES = {"dpo": "DPO preference pairs", "rm": "reward-model preference pairs (with margins)",
               "kto": "KTO unpaired examples", "sft": "best-of-N SFT examples",
               "judge": "judge preference pairs (Self-Rationalization)"}
LAYOUTS = {
    ("dpo", "conversational"): "TRL preference, explicit prompt, conversational (message lists)",
    ("dpo", "standard"): "TRL preference, explicit prompt, standard (prompt rendered with the chat template)",
    ("rm", "conversational"): "TRL preference, explicit prompt, conversational, plus `margin`",
    ("rm", "standard"): "TRL preference, explicit prompt, standard, plus `margin`",
    ("kto", "conversational"): "TRL unpaired preference (prompt, completion, label), conversational",
    ("kto", "standard"): "TRL unpaired preference (prompt, completion, label), standard",
    ("sft", "conversational"): "TRL prompt-completion, conversational",
    ("sft", "standard"): "TRL prompt-completion, standard",
    ("sft", "messages"): "TRL language modelling, conversational (`messages`)",
    ("judge", "conversational"): "TRL preference, explicit prompt, conversational (the judge's prompt)",
    ("judge", "standard"): "TRL preference, explicit prompt, standard (the judge's prompt)",
}


@dataclass
class Running:
    n: int = 0
    total: float = 0.0
    lo: float = math.inf
    hi: float = -math.inf

    def add(self, x: float | None) -> None:
        if x is None:
            return
        self.n += 1
        self.total += x
        self.lo, self.hi = min(self.lo, x), max(self.hi, x)

    def text(self, digits: int = 3) -> str:
        if not self.n:
            return "—"
        return f"mean {self.total / self.n:.{digits}f}, min {self.lo:.{digits}g}, max {self.hi:.{digits}g} (n = {self.n})"

    def as_dict(self) -> dict[str, Any]:
        return {"n": self.n, "mean": self.total / self.n if self.n else None,
                "min": self.lo if self.n else None, "max": self.hi if self.n else None}


@dataclass
class Stats:
    """Figures of the kept rows, accumulated while streaming (nothing per row is retained)."""

    kept: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    annotators_per_row: Running = field(default_factory=Running)
    agreement: Running = field(default_factory=Running)
    unanimous: int = 0
    margin: Running = field(default_factory=Running)
    margin_kinds: Counter[str] = field(default_factory=Counter)
    swap: Counter[str] = field(default_factory=Counter)
    labels: Counter[str] = field(default_factory=Counter)
    origins: Counter[str] = field(default_factory=Counter)
    off_policy: int = 0
    runs: Counter[int] = field(default_factory=Counter)
    models: Counter[str] = field(default_factory=Counter)
    annotators: set[str] = field(default_factory=set)
    model_checked: int = 0
    model_agreed: int = 0

    def add(self, meta: dict[str, Any], origins: list[tuple[int, str, int | None, str | None]]) -> None:
        self.kept += 1
        self.annotators_per_row.add(meta["n_annotators"])
        if meta["agreement"] is not None:
            self.agreement.add(meta["agreement"])
            self.unanimous += meta["agreement"] == 1.0
        self.margin.add(meta["margin"])
        if meta["margin_kind"]:
            self.margin_kinds[meta["margin_kind"]] += 1
        if meta["swap_consistent"] is not None:
            self.swap["consistent" if meta["swap_consistent"] else "inconsistent"] += 1
        if meta["label"] is not None:
            self.labels["true" if meta["label"] else "false"] += 1
        self.off_policy += bool(meta["off_policy"])
        self.annotators.update(meta["annotators"])
        for _, origin, run, model in origins:
            self.origins[origin] += 1
            if run is not None:
                self.runs[run] += 1
            if model is not None:
                self.models[model] += 1

    def counts(self) -> dict[str, Any]:
        return {"kept": self.kept, "skipped": dict(sorted(self.skipped.items(), key=lambda kv: (-kv[1], kv[0])))}

    def agreement_figures(self) -> dict[str, Any]:
        out: dict[str, Any] = {"annotators_per_row": self.annotators_per_row.as_dict(),
                               "agreement": self.agreement.as_dict(),
                               "unanimous_rows": self.unanimous, "distinct_annotators": len(self.annotators),
                               "margin": self.margin.as_dict(), "off_policy_rows": self.off_policy}
        if self.swap:
            out["swap_consistent_rows"] = self.swap["consistent"]
        if self.model_checked:
            out["human_model_agreement"] = self.model_agreed / self.model_checked
            out["human_model_checked"] = self.model_checked
        if self.labels:
            out["labels"] = {"true": self.labels["true"], "false": self.labels["false"]}
        return out


def render_card(*, file_name: str, schema: pa.Schema, kind: str, style: str, study: dict[str, Any],
                runs: list[dict[str, Any]], policy: list[str], filters: dict[str, Any], stats: Stats,
                content_hash: str, export_run_id: int | None, created: str, version: str,
                template_source: str | None, saved_copy: bool = False) -> str:
    """The card of the data file `file_name`; `saved_copy`: the README.md of its `save_to_disk` copy, whose
    header names that folder's Arrow shards."""
    q = json.dumps  # a JSON string is a valid YAML scalar, whatever the file name holds
    data_path = "data-*.arrow" if saved_copy else file_name
    rows_text = f"{stats.kept} row{'' if stats.kept == 1 else 's'}"
    fmt = "Parquet" if file_name.lower().endswith(".parquet") else "JSON Lines"
    unit = "pair" if kind in ("dpo", "rm", "judge") else "example"
    units = unit + ("" if stats.kept == 1 else "s")
    n_skipped = sum(stats.skipped.values())
    lines = [
        "---",
        "configs:",
        "- config_name: default",
        "  data_files:",
        "  - split: train",
        f"    path: {q(data_path)}",
        "dataset_info:",
        "  features:",
        features_yaml(schema, 2),
        "tags:",
        "- critlab",
        "- trl",
        f"- {kind}",
        "---",
        "",
        f"# {KIND_TITLES[kind]} from critlab study {q(study['name'])}",
        "",
        f"Exported by critlab {version} on {created} (UTC): **{stats.kept} {units}** kept, {n_skipped} skipped.",
        "",
        "| | |",
        "|---|---|",
        (f"| files | `data-*.arrow` (`datasets.save_to_disk` copy of `{file_name}`, {rows_text}) |" if saved_copy
         else f"| file | `{file_name}` ({fmt}, {rows_text}) |"),
        f"| content hash | sha256 `{content_hash}`" + (f" (of `{file_name}`)" if saved_copy else "") + " |",
        f"| export_run | {export_run_id if export_run_id is not None else '— (preview)'} |",
        f"| layout | {LAYOUTS[(kind, style)]} |",
        f"| columns | {', '.join(f'`{f.name}`' for f in schema)} |",
    ]
    if template_source:
        lines.append(f"| chat template | from `{template_source}` |")
    lines += ["", "## Source", "",
              f"- Study {q(study['name'])} (id {study['id']}), {study['prompts']} prompts"
              + (f": {study['description']}" if study.get("description") else ".")]
    if runs:
        lines += ["- Generation runs of the exported responses:", "",
                  "| run | engine | model | n | temperature | top_p | max_tokens | seed base | responses used |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in runs:
            lines.append(f"| {r['id']} | {r['engine']} | `{r['model_id']}` | {r['n']} | {r['temperature']} | "
                         f"{r['top_p']} | {r['max_tokens']} | {r['seed_base']} | {stats.runs.get(r['id'], 0)} |")
        lines.append("")
    else:
        lines.append("- No generation run: the exported responses were imported.")
    if stats.models:
        lines.append("- Models of the exported responses: "
                     + ", ".join(f"`{m}` ({n})" for m, n in stats.models.most_common()))
    if stats.origins:
        lines.append("- Response origins: " + ", ".join(f"{o} ({n})" for o, n in stats.origins.most_common())
                     + f"; rows flagged off-policy (`meta.off_policy`): {stats.off_policy}")
    lines += ["", "## Pair policy", "", *[f"- {p}" for p in policy], "", "## Filters", ""]
    lines += [f"- `{k}`: {v}" for k, v in filters.items()]
    lines += ["", "## Counts", "", "| | rows |", "|---|---|", f"| kept | {stats.kept} |"]
    for reason, n in stats.counts()["skipped"].items():
        lines.append(f"| skipped: `{reason}` | {n} |")
    fig = stats.agreement_figures()
    lines += ["", "## Agreement of the included data", "",
              f"- Annotators per row: {stats.annotators_per_row.text(2)}; distinct annotators: {len(stats.annotators)}",
              f"- Agreement (share of a row's annotators agreeing with its verdict): {stats.agreement.text()}"
              + (f"; unanimous rows: {stats.unanimous} of {stats.agreement.n}" if stats.agreement.n else "")]
    if stats.margin.n:
        lines.append(f"- Margin ({', '.join(stats.margin_kinds)}): {stats.margin.text()}")
    if "swap_consistent_rows" in fig:
        lines.append(f"- Pairwise verdicts that survived the order swap: {stats.swap['consistent']} of "
                     f"{sum(stats.swap.values())} rows")
    if "human_model_agreement" in fig:
        lines.append(f"- Human consensus and the model agree on {stats.model_agreed} of {stats.model_checked} "
                     f"human {unit}s checked ({fig['human_model_agreement']:.1%})")
    if stats.labels:
        lines.append(f"- Labels: {stats.labels['true']} true, {stats.labels['false']} false")
    load = (f'load_dataset("parquet", data_files="{file_name}", split="train")' if fmt == "Parquet"
            else f'load_dataset("json", data_files="{file_name}", split="train")')
    if saved_copy:
        lines += ["", "## Loading", "", "```python", "from datasets import load_from_disk", "",
                  "ds = load_from_disk(DIR)  # this folder", "```", ""]
    else:
        lines += ["", "## Loading", "", "```python", "from datasets import load_dataset", "",
                  f"ds = {load}", "```", "",
                  f"To publish it on the Hugging Face Hub (or load a folder with `load_dataset(DIR)`, typed by the "
                  f"features above), put `{file_name}` and this card, renamed `README.md`, in a folder of their own.",
                  ""]
    lines += ["Text is verbatim (never the sanitised rendering shown in critlab). `meta` has one fixed schema in "
              "every row; see critlab's docs/formats.md, \"Preference data exports\".", ""]
    return "\n".join(lines)
