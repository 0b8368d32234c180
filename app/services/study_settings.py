"""Study settings as an admin edits them: load the form, send only what changed, refuse a save from a
stale form, and ask for confirmation before a change weakens a study that already has labels."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from app.services.context import AppContext, ServiceError
from app.services.ops import run_op
from storage import gold, judgments, label_queue, settings_history, studies
from storage.label_sources import IMPORTED
from storage.models import Study, StudyConfig

QUESTION_LABELS = {"best": "best-of-N pick", "rating": "1–7 rating per response",
                   "pairwise": "pairwise: response 1 vs 2 (A / B / tie / both bad)",
                   "correct": "correct / incorrect per response", "checklist": "answers to the model's checklist",
                   "critique": "agree / disagree with the model's critique (after reveal)",
                   "reference": "reference answer written by the annotator", "comment": "comment"}
SETTING_NAMES = {"blind": "blind labelling", "reveal": "reveal after submit", "questions": "questions",
                 "overlap": "annotators per prompt", "extra_on_disagreement": "extra annotators on disagreement",
                 "answer_extraction": "answer extraction", "live_annotators": "Live tab for annotators",
                 "guidelines": "guidelines", "description": "description", "label_run_id": "labelling run",
                 "rating_scale": "rating scale", "label_runs": "label set (runs)", "queue_order": "queue order", "gold_min_accuracy": "gold accuracy gate", "gold_rate": "gold rate"}
# The settings the Studies tab's form edits (the rest of StudyConfig stays as it is).
FORM_KEYS = ("blind", "reveal", "questions", "overlap", "extra_on_disagreement", "answer_extraction",
             "live_annotators", "label_runs", "queue_order", "gold_rate", "gold_min_accuracy", "guidelines")


class NeedsConfirmation(ServiceError):
    """The change weakens a study that already has human labels: save again with confirm."""

    def __init__(self, study: str, reasons: list[str]):
        self.reasons = reasons
        super().__init__(f"study {study!r} already has human labels, and this change would "
                         f"{'; '.join(reasons)}. Labels made before and after it are not comparable: "
                         "confirm to save it anyway (the change is recorded in the study's settings history "
                         "and listed in the agreement report).")


class SettingsForm(BaseModel):
    """The form's values as loaded, with the version they were loaded at."""

    study: str
    version: str
    values: dict[str, Any]
    has_labels: bool


class ProgressRow(BaseModel):
    name: str
    labelled: int
    skipped: int
    gold: str = ""  # "right / answered (accuracy)" on the gold items, "gated" below the study's minimum


class SettingsPanel(BaseModel):
    """What the Studies tab's settings panel shows for one study: the form and the annotators' progress."""

    form: SettingsForm
    progress: list[ProgressRow]


def load_form(ctx: AppContext, study_name: str) -> SettingsForm:
    return _form(ctx, studies.get_study(ctx.db, study_name))


def load_panel(ctx: AppContext, study_name: str) -> SettingsPanel:
    """The form and the progress table, from one read of the study (admins only; the caller checked the role)."""
    s = studies.get_study(ctx.db, study_name)
    rows = label_queue.annotator_progress(ctx.db, s.id)
    accuracy = {a.annotator: a for a in gold.accuracy(ctx.db, s.id)}
    gate = s.config.gold_min_accuracy
    return SettingsPanel(form=_form(ctx, s), progress=[
        ProgressRow(name=n, labelled=d, skipped=k, gold=_gold_text(accuracy.get(n), gate)) for n, d, k in rows])


def _gold_text(a: gold.GoldAccuracy | None, gate: float | None) -> str:
    """"gated" by the rule of storage.gold.is_gated (fewer than MIN_GOLD_ANSWERS answers never gate).

    >>> _gold_text(gold.GoldAccuracy("ann", 5, 3, 0.6), 0.8), _gold_text(gold.GoldAccuracy("ann", 4, 3, 0.75), 0.8)
    ('3 / 5 (60%), gated', '3 / 4 (75%)')
    """
    if a is None:
        return ""
    return f"{a.right} / {a.answered} ({a.accuracy:.0%})" + (", gated" if gold.is_gated(a, gate) else "")


def parse_label_runs(text: str) -> list[int | str]:
    """The label set as typed in the form: run ids and `imported`, separated by commas or spaces.

    >>> parse_label_runs("3, 5 imported")
    [3, 5, 'imported']
    >>> parse_label_runs("run 3")
    Traceback (most recent call last):
    app.services.context.ServiceError: label set: 'run' is neither a generation run id nor imported
    """
    out: list[int | str] = []
    for word in text.replace(",", " ").split():
        if word.isdigit():
            out.append(int(word))
        elif word.lower() == IMPORTED:
            out.append(IMPORTED)
        else:
            raise ServiceError(f"label set: {word!r} is neither a generation run id nor {IMPORTED}")
    return out


def _form(ctx: AppContext, s: Study) -> SettingsForm:
    every = settings_history.settings_of(s)
    return SettingsForm(study=s.name, version=settings_history.version(s), values={k: every[k] for k in FORM_KEYS},
                        has_labels=_has_labels(ctx, s))


class SavedPanel(BaseModel):
    """A save from the settings panel: what changed (empty: nothing was, and nothing was saved), in the
    form's words, notes on settings that have no effect, and the panel as it stands after the save."""

    changed: dict[str, list]
    described: str = ""
    notes: list[str] = []
    panel: SettingsPanel | None = None  # None when nothing changed (the form stays as it is)


