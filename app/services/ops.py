"""Admin operations, callable the same way from the CLI (locally or through a running server's
admin API) and from the web UI. Each takes the context, the acting user and a validated payload and
returns JSON-able data."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.services import generation, lineage
from app.services.context import AppContext, EngineConfig, ServiceError
from app.services.paths import OptionalReadPath, OptionalWritePath, ReadPath, WebPaths, WritePath, confine
from storage import annotators, gold, jobs, label_queue, members, prompts, responses, settings_history, studies
from storage.analysis.judges import DEFAULT_THRESHOLD
from storage.models import QUESTION_METHODS, Annotator, Role, SamplingSettings, Study, StudyConfig


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImportPrompts(_Payload):
    study: str
    path: ReadPath
    display_name: str | None = None  # how errors name the file (an upload's own name, not its temp path)
    description: str = ""
    guidelines_path: OptionalReadPath = None


class CreateStudy(_Payload):
    name: str
    description: str = ""
    guidelines: str = ""


class _Lineage(_Payload):
    # The engine's model was trained from this model id on this export run (app/services/lineage.py).
    parent_model: str | None = Field(None, min_length=1)
    trained_on_export: int | None = Field(None, ge=1)


class Generate(_Lineage):
    study: str
    settings: SamplingSettings = Field(default_factory=SamplingSettings)
    engine: EngineConfig | None = None
    new_run: bool = False
    wait: bool = False


class Score(_Lineage):
    study: str
    methods: str | None = None  # "id,id" or "all"; None = backend.methods.registry.DEFAULT_METHODS
    engine: EngineConfig | None = None


class Configure(_Payload):
    study: str
    config: dict[str, Any] = Field(default_factory=dict)  # only the StudyConfig fields to change
    guidelines: str | None = None
    description: str | None = None
    # The settings version the caller's form was loaded at (storage.settings_history.version): the save is
    # refused when the study's settings changed since. None: no check (a script setting one key).
    expected_version: str | None = None
    confirm: bool = False  # the caller confirmed a change that weakens a study that already has labels


class Requeue(_Payload):
    study: str
    prompt: str  # the prompt's external id


class Agreement(_Payload):
    study: str
    format: str = "json"
    out: OptionalWritePath = None
    stage: str = "blind"
    n_boot: int = Field(1000, ge=0, le=100_000)
    seed: int = 0
    annotator_models: bool = False
    judges: bool = False
    response_rankings: bool = False
    pre_seed: int | None = None  # PRE's exam seed (default: the study id), with judges
    pre_threshold: float = Field(DEFAULT_THRESHOLD, gt=0.0, le=1.0)  # the exam score a judge needs to vote


class StudyOnly(_Payload):
    study: str


class GoldAdd(_Payload):
    study: str
    prompt: str  # the prompt's external id
    question: Literal["best", "correct"]  # a best pick, or a correct/incorrect verdict on one response
    response_id: int
    verdict: Literal["correct", "incorrect"] | None = None  # the "correct" question's answer


class GoldList(_Payload):
    study: str
    prompt: str | None = None  # also list this prompt's responses (their ids are what gold_add takes)


class AddAnnotator(_Payload):
    name: str
    role: Role = "annotator"
    password: str | None = None
    studies: list[str] = Field(default_factory=list)  # an annotator's studies (members of each)


class Membership(_Payload):
    study: str
    name: str


class PersonStudies(_Payload):
    name: str
    studies: list[str]  # every study the annotator should be a member of, and no other


class AnnotatorName(_Payload):
    name: str


class ResetPassword(_Payload):
    name: str
    password: str | None = None  # None: generate one and return it once


class ImportJudgments(_Payload):
    study: str
    path: ReadPath
    format: str = "critlab"  # storage.formats.FORMATS
    display_name: str | None = None  # how errors name the file (an upload's own name, not its temp path)


class ExportJudgments(_Payload):
    study: str
    out: WritePath
    format: str = "critlab"  # storage.formats.WRITERS


class Backup(_Payload):
    out: WritePath
    overwrite: bool = False


class JobStatus(_Payload):
    id: int


class NoArgs(_Payload):
    pass


def import_prompts(ctx: AppContext, user: str, p: ImportPrompts) -> dict[str, Any]:
    from storage.importers import import_prompts as do_import

    guidelines = Path(p.guidelines_path).read_text(encoding="utf-8") if p.guidelines_path else None
    with ctx.db.write():  # one transaction: a bad file leaves no new study behind either
        study = studies.get_or_create_study(ctx.db, p.study)
        if guidelines is not None or p.description:
            studies.update_study(ctx.db, study.id, description=p.description or None, guidelines=guidelines,
                                 changed_by=user)
        n = do_import(ctx.db, study.id, p.path, display_name=p.display_name)
    return {"study": study.name, "imported": n, "total": prompts.count_prompts(ctx.db, study.id)}


def create_study(ctx: AppContext, user: str, p: CreateStudy) -> dict[str, Any]:
    s = studies.create_study(ctx.db, p.name, description=p.description, guidelines=p.guidelines)
    return {"study": s.name, "id": s.id}


def generate(ctx: AppContext, user: str, p: Generate) -> dict[str, Any]:
    studies.get_study(ctx.db, p.study)  # an unknown study is refused before a model is loaded or linked
    lineage.link_model(ctx, p.engine, p.parent_model, p.trained_on_export)
    job = generation.start_generation(ctx, p.study, p.settings, p.engine, new_run=p.new_run, created_by=user,
                                      background=not p.wait)
    return job.model_dump(mode="json")


def score(ctx: AppContext, user: str, p: Score) -> dict[str, Any]:
    from app.services.scoring import start_scoring

    studies.get_study(ctx.db, p.study)
    lineage.link_model(ctx, p.engine, p.parent_model, p.trained_on_export)
    return start_scoring(ctx, p.study, p.methods, p.engine, created_by=user).model_dump(mode="json")


def configure(ctx: AppContext, user: str, p: Configure) -> dict[str, Any]:
    """Change a study's annotation settings, only the keys given; unknown or invalid settings are refused as
    a whole, as is a save from a form loaded before someone else's change, and a change that weakens a study
    with labels unless confirmed (study_settings.NeedsConfirmation). Every change lands in the history."""
    from app.services.study_settings import check_change
    from app.services.study_settings import notes as settings_notes
    from backend.methods.answers import validate_mode

    study = studies.get_study(ctx.db, p.study)
    unknown = sorted(set(p.config) - set(StudyConfig.model_fields))
    if unknown:
        raise ServiceError(f"unknown study settings: {', '.join(unknown)}")
    try:
        config = StudyConfig.model_validate({**study.config.model_dump(), **p.config})
        validate_mode(config.answer_extraction)
    except ValueError as e:
        raise ServiceError(f"invalid study settings: {e}") from e
    runs = {r.id for r in studies.list_runs(ctx.db, study.id)}
    if config.label_run_id is not None and config.label_run_id not in runs:
        raise ServiceError(f"generation run {config.label_run_id} is not a run of study {study.name!r}")
    strangers = [s for s in config.label_runs if s != "imported" and s not in runs]
    if strangers:
        raise ServiceError(f"label_runs: generation run{'s' * (len(strangers) > 1)} "
                           f"{', '.join(map(str, strangers))} {'are' if len(strangers) > 1 else 'is'} not "
                           f"{'runs' if len(strangers) > 1 else 'a run'} of study {study.name!r} (its runs: "
                           f"{', '.join(map(str, sorted(runs))) or 'none'})")
    with ctx.db.write():  # checked and written under the write lock: two saves cannot both pass the check
        study = studies.get_study(ctx.db, p.study)
        after = study.model_copy(update={"config": config, "guidelines": study.guidelines if p.guidelines is None
                                         else p.guidelines,
                                         "description": study.description if p.description is None else p.description})
        changes = check_change(ctx, study, after, p.expected_version, p.confirm)
        s = studies.update_study(ctx.db, study.id, config=config, guidelines=p.guidelines, description=p.description,
                                 changed_by=user, confirmed=p.confirm) if changes else study
    return {"study": s.name, "config": s.config.model_dump(), "changed": changes,
            "version": settings_history.version(s), "notes": settings_notes(s.config)}


def requeue(ctx: AppContext, user: str, p: Requeue) -> dict[str, Any]:
    study = studies.get_study(ctx.db, p.study)
    pid = prompts.find_prompt_id(ctx.db, study.id, p.prompt)
    if pid is None:
        raise ServiceError(f"no prompt {p.prompt!r} in study {study.name!r}")
    label_queue.requeue(ctx.db, pid, user)
    return {"study": study.name, "prompt": p.prompt, "requeued": True}


def agreement(ctx: AppContext, user: str, p: Agreement) -> dict[str, Any]:
    from app.services import agreement as ag

    rep = ag.report(ctx, p.study, stage=p.stage, n_boot=p.n_boot, seed=p.seed, annotator_models=p.annotator_models,
                   judges=p.judges, response_rankings=p.response_rankings, pre_seed=p.pre_seed,
                   pre_threshold=p.pre_threshold)
    text = ag.render(rep, p.format)  # type: ignore[arg-type]
    if p.out:
        return {**ag.write(text, p.out), "format": p.format}
    return {"format": p.format, "text": text}


def agreement_by_turn(ctx: AppContext, user: str, p: StudyOnly) -> dict[str, Any]:
    """MT-Bench agreement per turn (prompts with a `turn` in their metadata, as FastChat imports have)."""
    from storage.analysis.report.turns import by_turn_text, pairwise_by_turn

    rows = pairwise_by_turn(ctx.db, studies.get_study(ctx.db, p.study).id)
    return {"rows": rows, "text": by_turn_text(rows) or "no prompt of this study has a turn and human pairwise votes"}


def gold_add(ctx: AppContext, user: str, p: GoldAdd) -> dict[str, Any]:
    """Mark a prompt's known answer (storage.gold); ServiceError naming what is wrong, nothing stored, otherwise."""
    study = studies.get_study(ctx.db, p.study)
    pid = prompts.find_prompt_id(ctx.db, study.id, p.prompt)
    if pid is None:
        raise ServiceError(f"no prompt {p.prompt!r} in study {study.name!r}")
    try:
        g = gold.add(ctx.db, study.id, pid, QUESTION_METHODS[p.question][0], p.response_id, p.verdict, user)
    except ValueError as e:
        raise ServiceError(str(e)) from None
    return {"study": study.name, "prompt": p.prompt, "question": p.question, "response_id": g.response_id,
            "verdict": g.answer}


