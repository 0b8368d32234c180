"""Preference-data exports as admin operations (CLI, admin API, Export tab): `export` writes the file, its
dataset card and an export_run row; `export_preview` counts what an export would keep and skip, and returns
the first rows, writing nothing. `EXPORT_OPS` is merged into `app.services.ops.OPS`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.services.context import AppContext, ServiceError
from storage.export import ExportOptions, export_dataset, preview_dataset
from storage.export.data import model_sources
from storage.export.options import IncludedOrigin, Signal
from storage.export.schema import Kind, Style
from storage.studies import get_study

EXPORTS_DIR = "exports"


class _ExportFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Kind = "dpo"
    study: str
    style: Style = "conversational"
    source: str = "human"
    signal: Signal = "auto"
    min_margin: float = Field(0.0, ge=0.0)
    min_annotators: int = Field(1, ge=1, le=1000)
    min_agreement: float = Field(0.0, ge=0.0, le=1.0)
    per_annotator: bool = False
    all_pairs: bool = False
    include_origin: list[IncludedOrigin] | str = Field(default_factory=lambda: ["sampled"])
    kto_threshold: float | None = None
    annotator_names: bool = False
    chat_template: str | None = None

    def options(self) -> ExportOptions:
        data = self.model_dump(exclude={"study", "out", "hf_dir", "rows"})
        try:
            return ExportOptions.model_validate(data)
        except ValidationError as e:
            raise ServiceError("; ".join(_short(err) for err in e.errors())) from None


class Export(_ExportFields):
    out: str
    hf_dir: str | None = None


class ExportPreview(_ExportFields):
    rows: int = Field(5, ge=0, le=100)


class ExportSources(BaseModel):
    model_config = ConfigDict(extra="forbid")
    study: str


def _short(err: dict[str, Any]) -> str:
    where = ".".join(str(x) for x in err.get("loc", ()) if x != "__root__")
    msg = str(err.get("msg", "")).removeprefix("Value error, ")
    return f"{where}: {msg}" if where else msg


def export(ctx: AppContext, user: str, p: Export) -> dict[str, Any]:
    try:
        r = export_dataset(ctx.db, p.study, p.out, p.options(), hf_dir=p.hf_dir)
    except ServiceError:
        raise
    except ValueError as e:
        raise ServiceError(str(e)) from e
    return r.model_dump(mode="json")


def export_preview(ctx: AppContext, user: str, p: ExportPreview) -> dict[str, Any]:
    try:
        r = preview_dataset(ctx.db, p.study, p.options(), n_rows=p.rows)
    except ServiceError:
        raise
    except ValueError as e:
        raise ServiceError(str(e)) from e
    return r.model_dump(mode="json")


def export_sources(ctx: AppContext, user: str, p: ExportSources) -> dict[str, Any]:
    """The `--source` values that fit the study: human, and model:/consensus: for each scored method."""
    from backend.methods.registry import get_method, method_ids

    study = get_study(ctx.db, p.study)
    rows = [r for r in model_sources(ctx.db, study.id) if r["method"] in method_ids() and r["method"] != "gsa"]
    several = {r["method"] for r in rows if sum(1 for x in rows if x["method"] == r["method"]) > 1}
    out = ["human"]
    for r in rows:
        name = r["method"] + (f"@{r['judge']}" if r["method"] in several else "")
        if get_method(r["method"]).score_column != "response_id":
            out.append(f"model:{name}")
        out.append(f"consensus:{name}")
    return {"study": study.name, "sources": list(dict.fromkeys(out)), "verdicts": rows}


def exports_dir(ctx: AppContext) -> Path:
    """Where the Export tab writes: `<database directory>/exports/`."""
    base = Path(ctx.db.path).resolve().parent if ctx.db.path != ":memory:" else Path.cwd()
    return base / EXPORTS_DIR


EXPORT_OPS: dict[str, tuple[type[BaseModel], Callable[[AppContext, str, Any], dict[str, Any]]]] = {
    "export": (Export, export),
    "export_preview": (ExportPreview, export_preview),
    "export_sources": (ExportSources, export_sources),
}