def save_panel(ctx: AppContext, user: str, loaded: SettingsForm | dict[str, Any], edited: dict[str, Any], *,
               confirm: bool = False) -> SavedPanel:
    """Save what the person changed in the panel's form (`loaded`: the form as it was loaded) through the
    `configure` operation, then the panel again (admins only; the caller checked the role). ServiceError
    from `configure` (NeedsConfirmation among them) with nothing saved."""
    form = SettingsForm.model_validate(loaded)
    if isinstance(edited.get("label_runs"), str):
        edited = {**edited, "label_runs": parse_label_runs(edited["label_runs"])}
    changed = form_changes(form.values, edited)
    if not changed:
        return SavedPanel(changed={})
    guidelines = changed.pop("guidelines", None)
    r = run_op(ctx, user, "configure", {"study": form.study, "config": changed, "guidelines": guidelines,
                                         "expected_version": form.version, "confirm": confirm})
    return SavedPanel(changed=r["changed"], described=describe(r["changed"]), notes=r["notes"],
                      panel=load_panel(ctx, form.study))


def form_changes(loaded: dict[str, Any], edited: dict[str, Any]) -> dict[str, Any]:
    """The settings the person changed in the form, validated, as the `configure` payload's config (plus
    `guidelines` when changed). Unchanged keys are not sent, so a save cannot reset what it did not touch.

    >>> form_changes({"blind": True, "questions": ["best", "rating"], "guidelines": "Be brief."},
    ...              {"blind": True, "questions": ["rating", "best", "correct"], "guidelines": "Be brief."})
    {'questions': ['rating', 'best', 'correct']}
    >>> form_changes({"overlap": None}, {"overlap": 2})
    {'overlap': 2}
    """
    changed = {}
    for key, new in edited.items():
        old = loaded.get(key)
        same = sorted(old or []) == sorted(new or []) if key == "questions" else old == new
        if not same:
            changed[key] = new
    return changed


def weakening(before: Study, after: Study) -> list[str]:
    """What in the change makes labels made before it not comparable with those after it.

    >>> s = Study(id=1, name="s", guidelines="Pick the most helpful.")
    >>> weakening(s, s.model_copy(update={"config": StudyConfig(blind=False), "guidelines": ""}))
    ['turn blind labelling off', 'clear the guidelines']
    """
    b, a = before.config, after.config
    reasons = []
    if b.blind and not a.blind:
        reasons.append("turn blind labelling off")
    if b.reveal != a.reveal:
        reasons.append(f"turn reveal after submit {'on' if a.reveal else 'off'}")
    removed = [q for q in b.questions if q not in a.questions]
    if removed:
        reasons.append(f"remove the question{'s' * (len(removed) > 1)} "
                       + ", ".join(f"'{QUESTION_LABELS.get(q, q)}'" for q in removed))
    if before.guidelines.strip() and not after.guidelines.strip():
        reasons.append("clear the guidelines")
    if b.label_runs != a.label_runs or b.label_run_id != a.label_run_id:
        reasons.append("change the responses people label (the label set)")
    return reasons


def describe(changes: dict[str, list]) -> str:
    """A saved change in the form's words, old → new.

    >>> describe({"reveal": [True, False], "questions": [["best", "rating"], ["best", "correct"]],
    ...           "overlap": [None, 2], "guidelines": ["Old.", "New."]})
    'reveal after submit: on → off; questions: − 1–7 rating per response, + correct / incorrect per response; annotators per prompt: everyone → 2; guidelines: edited'
    """
    parts = []
    for key, (old, new) in changes.items():
        name = SETTING_NAMES.get(key, key)
        if key == "questions":
            gone = [QUESTION_LABELS.get(q, q) for q in old if q not in new]
            added = [QUESTION_LABELS.get(q, q) for q in new if q not in old]
            parts.append(f"{name}: " + ", ".join([f"− {q}" for q in gone] + [f"+ {q}" for q in added]))
        elif key in ("guidelines", "description"):
            parts.append(f"{name}: {'cleared' if not new.strip() else 'edited'}")
        else:
            parts.append(f"{name}: {_value(key, old)} → {_value(key, new)}")
    return "; ".join(parts)


def _value(key: str, v: Any) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    if v is None:
        return "everyone" if key == "overlap" else "none"
    if key == "label_runs":
        return ", ".join(map(str, v)) or "the latest run"
    return str(v)


def notes(config: StudyConfig) -> list[str]:
    """Settings that are saved but have no effect as they stand."""
    out = []
    if config.extra_on_disagreement and config.overlap is None:
        out.append("extra annotators on disagreement have no effect while annotators per prompt is blank "
                   "(everyone labels everything)")
    if "critique" in config.questions and not (config.blind and config.reveal):
        out.append("the critique question is asked after the reveal, so it needs blind labelling and reveal on")
    return out


def check_change(ctx: AppContext, before: Study, after: Study, expected_version: str | None,
                 confirm: bool) -> dict[str, Any]:
    """The changed settings (setting -> [old, new]), after the stale-form and confirmation checks."""
    if expected_version is not None and expected_version != settings_history.version(before):
        last = next(reversed(settings_history.history(ctx.db, before.id)), None)
        by = (f" (last change: {SETTING_NAMES.get(last.setting, last.setting)} by {last.changed_by or 'unknown'} "
              f"at {last.changed_at:%Y-%m-%d %H:%M:%S})" if last and last.changed_at else "")
        raise ServiceError(f"the settings of study {before.name!r} changed since this form was loaded{by}; "
                           "reload them and make your change again")
    changes = settings_history.diff(before, after)
    if changes and not confirm and _has_labels(ctx, before):
        reasons = weakening(before, after)
        if reasons:
            raise NeedsConfirmation(before.name, reasons)
    return {k: list(v) for k, v in changes.items()}


def _has_labels(ctx: AppContext, study: Study) -> bool:
    return judgments.has_any_human(ctx.db, study.id)