def gold_list(ctx: AppContext, user: str, p: GoldList) -> dict[str, Any]:
    """The study's gold answers and each person's accuracy on them (admins), with who the gate leaves out and
    the gate's rule; with `prompt`, that prompt's responses (id, origin, model, text) to pick an answer from."""
    study = studies.get_study(ctx.db, p.study)
    g = gold.gate(ctx.db, study.id, study.config.gold_min_accuracy)
    out: dict[str, Any] = {
        "study": study.name, "min_accuracy": g.min_accuracy, "min_answers": gold.MIN_GOLD_ANSWERS,
        "gold": [{**a._asdict(), "prompt": prompts.get_prompt(ctx.db, a.prompt_id).external_id}
                 for a in gold.list_gold(ctx.db, study.id)],
        "accuracy": [a._asdict() for a in gold.accuracy(ctx.db, study.id)],
        "gated": sorted(g.names)}
    if p.prompt is not None:
        pid = prompts.find_prompt_id(ctx.db, study.id, p.prompt)
        if pid is None:
            raise ServiceError(f"no prompt {p.prompt!r} in study {study.name!r}")
        out["responses"] = [{"id": r.id, "origin": r.origin, "model": r.model_id, "run": r.run_id, "text": r.text}
                            for r in responses.all_for_prompt(ctx.db, pid)]
    return out


