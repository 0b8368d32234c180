"""The Export tab (admins only; every handler checks the role again server-side): choose a kind, a style and
a pair policy, preview what would be kept and skipped (and the first rows), export into a folder of its
own under `<db dir>/exports/` and download one .zip of the data file and its dataset card (through the server's
admin-only download route, not Gradio's file route). Texts in the preview are plain strings in a Dataframe
(never HTML)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from app.render import md_literal
from app.services import exports, overview
from app.services.context import AppContext, ServiceError
from app.ui.errors import USER_ERRORS, shown_errors, warning
from app.ui.tables import NO_COPY

CELL_CHARS = 400
PREVIEW_ROWS = 5
PREVIEW_HEADERS = ["prompt", "chosen / completion", "rejected / label", "margin", "annotators", "agreement", "meta"]
# Opens a same-origin URL as a download in this tab (the server names the file in Content-Disposition).
DOWNLOAD_JS = """(url) => {
  if (!url) return;
  const a = document.createElement('a');
  a.href = url; a.download = ''; a.style.display = 'none';
  document.body.appendChild(a); a.click(); a.remove();
}"""
CONSISTENT_KINDS = ("dpo", "rm")  # the kinds --consistent-with filters (storage/export/options.py)
# The reasons the consistency filter drops a pair for, as the counts' sentence names them.
CONSISTENCY_REASONS = (("consistency_disagrees", "ranked the other way"), ("consistency_tie", "tied"),
                       ("consistency_no_score", "without a score from it"))
# Shares of the table's width: sized from its contents, the 400-character prompt column took the whole
# width and hid the others.
PREVIEW_WIDTHS = ["19%", "19%", "19%", "7%", "10%", "10%", "16%"]


@dataclass
class ExportTab:
    study: gr.Dropdown


def _clip(text: Any, n: int = CELL_CHARS) -> str:
    s = "" if text is None else str(text)
    return s if len(s) <= n else s[:n] + "…"


def _text(value: Any) -> str:
    """A conversational value (message list) or a standard string as plain text."""
    if isinstance(value, list):
        return "\n".join(f"[{m.get('role')}] {m.get('content')}" for m in value if isinstance(m, dict))
    return "" if value is None else str(value)


def preview_table(first_rows: list[dict[str, Any]]) -> list[list[str]]:
    """The first rows as plain strings (what a person checks before training on them)."""
    out = []
    for row in first_rows:
        meta = row.get("meta", {})
        prompt = row.get("prompt", row.get("messages", [])[:-1] if "messages" in row else "")
        chosen = row.get("chosen", row.get("completion", row.get("messages", [{}])[-1:] if "messages" in row else ""))
        other = row["rejected"] if "rejected" in row else row.get("label", "")
        out.append([_clip(_text(prompt)), _clip(_text(chosen)), _clip(_text(other)),
                    "" if meta.get("margin") is None else f"{meta['margin']:.3g}",
                    "" if meta.get("n_annotators") is None else str(meta["n_annotators"]),
                    "" if meta.get("agreement") is None else f"{meta['agreement']:.2f}",
                    _clip(f"prompt {meta.get('prompt_id')} · responses {meta.get('response_ids')} · "
                          f"signal {meta.get('signal')} · source {meta.get('source')}")])
    return out


def consistency_line(skipped: dict[str, int], judge: str) -> str:
    """What the consistency filter (--consistent-with `judge`: a model judge id, text from the database,
    escaped) dropped, zeros included, so a filter that dropped nothing is seen to have run.

    >>> print(consistency_line({"consistency_tie": 1}, "it_0"))
    Consistency filter (*it\\_0* must rank chosen above rejected too): dropped 0 ranked the other way, 1 tied, 0 without a score from it.
    """
    dropped = ", ".join(f"{skipped.get(k, 0)} {what}" for k, what in CONSISTENCY_REASONS)
    return f"Consistency filter (*{md_literal(judge)}* must rank chosen above rejected too): dropped {dropped}."


def counts_markdown(r: dict[str, Any], consistent_with: str | None = None) -> str:
    """Kept and skipped by reason (reason names are critlab's own words; the study name is escaped), and with
    `consistent_with` the filter's line (`consistency_line`)."""
    study = r["study"].replace("`", "'")
    lines = [(f"**{r['message'].split(' written to ')[0]}** — study `{study}`, kind {r['kind']}, "
              f"signal `{r['signal']}`, source `{r['source'].replace('`', chr(39))}`"), "",
             "| | rows |", "|---|---|", f"| kept | {r['rows']} |"]
    lines += [f"| skipped: {reason} | {n} |" for reason, n in r["skipped"].items()]
    agr = r.get("agreement") or {}
    a = agr.get("agreement") or {}
    if a.get("n"):
        lines += ["", (f"Agreement of the kept rows: mean {a['mean']:.2f}, min {a['min']:.2f}; "
                       f"unanimous {agr.get('unanimous_rows', 0)} of {a['n']}.")]
    if "human_model_agreement" in agr:
        lines.append(f"Human consensus and model agree on {agr['human_model_agreement']:.0%} of "
                     f"{agr['human_model_checked']} checked.")
    if consistent_with:
        lines += ["", consistency_line(r["skipped"], consistent_with)]
    return "\n".join(lines)


def build(ctx: AppContext, admin_of: Callable[[gr.Request], str]) -> ExportTab:
    gr.Markdown("### Export preference data\n"
                "Files load as is in Hugging Face `datasets` and TRL; each comes with a dataset card "
                "(`<name>.card.md`) stating its provenance, and the download is one .zip of both. See "
                "docs/formats.md, \"Preference data exports\".")
    with gr.Row():
        study = gr.Dropdown(label="Study", choices=[], elem_id="export-study")
        kind = gr.Radio(["dpo", "rm", "kto", "sft", "judge"], value="dpo", label="Kind", elem_id="export-kind")
        style = gr.Radio(["conversational", "standard", "messages"], value="conversational", label="Style",
                         elem_id="export-style")
        fmt = gr.Radio(["jsonl", "parquet"], value="jsonl", label="File", elem_id="export-format")
    with gr.Row():
        source = gr.Dropdown(label="Source (human, model:METHOD, consensus:METHOD)", choices=["human"],
                             value="human", allow_custom_value=True, elem_id="export-source")
        signal = gr.Dropdown(["auto", "best", "pairwise", "ratings", "correct", "checklist"], value="auto",
                             label="Human signal", elem_id="export-signal")
        origins = gr.CheckboxGroup(["sampled", "revision", "aggregate", "reference"], value=["sampled"],
                                   label="Response origins", elem_id="export-origins")
    with gr.Row():
        min_annotators = gr.Number(value=1, precision=0, minimum=1, label="Min annotators",
                                   elem_id="export-min-annotators")
        min_agreement = gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="Min agreement",
                                  elem_id="export-min-agreement")
        min_margin = gr.Number(value=0.0, minimum=0.0, label="Min margin", elem_id="export-min-margin")
        kto_threshold = gr.Textbox(value="", label="KTO rating threshold (blank = scale midpoint)",
                                   elem_id="export-kto-threshold")
    with gr.Row():
        per_annotator = gr.Checkbox(label="One row per annotator", elem_id="export-per-annotator")
        all_pairs = gr.Checkbox(label="All rating pairs (dpo/rm)", elem_id="export-all-pairs")
        names = gr.Checkbox(label="Annotator names (not pseudonyms)", elem_id="export-names")
        consensus = gr.Dropdown(["plurality", "dawid_skene", "mace"], value="plurality",
                                label="Consensus (best, pairwise, correct)", elem_id="export-consensus")
    # CREAM's consistency filter (--consistent-with): dpo and rm only, so shown for those kinds.
    consistent = gr.Dropdown(label="Consistent with model judge (dpo/rm from a model: or consensus: source; "
                                   "blank = no filter)", choices=[], value=None, allow_custom_value=True,
                             elem_id="export-consistent-with")
    with gr.Row():
        preview_btn = gr.Button("Preview", elem_id="export-preview")
        export_btn = gr.Button("Export", variant="primary", elem_id="export-write")
    counts = gr.Markdown(elem_id="export-counts")
    table = gr.Dataframe(headers=PREVIEW_HEADERS, datatype=["str"] * len(PREVIEW_HEADERS), interactive=False,
                         buttons=NO_COPY, wrap=True, column_widths=PREVIEW_WIDTHS, elem_classes=["fit-table"],
                         elem_id="export-preview-table")
    status = gr.Markdown(elem_id="export-status")
    # The download goes through the server's own route (/api/downloads/..., admins only), never Gradio's file
    # route: the button asks for a fresh one-time link, which the script below opens as a download.
    download = gr.Button("Download .zip (data file and card)", visible=False, elem_id="export-download")
    download_url = gr.Textbox(visible=False, elem_id="export-download-url")
    exported = gr.State(None)  # this page's last export (its export_run id), kept on the server

    form = [study, kind, style, source, signal, origins, min_annotators, min_agreement, min_margin, kto_threshold,
            per_annotator, all_pairs, names, consensus, consistent]

    def payload(study_: str | None, kind_: str, style_: str, source_: str | None, signal_: str,
                origins_: list[str], min_ann: float | None, min_agr: float, min_mar: float | None, kto: str,
                per: bool, allp: bool, names_: bool, cons: str, consistent_: str | None) -> dict[str, Any]:
        if not study_:
            raise ServiceError("choose a study first")
        try:
            threshold = float(kto) if kto and kto.strip() else None
        except ValueError:
            raise ServiceError(f"the KTO threshold must be a number, not {kto!r}") from None
        return {"study": study_, "kind": kind_, "style": style_, "source": (source_ or "human").strip(),
                "signal": signal_, "include_origin": origins_ or [], "min_annotators": int(min_ann or 1),
                "min_agreement": float(min_agr or 0), "min_margin": float(min_mar or 0), "kto_threshold": threshold,
                "per_annotator": bool(per), "all_pairs": bool(allp), "annotator_names": bool(names_),
                "consensus": cons or "plurality",
                # Hidden for the other kinds: a value left there from a dpo export is not asked for.
                "consistent_with": (consistent_ or "").strip() or None if kind_ in CONSISTENT_KINDS else None}

    @shown_errors(2)
    def do_preview(study_: str | None, kind_: str, style_: str, source_: str | None, signal_: str,
                   origins_: list[str], min_ann: float | None, min_agr: float, min_mar: float | None, kto: str,
                   per: bool, allp: bool, names_: bool, cons: str, consistent_: str | None,
                   request: gr.Request) -> tuple[str, Any]:
        user = admin_of(request)
        data = payload(study_, kind_, style_, source_, signal_, origins_, min_ann, min_agr, min_mar, kto, per, allp,
                       names_, cons, consistent_)
        r = exports.export_preview(ctx, user, exports.ExportPreview.model_validate({**data, "rows": PREVIEW_ROWS}))
        return counts_markdown(r, data["consistent_with"]), preview_table(r["first_rows"])

    @shown_errors(3)
    def do_export(study_: str | None, kind_: str, style_: str, source_: str | None, signal_: str,
                  origins_: list[str], min_ann: float | None, min_agr: float, min_mar: float | None, kto: str,
                  per: bool, allp: bool, names_: bool, cons: str, consistent_: str | None, fmt_: str,
                  request: gr.Request) -> tuple[Any, ...]:
        user = admin_of(request)
        data = payload(study_, kind_, style_, source_, signal_, origins_, min_ann, min_agr, min_mar, kto, per, allp,
                       names_, cons, consistent_)
        r = exports.export_download(ctx, user, exports.ExportDownload.model_validate({**data, "format": fmt_}))
        text = (f"{r['message'].split(' written to ')[0]} written to `{r['rel_path']}` beside the database, with "
                f"its card `{Path(r['card_path']).name}` (export_run #{r['export_run_id']}; sha256 "
                f"`{r['content_hash'][:16]}…`). The download holds both.")
        if data["consistent_with"]:
            text += "\n\n" + consistency_line(r["skipped"], data["consistent_with"])
        return text, r["export_run_id"], gr.Button(f"Download {Path(r['out_path']).stem}.zip", visible=True)

    def do_download(run_id: int | None, request: gr.Request) -> tuple[Any, str]:
        """(status, the download's URL or "" when there is none: the script below then does nothing)."""
        try:
            user = admin_of(request)
            if run_id is None:
                raise ServiceError("export first")
            r = exports.download_link(ctx, user, run_id)
        except USER_ERRORS as e:
            return warning(e), ""
        return gr.skip(), r["url"]

    def studies_list(request: gr.Request) -> Any:
        try:
            admin_of(request)
        except USER_ERRORS:
            return gr.skip()
        return gr.Dropdown(choices=overview.study_names(ctx))

    def sources_list(study_: str | None, request: gr.Request) -> tuple[Any, Any]:
        """The study's sources, and its model judges for the consistency filter."""
        try:
            admin_of(request)
            if not study_:
                return gr.Dropdown(choices=["human"], value="human"), gr.Dropdown(choices=[], value=None)
            r = exports.export_sources(ctx, "ui", exports.ExportSources(study=study_))
        except USER_ERRORS:
            return gr.skip(), gr.skip()
        return gr.Dropdown(choices=r["sources"], value="human"), gr.Dropdown(choices=r["judges"], value=None)

    def show_consistent(kind_: str, request: gr.Request) -> Any:
        admin_of(request)
        return gr.Dropdown(visible=kind_ in CONSISTENT_KINDS)

    study.focus(studies_list, None, [study], api_visibility="private")
    study.change(sources_list, [study], [source, consistent], api_visibility="private")
    kind.change(show_consistent, [kind], [consistent], api_visibility="private", show_progress="hidden")
    preview_btn.click(do_preview, form, [counts, table], api_visibility="private")
    export_btn.click(do_export, [*form, fmt], [status, exported, download], api_visibility="private")
    download.click(do_download, [exported], [status, download_url], api_visibility="private").then(
        None, [download_url], None, js=DOWNLOAD_JS)
    return ExportTab(study)
