"""Preference-data exports as admin operations (CLI, admin API, Export tab): `export` writes the file, its
dataset card and an export_run row; `export_preview` counts what an export would keep and skip, and returns
the first rows, writing nothing; `export_download` is the Export tab's export (a new folder under
`<db dir>/exports/`), and `download_link` offers one .zip of its data file and card to the admin's browser
(app/services/downloads.py). `EXPORT_OPS` is merged into `app.services.ops.OPS`."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from copy import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from app.services.context import AppContext, ServiceError
from app.services.paths import OptionalReadPath, OptionalWritePath, WritePath
from backend.engines.chat_template import load_chat_template
from storage import model_registry
from storage.export import ExportOptions, Source, export_dataset, preview_dataset
from storage.export.data import model_sources
from storage.export.files import card_path, zip_export
from storage.export.methods import ExportMethods, Messages
from storage.export.options import IncludedOrigin
from storage.export.run import recorded_file
from storage.studies import get_study

EXPORTS_DIR = "exports"


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def options(self) -> ExportOptions:
        """The ExportOptions of this payload; what does not fit together (or names an unknown method) is a
        ServiceError naming it."""
        from backend.methods.registry import method_ids

        data = self.model_dump(include=set(ExportOptions.model_fields))
        try:
            method = Source.parse(data["source"]).method
        except ValueError:
            method = None  # ExportOptions says what is wrong with it
        if method is not None and method not in method_ids():
            raise ServiceError(f"unknown method {method!r} in source {data['source']!r}; "
                               f"known: {', '.join(method_ids())}")
        try:
            return ExportOptions.model_validate(data)
        except ValidationError as e:
            raise ServiceError("; ".join(_short(err) for err in e.errors())) from None


def _option_fields() -> dict[str, Any]:
    """ExportOptions' fields with their defaults and bounds, for the payloads. Only the fields: the checks
    across fields run in `options()`, so they answer as a ServiceError. `include_origin` also takes the
    comma-separated text the CLI sends, and `chat_template` names a file a web session may only read from
    its upload folder (app/services/paths.py)."""
    fields: dict[str, Any] = {name: (f.annotation, copy(f)) for name, f in ExportOptions.model_fields.items()}
    fields["include_origin"] = (list[IncludedOrigin] | str, copy(ExportOptions.model_fields["include_origin"]))
    fields["chat_template"] = (OptionalReadPath, None)  # a GGUF file, tokenizer directory or Jinja file
    return fields


_ExportFields = create_model("_ExportFields", __base__=_Payload, study=(str, ...), **_option_fields())


class Export(_ExportFields):
    out: WritePath
    hf_dir: OptionalWritePath = None
    overwrite: bool = False  # replace an earlier data file and card at `out` (never anything else)


class ExportDownload(_ExportFields):
    format: Literal["jsonl", "parquet"] = "jsonl"


class ExportPreview(_ExportFields):
    rows: int = Field(5, ge=0, le=100)


class ExportDpo(BaseModel):
    """The first DPO export's operation, kept for the scripts that send it: `export` with kind dpo, signal best
    and per_annotator (one pair per prompt and annotator: the pick vs the response that annotator rated
    strictly lowest), so it writes the same files, card and export_run row as that export."""

    model_config = ConfigDict(extra="forbid")
    study: str
    out: WritePath
    overwrite: bool = False


class ExportSources(BaseModel):
    model_config = ConfigDict(extra="forbid")
    study: str


def _short(err: dict[str, Any]) -> str:
    where = ".".join(str(x) for x in err.get("loc", ()) if x != "__root__")
    msg = str(err.get("msg", "")).removeprefix("Value error, ")
    return f"{where}: {msg}" if where else msg


def export_methods() -> ExportMethods:
    """The method facts and chat templates an export needs, from backend (storage does not import it)."""
    from backend.engines.chat_template import ChatTemplate
    from backend.methods.critique import Critique, reply_from_rationale
    from backend.methods.registry import get_method, method_ids

    critiques: dict[str | None, Critique] = {}  # one per method version, for this export

    def judge_chat(version: str | None, question: str, response: str) -> Messages:
        method = critiques.get(version)
        if method is None:
            method = Critique()
            if version:
                method.version = version  # the templates of the version that wrote the critiques
            critiques[version] = method
        try:
            return method.chat(question, response)
        except FileNotFoundError as e:
            raise ValueError(f"critique template version {version!r} is not installed: {e}") from e

    from app.services.agreement import method_info  # here: agreement imports this module

    return ExportMethods(score_columns={m: get_method(m).score_column for m in method_ids()}, judge_chat=judge_chat,
                         critique_reply=reply_from_rationale, load_template=load_chat_template,
                         template_from_text=ChatTemplate, method_info=method_info)


def _bundled_template(ctx: AppContext) -> None:
    """Databases from before m023 know the bundled demo model only by its id; its template is read from the
    installed GGUF the first time an export may need it."""
    from backend.engines.base import EngineError
    from backend.engines.llamacpp_util import default_model_path

    m = next((m for m in model_registry.list_models(ctx.db) if m.bundled and not m.chat_template), None)
    if m is None:
        return
    try:
        t = load_chat_template(default_model_path())
    except (EngineError, ValueError):  # not installed here: the export asks for --chat-template
        return
    model_registry.record_model(ctx.db, m.model_copy(update={"chat_template": t.text, "special_tokens": t.special}))


def export(ctx: AppContext, user: str, p: Export) -> dict[str, Any]:
    _bundled_template(ctx)
    with _as_service_error():
        r = export_dataset(ctx.db, p.study, p.out, p.options(), hf_dir=p.hf_dir, overwrite=p.overwrite,
                           methods=export_methods())
    return r.model_dump(mode="json")


def export_preview(ctx: AppContext, user: str, p: ExportPreview) -> dict[str, Any]:
    _bundled_template(ctx)
    with _as_service_error():
        r = preview_dataset(ctx.db, p.study, p.options(), n_rows=p.rows, methods=export_methods())
    return r.model_dump(mode="json")


@contextmanager
def _as_service_error() -> Iterator[None]:
    """Storage's ValueErrors (a bad option, an empty study, an existing file) are the person's to fix: the
    UI and the API show them as they are."""
    try:
        yield
    except ServiceError:
        raise
    except ValueError as e:
        raise ServiceError(str(e)) from e


def export_dpo(ctx: AppContext, user: str, p: ExportDpo) -> dict[str, Any]:
    return export(ctx, user, Export(study=p.study, out=p.out, overwrite=p.overwrite, kind="dpo", signal="best",
                                    per_annotator=True))


def export_sources(ctx: AppContext, user: str, p: ExportSources) -> dict[str, Any]:
    """The `--source` values that fit the study: human, model:/consensus: for each scored method, and pre: for
    each method several judges scored; and `judges`, the study's model judges (the `--consistent-with`
    candidates)."""
    from app.services.agreement import method_info  # here: agreement imports this module
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
    for m in sorted(several):  # PRE's weighted vote needs several judges of one method (docs/formats.md)
        info = method_info(m)
        if info and (info["compared_with"] == "pairwise" or (info["compared_with"] in ("likert", "correct")
                                                             and info["score_column"] in ("value", "prob"))):
            out.append(f"pre:{m}")
    judges = list(dict.fromkeys(r["judge"] for r in rows))
    return {"study": study.name, "sources": list(dict.fromkeys(out)), "verdicts": rows, "judges": judges}


def exports_dir(ctx: AppContext) -> Path:
    """Where the Export tab writes: `<database directory>/exports/`."""
    base = Path(ctx.db.path).resolve().parent if ctx.db.path != ":memory:" else Path.cwd()
    return base / EXPORTS_DIR


def safe_stem(study: str) -> str:
    """A study name as a file name's stem: no path separators, nothing a shell or a zip would mind.

    >>> safe_stem("my study/../x"), safe_stem("../.."), safe_stem("ünï/cödé")
    ('my_study_.._x', 'study', 'n_c_d')
    """
    return re.sub(r"[^A-Za-z0-9._-]+", "_", study).strip("._") or "study"


def file_name(study: str, kind: str, fmt: str) -> str:
    """A safe file name for the exports directory.

    >>> file_name("my study/../x", "dpo", "jsonl")[:20]
    'my_study_.._x-dpo-20'
    """
    safe = safe_stem(study)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return f"{safe}-{kind}-{stamp}.{fmt}"


def export_path(base: Path, study: str, kind: str, fmt: str) -> Path:
    """A new folder per export under `base`, holding just the data file and its card (what the download
    zips). `mkdir` claims the folder atomically, so two exports in the same second get two."""
    name = file_name(study, kind, fmt)
    stem = name.rsplit(".", 1)[0]
    base.mkdir(parents=True, exist_ok=True, mode=0o700)  # exports hold study data: for the owner only
    for n in range(1, 1000):
        folder = base / (stem if n == 1 else f"{stem}-{n}")
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            continue
        return folder / name
    raise ServiceError(f"too many exports named {stem} in {base}")


def export_download(ctx: AppContext, user: str, p: ExportDownload) -> dict[str, Any]:
    """The Export tab's export: into a new folder under `<db dir>/exports/`. Adds `rel_path` (the file beside
    the database) to `export`'s result; `download_link` then makes the .zip to download."""
    base = exports_dir(ctx)
    out = export_path(base, p.study, p.kind, p.format)
    try:
        r = export(ctx, user, Export.model_validate({**p.model_dump(exclude={"format"}), "out": str(out)}))
    finally:
        if not any(out.parent.iterdir()):  # a refused export leaves no empty folder behind
            out.parent.rmdir()
    return {**r, "rel_path": str(out.relative_to(base.parent))}