def annotator_progress(ctx: AppContext, user: str, p: StudyOnly) -> dict[str, Any]:
    study = studies.get_study(ctx.db, p.study)
    rows = label_queue.annotator_progress(ctx.db, study.id)
    return {"study": study.name, "total": prompts.count_prompts(ctx.db, study.id),
            "annotators": [{"name": n, "labelled": d, "skipped": s} for n, d, s in rows]}


def add_annotator(ctx: AppContext, user: str, p: AddAnnotator) -> dict[str, Any]:
    """A new person; an annotator becomes a member of `studies` at once (all of it or nothing: an unknown study
    adds nobody)."""
    if p.studies and p.role == "admin":
        raise ServiceError("admins open every study: --study is for annotators")
    password = p.password or annotators.generate_password()
    ids = [studies.get_study(ctx.db, name).id for name in dict.fromkeys(p.studies)]
    # One transaction for the person and their memberships, taken after the (slow) password hash.
    a = annotators.add_annotator(ctx.db, p.name, p.role, password, study_ids=ids, added_by=user)
    return {"name": a.name, "role": a.role, "password": None if p.password else password,
            "studies": list(dict.fromkeys(p.studies))}


def _person(a: Annotator) -> dict[str, Any]:
    return a.model_dump()  # id, name, role, disabled


