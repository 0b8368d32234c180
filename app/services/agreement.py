"""The agreement report of a study: storage.analysis computes it; this layer supplies the method
table's mapping (which human question each model method is compared with) from the method classes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from app.services.context import AppContext, ServiceError
from app.services.exports import safe_stem
from backend.methods.registry import get_method
from backend.methods.table import HUMAN_QUESTION, METRICS
from storage import studies
from storage.analysis.judges import DEFAULT_THRESHOLD
from storage.analysis.report import METHOD_OF, interval_text
from storage.analysis.report import target_text as report_target_text
from storage.fileio import atomic_file

__all__ = ["interval_text"]  # the Agreement tab formats the report's intervals with it

Format = Literal["json", "md", "html"]


# Judgments only imported, never computed by a critlab method: a model's direct rating of one response on
# a scale (UltraFeedback, Label Studio and Argilla model ratings; docs/formats.md) ranks responses as a
# human rating does.
IMPORTED_METHODS = {"rating": ("likert", "rank", "value")}


def method_info(method: str) -> dict[str, str] | None:
    """compared_with / metric_family / score_column of a method id (None for an unknown method, e.g.
    an imported judge type)."""
    if method in IMPORTED_METHODS:
        compared, family, column = IMPORTED_METHODS[method]
        return {"method": method, "compared_with": compared, "metric_family": family, "score_column": column,
                "human_question": HUMAN_QUESTION[compared], "metrics": METRICS[family]}
    try:
        m = get_method(METHOD_OF.get(method, method))
    except KeyError:
        return None
    # str(): the report puts these in data frames, which read a Python enum member as an Enum dtype
    return {"method": m.id, "compared_with": str(m.compared_with), "metric_family": m.metric_family,
            "score_column": m.score_column, "human_question": HUMAN_QUESTION[m.compared_with],
            "metrics": METRICS[m.metric_family]}


def report(ctx: AppContext, study_name: str, *, stage: str = "blind", n_boot: int = 1000, seed: int = 0,
           annotator_models: bool = False, judges: bool = False, response_rankings: bool = False,
           pre_seed: int | None = None, pre_threshold: float = DEFAULT_THRESHOLD) -> dict:
    """The study's agreement report (`build_report`); `annotator_models` adds the Dawid–Skene and MACE fits,
    `judges` the judge × generator table and PRE (its exam drawn with `pre_seed`, default the study id, and
    passed at `pre_threshold`), `response_rankings` the per-prompt rankings of responses."""
    from storage.analysis.report import build_report

    if stage not in ("blind", "revealed"):
        raise ServiceError(f"stage must be blind or revealed, not {stage!r}")
    if not 0 < pre_threshold <= 1:  # a weight: a judge scoring 0 would vote with nothing
        raise ServiceError(f"the PRE threshold must be above 0 and at most 1, not {pre_threshold}")
    study = studies.get_study(ctx.db, study_name)
    return build_report(ctx.db, study.id, stage=stage, n_boot=n_boot, seed=seed, method_info=method_info,
                        annotator_models=annotator_models, judges=judges, response_rankings=response_rankings,
                        pre_seed=pre_seed, pre_threshold=pre_threshold)


def target_text(row: dict) -> str:
    """What a ppi or planning row of the report estimates, in the report's own words (for the tab's tables)."""
    return report_target_text(row)


def render(rep: dict, fmt: Format) -> str:
    import json

    from storage.analysis.report import report_html, report_markdown

    if fmt == "json":
        return json.dumps(rep, indent=2, ensure_ascii=False)
    if fmt == "md":
        return report_markdown(rep)
    if fmt == "html":
        return report_html(rep)
    raise ServiceError(f"format must be json, md or html, not {fmt!r}")


def report_file_name(study_name: str) -> str:
    """The downloadable report's file name: a study name may hold `/` or `..`, a file name may not.

    >>> report_file_name("team/a b"), report_file_name("../../etc/x")
    ('agreement-team_a_b.html', 'agreement-etc_x.html')
    """
    return f"agreement-{safe_stem(study_name)}.html"


def write(text: str, out: str) -> dict[str, Any]:
    """Write atomically (a temp file beside the target, then rename; removed if the disk is full)."""
    path = Path(out)
    with atomic_file(path) as (_, f):
        f.write(text.encode("utf-8"))
    return {"out": str(path), "bytes": path.stat().st_size}


def report_link(ctx: AppContext, user: str, rep: dict) -> dict[str, str]:
    """The report as one self-contained HTML file, offered to `user` (an admin) through /api/downloads/ for
    a while (app/services/downloads.py): its `url` and `filename`."""
    study = rep["study"]
    out = ctx.downloads.new_file(report_file_name(study["name"]))
    write(render(rep, "html"), str(out))
    url = ctx.downloads.offer(out, user, study_id=study["id"], media_type="text/html", single_use=False)
    return {"url": url, "filename": out.name}


class TabReport(BaseModel):
    """What the Agreement tab shows after Compute: the report, its Markdown, and the HTML file's link."""

    report: dict[str, Any]
    markdown: str
    url: str
    filename: str


def tab_report(ctx: AppContext, user: str, study_name: str, *, stage: str = "blind", n_boot: int = 1000,
               annotator_models: bool = False, judges: bool = False, response_rankings: bool = False,
               pre_seed: int | None = None, pre_threshold: float = DEFAULT_THRESHOLD) -> TabReport:
    """The report of a study with everything the Agreement tab renders of it (`user`: the admin the HTML
    download is offered to; the caller checked the role)."""
    rep = report(ctx, study_name, stage=stage, n_boot=n_boot, annotator_models=annotator_models, judges=judges,
                 response_rankings=response_rankings, pre_seed=pre_seed, pre_threshold=pre_threshold)
    link = report_link(ctx, user, rep)
    return TabReport(report=rep, markdown=render(rep, "md"), url=link["url"], filename=link["filename"])