def download_link(ctx: AppContext, user: str, export_run_id: int) -> dict[str, Any]:
    """One .zip of an Export-tab export's data file and card, offered to `user` (an admin) for one download
    through /api/downloads/ (app/services/downloads.py): its `url` and `filename`. Each call makes a fresh copy,
    so the Download button works again after a download."""
    recorded = recorded_file(ctx.db, export_run_id)
    base = exports_dir(ctx).resolve()
    data = Path(recorded[1]).resolve() if recorded else None
    # Only what the Export tab wrote under <db dir>/exports/ (a CLI export may sit anywhere).
    if data is None or not data.is_relative_to(base) or not data.is_file():
        raise ServiceError(f"export #{export_run_id} has no file under {base} to download; export again")
    bundle = ctx.downloads.new_file(f"{data.stem}.zip")
    zip_export([data, card_path(data)], bundle)
    url = ctx.downloads.offer(bundle, user, study_id=recorded[0], media_type="application/zip")
    return {"url": url, "filename": bundle.name}


EXPORT_OPS: dict[str, tuple[type[BaseModel], Callable[[AppContext, str, Any], dict[str, Any]]]] = {
    "export": (Export, export),
    "export_preview": (ExportPreview, export_preview),
    "export_dpo": (ExportDpo, export_dpo),
    "export_sources": (ExportSources, export_sources),
}