def add_member(ctx: AppContext, user: str, p: Membership) -> dict[str, Any]:
    """Let an annotator label a study; `added` is false when they were a member already."""
    study = studies.get_study(ctx.db, p.study)
    return {"study": study.name, "name": p.name, "added": members.add(ctx.db, study.id, p.name, user)}


def remove_member(ctx: AppContext, user: str, p: Membership) -> dict[str, Any]:
    """End an annotator's membership: nothing more of the study is served to them, their reservations there
    are released and their next submit is refused; the labels they stored stay."""
    study = studies.get_study(ctx.db, p.study)
    if annotators.get_annotator(ctx.db, p.name) is None:
        raise ServiceError(f"no annotator {p.name!r} (see `critlab annotators list`)")
    if not members.remove(ctx.db, study.id, p.name):
        raise ServiceError(f"{p.name} is not a member of study {study.name!r}")
    return {"study": study.name, "name": p.name, "removed": True}


def study_members(ctx: AppContext, user: str, p: StudyOnly) -> dict[str, Any]:
    study = studies.get_study(ctx.db, p.study)
    return {"study": study.name, "members": [m.model_dump(mode="json") for m in members.members(ctx.db, study.id)]}


def person_studies(ctx: AppContext, user: str, p: AnnotatorName) -> dict[str, Any]:
    """Every study, and those the person may label as a member (`member_of` None: an admin, every study)."""
    person = annotators.get_annotator(ctx.db, p.name)
    if person is None:
        raise ServiceError(f"no annotator {p.name!r} (see `critlab annotators list`)")
    all_studies = studies.list_studies(ctx.db)
    ids = members.studies_of(ctx.db, person.name)
    return {"name": person.name, "role": person.role, "studies": [s.name for s in all_studies],
            "member_of": None if ids is None else [s.name for s in all_studies if s.id in ids]}


def set_studies(ctx: AppContext, user: str, p: PersonStudies) -> dict[str, Any]:
    """Make an annotator a member of exactly `studies` (the Admin tab's checkboxes), in one transaction;
    person_studies' answer afterwards, with what was `added` and `removed`."""
    person = annotators.get_annotator(ctx.db, p.name)
    if person is None:
        raise ServiceError(f"no annotator {p.name!r} (see `critlab annotators list`)")
    if person.role == "admin":
        raise ServiceError(f"{p.name} is an admin: admins open every study without being members")
    with ctx.db.write():
        wanted = {studies.get_study(ctx.db, name).id: name for name in p.studies}
        by_id = {s.id: s.name for s in studies.list_studies(ctx.db)}
        now = members.studies_of(ctx.db, p.name) or set()
        added = [wanted[i] for i in wanted if i not in now and members.add(ctx.db, i, p.name, user)]
        removed = [by_id.get(i, str(i)) for i in sorted(now - set(wanted)) if members.remove(ctx.db, i, p.name)]
    return {"name": p.name, "role": person.role, "studies": list(by_id.values()),
            "member_of": [n for i, n in by_id.items() if i in wanted], "added": added, "removed": removed}


