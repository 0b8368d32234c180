"""What an open page refreshes on its timer: the study lists of its pickers and, for admins, the studies
table and the jobs (every one that is queued or running, and the last ones that ended)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.services import live
from app.services.context import AppContext
from storage import annotators, jobs, members, model_registry, studies
from storage.models import Annotator, Job
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
    all_studies = studies.list_studies(ctx.db)
    mine = None if admin else members.studies_of(ctx.db, user)
    names = [s.name for s in all_studies if mine is None or s.id in mine]
    out = PageOverview(studies=names, live_studies=live.granted_studies(ctx, user))
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
    name: str | None = None
    quantisation: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None


def model_usage(ctx: AppContext) -> list[ModelUse]:
    """Which model each study's runs sampled with and which models judged its responses (admins only; the
    caller checked the role)."""
    return [ModelUse(**r) for r in model_registry.usage(ctx.db)]


def annotator_list(ctx: AppContext) -> list[Annotator]:
    """Everyone who can log in, in the order they were added (the Admin tab's table)."""
    return annotators.list_annotators(ctx.db)
