"""What an open page refreshes on its timer: the study lists of its pickers and, for admins, the studies
table and the jobs (every one that is queued or running, and the last ones that ended)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from app.services import label_flow, labelling, live, ops
from app.services.context import AppContext
from app.services.label_flow import Step
from storage import annotators, jobs, members, model_registry, studies
from storage.members import NotMember
from storage.models import Annotator, Job, Study
from storage.studies import StudyCounts

RECENT_JOBS = 5  # ended jobs shown below the running ones


class JobLine(BaseModel):
    job: Job
    study: str | None  # None: the study was deleted, or the job has none


class PageOverview(BaseModel):
    # The studies this person may label (for an admin every study, which the Studies, Agreement and Export
    # pickers list too; for an annotator the studies they are a member of).
    studies: list[str]
    live_studies: list[str]  # the studies this person may use in the Live tab
    table: list[StudyCounts] = Field(default_factory=list)  # admins only
    running: list[JobLine] = Field(default_factory=list)  # admins only, oldest first
    ended: list[JobLine] = Field(default_factory=list)  # admins only, last ended first


def page_overview(ctx: AppContext, user: str, *, admin: bool, recent: int = RECENT_JOBS) -> PageOverview:
    """The lists `user`'s page shows; every study, the table and the jobs only when `admin` (the caller
    checked the role)."""
    return _overview(ctx, user, studies.list_studies(ctx.db), admin=admin, recent=recent)


def _overview(ctx: AppContext, user: str, all_studies: list[Study], *, admin: bool, recent: int) -> PageOverview:
    # Read once for both lists: every open page asks on its timer. The caller checked the role, which for an
    # annotator is what live.granted_studies would read again.
    mine = None if admin else members.studies_of(ctx.db, user)
    names = [s.name for s in all_studies if mine is None or s.id in mine]
    out = PageOverview(studies=names, live_studies=live.granted_of(all_studies, mine))
    if admin:
        by_id = {s.id: s.name for s in all_studies}
        active, ended = jobs.active_and_recent(ctx.db, recent)
        out.table = studies.study_counts(ctx.db)
        out.running = [JobLine(job=j, study=by_id.get(j.study_id)) for j in active]  # type: ignore[arg-type]
        out.ended = [JobLine(job=j, study=by_id.get(j.study_id)) for j in ended]  # type: ignore[arg-type]
    return out


def study_names(ctx: AppContext) -> list[str]:
    """Every study's name, oldest first (the admins' study pickers; the caller checked the role)."""
    return [s.name for s in studies.list_studies(ctx.db)]


class ModelUse(BaseModel):
    study: str
    role: str  # "run #3 (batch, embedded)" or "judge of 5 method(s)"
    model_id: str
    quantisation: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    parent_model_id: str | None = None  # lineage (m027): trained from this model ...
    trained_on_export_id: int | None = None  # ... on this export run
    iteration: int | None = None  # steps from the family's root; None: a model the registry does not know


def model_usage(ctx: AppContext) -> list[ModelUse]:
    """Which model each study's runs sampled with and which models judged its responses (admins only; the
    caller checked the role)."""
    return [ModelUse(**r) for r in model_registry.usage(ctx.db)]


def annotator_list(ctx: AppContext) -> list[Annotator]:
    """Everyone who can log in, in the order they were added (the Admin tab's table)."""
    return annotators.list_annotators(ctx.db)


class PageLoad(BaseModel):
    """What a page shows when it opens."""

    overview: PageOverview
    first: str | None  # the study the pickers open: the first with work left for this person
    live_first: str | None  # `first` when this person may use it in the Live tab
    live_prompts: list[str]  # the prompts of `live_first`, for the Live tab's picker
    models: list[ModelUse] = Field(default_factory=list)  # admins only
    people: list[dict[str, Any]] = Field(default_factory=list)  # admins only: the list_annotators operation's rows
    label: Step | None = None  # the Label tab's first item, as label_flow.open_study gives it for `first`
    label_refused: str | None = None  # instead of `label`: removed from `first`'s members since it was listed
    # The demo-model banner: None = not shown; else the studies it names (see demo_studies).
    demo_model: list[str] | None = None


def demo_studies(ctx: AppContext, all_studies: list[Study], visible: list[str]) -> list[str] | None:
    """Whether this person's page warns that the bundled demo model's output carries no signal, and for
    which of their studies: those holding responses or model judgments of the bundled model, and, when
    the server runs the bundled model, those with none yet (their first would come from it), or a page
    with no study at all. None: no warning (an imported study on a server that merely runs the demo model,
    or any study on a real model)."""
    engine_bundled = ctx.default_engine.is_bundled()
    if not engine_bundled and not model_registry.has_bundled(ctx.db):
        return None  # no demo model anywhere: spare every page load bundled_use's scan of all rows
    use = model_registry.bundled_use(ctx.db)
    names = [s.name for s in all_studies if s.name in visible
             and (use.get(s.id) or (engine_bundled and use.get(s.id, None) is None))]
    return names if names or (engine_bundled and not visible) else None


def page_load(ctx: AppContext, user: str, *, admin: bool) -> PageLoad:
    """Everything `user`'s page opens with; the admin parts only when `admin` (the caller checked the role)."""
    every = studies.list_studies(ctx.db)  # once, for the overview and the people's studies
    ov = _overview(ctx, user, every, admin=admin, recent=RECENT_JOBS)
    first = next((n for n in ov.studies if labelling.has_work(ctx, user, n)), ov.studies[0] if ov.studies else None)
    live_first = first if first in ov.live_studies else None
    out = PageLoad(overview=ov, first=first, live_first=live_first,  # live_first is one of the granted studies
                   live_prompts=live.prompt_ids(ctx, studies.get_study(ctx.db, live_first)) if live_first else [],
                   demo_model=demo_studies(ctx, every, ov.studies))
    if admin:
        out.models = model_usage(ctx)
        out.people = ops.people(ctx, every)
    try:
        out.label = label_flow.open_study(ctx, user, first)
    except NotMember as e:
        out.label_refused = str(e)
    return out