def disable_annotator(ctx: AppContext, user: str, p: AnnotatorName) -> dict[str, Any]:
    """Disable a person: they cannot log in, and every open session of theirs stops working at once."""
    return _person(annotators.set_disabled(ctx.db, p.name, True))


def enable_annotator(ctx: AppContext, user: str, p: AnnotatorName) -> dict[str, Any]:
    """Let a disabled person log in again (their old sessions stay ended)."""
    return _person(annotators.set_disabled(ctx.db, p.name, False))


def reset_password(ctx: AppContext, user: str, p: ResetPassword) -> dict[str, Any]:
    """A new password (generated unless given, and then returned once); the person's sessions end."""
    password = p.password or annotators.generate_password()
    a = annotators.set_password(ctx.db, p.name, password)
    return {**_person(a), "password": None if p.password else password}


def import_judgments(ctx: AppContext, user: str, p: ImportJudgments) -> dict[str, Any]:
    from storage.import_judgments import import_judgments as do_import

    from storage.formats import FORMATS

    if p.format not in FORMATS:
        raise ServiceError(f"unknown judgments format {p.format!r}: use one of {', '.join(FORMATS)}")
    with ctx.db.write():  # one transaction: a bad file leaves no new study behind either
        study = studies.get_or_create_study(ctx.db, p.study)
        summary = do_import(ctx.db, study.id, p.path, fmt=p.format, display_name=p.display_name)
    return {**summary.model_dump(mode="json"), "message": summary.message}


def export_judgments(ctx: AppContext, user: str, p: ExportJudgments) -> dict[str, Any]:
    from storage.export_judgments import export_judgments as do_export

    from storage.formats import WRITERS

    if p.format not in WRITERS:
        raise ServiceError(f"unknown export format {p.format!r}: use one of {', '.join(WRITERS)}")
    summary = do_export(ctx.db, p.study, p.out, fmt=p.format)
    return {**summary.model_dump(mode="json"), "message": summary.message}


def backup(ctx: AppContext, user: str, p: Backup) -> dict[str, Any]:
    from storage.backup import backup as do_backup

    size = do_backup(ctx.db, p.out, overwrite=p.overwrite)
    return {"out": p.out, "bytes": size}


def job_status(ctx: AppContext, user: str, p: JobStatus) -> dict[str, Any]:
    return jobs.get_job(ctx.db, p.id).model_dump(mode="json")


def list_studies(ctx: AppContext, user: str, p: NoArgs) -> dict[str, Any]:
    out = []
    for s in studies.list_studies(ctx.db):
        out.append({"name": s.name, "prompts": prompts.count_prompts(ctx.db, s.id),
                    "runs": [r.model_dump(mode="json") for r in studies.list_runs(ctx.db, s.id)]})
    return {"studies": out}


def study_settings(ctx: AppContext, user: str, p: StudyOnly) -> dict[str, Any]:
    """A study's settings, their version (for `configure`'s expected_version) and their history."""
    s = studies.get_study(ctx.db, p.study)
    return {"study": s.name, "config": s.config.model_dump(mode="json"), "guidelines": s.guidelines,
            "description": s.description, "version": settings_history.version(s),
            "history": [c.model_dump(mode="json") for c in settings_history.history(ctx.db, s.id)]}


def list_annotators(ctx: AppContext, user: str, p: NoArgs) -> dict[str, Any]:
    """Everyone who can log in, with the studies each may label (None: every study, an admin's)."""
    return {"annotators": people(ctx, studies.list_studies(ctx.db))}


def people(ctx: AppContext, every: list[Study]) -> list[dict[str, Any]]:
    """list_annotators' rows, given every study (read once by a caller that lists them too)."""
    names = {s.id: s.name for s in every}
    by_person = members.memberships(ctx.db)  # one query, not one per person
    out = []
    for a in annotators.list_annotators(ctx.db):
        ids = None if a.role == "admin" else by_person.get(a.name, set())  # as members.studies_of answers
        out.append({**_person(a), "studies": None if ids is None else sorted(names[i] for i in ids if i in names)})
    return out


def models(ctx: AppContext, user: str, p: NoArgs) -> dict[str, Any]:
    """The server's own engine, the models it has loaded now, and every model that has produced something
    stored in this database (name, quantisation, size, SHA-256; templates left out)."""
    from storage import model_registry

    return {"engine": {**ctx.default_engine.model_dump(), "describe": ctx.default_engine.describe()},
            "loaded": [i.model_dump(mode="json", exclude={"model": {"chat_template"}}) for i in ctx.loaded()],
            "models": [m.model_dump(mode="json", exclude={"chat_template"}) for m in model_registry.list_models(ctx.db)]}


OPS: dict[str, tuple[type[_Payload], Callable[[AppContext, str, Any], dict[str, Any]]]] = {
    "import_prompts": (ImportPrompts, import_prompts),
    "create_study": (CreateStudy, create_study),
    "generate": (Generate, generate),
    "score": (Score, score),
    "configure": (Configure, configure),
    "study_settings": (StudyOnly, study_settings),
    "requeue": (Requeue, requeue),
    "annotator_progress": (StudyOnly, annotator_progress),
    "gold_add": (GoldAdd, gold_add),
    "gold_list": (GoldList, gold_list),
    "agreement": (Agreement, agreement),
    "add_annotator": (AddAnnotator, add_annotator),
    "disable_annotator": (AnnotatorName, disable_annotator),
    "enable_annotator": (AnnotatorName, enable_annotator),
    "reset_password": (ResetPassword, reset_password),
    "add_member": (Membership, add_member),
    "remove_member": (Membership, remove_member),
    "study_members": (StudyOnly, study_members),
    "person_studies": (AnnotatorName, person_studies),
    "set_studies": (PersonStudies, set_studies),
    "import_judgments": (ImportJudgments, import_judgments),
    "agreement_by_turn": (StudyOnly, agreement_by_turn),
    "export_judgments": (ExportJudgments, export_judgments),
    "backup": (Backup, backup),
    "job_status": (JobStatus, job_status),
    "list_studies": (NoArgs, list_studies),
    "list_annotators": (NoArgs, list_annotators),
    "models": (NoArgs, models),
}


from app.services.exports import EXPORT_OPS  # noqa: E402

OPS.update(EXPORT_OPS)


def run_op(ctx: AppContext, user: str, name: str, payload: dict[str, Any], *,
           web: WebPaths | None = None) -> dict[str, Any]:
    """Validate the payload for operation `name` and run it as `user` (an admin).

    `web`: the caller is a web session, whose files must lie in these folders (app/services/paths.py);
    None for the CLI (in process, or through the server with the admin token), which names any file."""
    if name not in OPS:
        raise ServiceError(f"unknown operation {name!r}")
    model, fn = OPS[name]
    p = model.model_validate(payload)
    return fn(ctx, user, confine(p, web) if web is not None else p)


def run_op_then_people(ctx: AppContext, user: str, name: str, payload: dict[str, Any]) -> tuple[dict[str, Any],
                                                                                              list[dict[str, Any]]]:
    """An Admin tab action and the people list as it stands after it (what the tab shows next)."""
    r = run_op(ctx, user, name, payload)
    return r, list_annotators(ctx, user, NoArgs())["annotators"]
