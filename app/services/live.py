"""The Live tab's work: sample N responses to one prompt while they stream, let the model judge them,
and add the lot (prompt, samples, scores, labels) to a study.

Nothing is stored until "Add to study": a Live session lives in memory, owned by the person who
started it. Work runs on a background thread (streams first, then the methods one by one), so the UI
only polls `snapshot()`; closing the browser loses the session, never half-written rows. Engine calls
carry the live priority, so on the embedded engine they go before background jobs.

Labels made here saw the model's scores: they are stored as stage 'revealed', source 'live', and never
enter blind agreement figures.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from app.services import labelling, scoring
from app.services.context import AppContext, EngineConfig, PermissionDenied, ServiceError
from app.services.model_view import CardView, views_from
from backend.engines.base import Chat, Engine, EngineError, EngineInfo, Sample, SampleParams, logprob_mode_for
from backend.engines.llamacpp import LIVE_PRIORITY
from backend.engines.prioritised import Prioritised
from backend.methods.base import Method, MethodInput, MethodResult, ResponseInput, method_seed
from backend.methods.registry import DEFAULT_METHODS, get_method, method_ids
from backend.token_stats import token_stats
from storage import annotators, checklists, members, prompts, responses, studies
from storage.models import MAX_RESPONSES, JudgmentIn, PromptIn, ResponseIn, SamplingSettings, Study, TokenStats

MAX_SESSIONS = 64  # per server; the oldest is dropped first
CardState = Literal["waiting", "streaming", "done", "stopped", "failed"]


class LiveSetting(BaseModel):
    temperature: float = Field(0.8, ge=0.0, le=2.0)
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    max_tokens: int = Field(256, ge=1, le=4096)

    def label(self) -> str:
        return f"T={self.temperature:g}, top-p={self.top_p:g}"


class LiveRequest(BaseModel):
    """What to sample: a chat, n samples per setting (one setting, or two to compare side by side),
    and which self-evaluation methods to run once the samples are complete."""

    messages: Chat = Field(min_length=1)
    n: int = Field(4, ge=1, le=MAX_RESPONSES)
    settings: list[LiveSetting] = Field(default_factory=lambda: [LiveSetting()], min_length=1, max_length=2)
    methods: list[str] = Field(default_factory=lambda: list(DEFAULT_METHODS))
    study: str | None = None  # the study whose grant lets an annotator use Live, and its answer extraction
    source_prompt: str | None = None  # the external id, when the prompt was picked from the study

    @field_validator("methods")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        unknown = [m for m in v if m not in method_ids()]
        if unknown:
            raise ValueError(f"unknown methods {unknown}: choose from {', '.join(method_ids())}")
        return v

    def cards(self) -> int:
        return self.n * len(self.settings)

    def tokens(self) -> int:
        """The most tokens the samples may take: samples x max tokens, over both settings."""
        return self.n * sum(s.max_tokens for s in self.settings)

    def describe_tokens(self) -> str:
        """'8 samples × 512 max tokens = 4,096 tokens' (a sum when the two settings differ)."""
        limits = {s.max_tokens for s in self.settings}
        parts = [f"{self.cards()} samples × {limits.pop():,} max tokens"] if len(limits) == 1 else \
            [f"{self.n} samples × {s.max_tokens:,} max tokens" for s in self.settings]
        return f"{' + '.join(parts)} = {self.tokens():,} tokens"


class LiveCard(BaseModel):
    slot: int  # 1-based position on screen
    setting: int  # index into LiveRequest.settings
    seed: int
    text: str = ""
    state: CardState = "waiting"
    finish_reason: str | None = None
    error: str | None = None
    stats: TokenStats | None = None


class MethodStatus(BaseModel):
    method: str
    state: Literal["waiting", "running", "done", "failed", "n/a"] = "waiting"
    error: str | None = None
    seconds: float | None = None


class Snapshot(BaseModel):
    """What the UI shows: a copy, so rendering never races the worker."""

    id: str
    cards: list[LiveCard]
    methods: list[MethodStatus]
    sampling_done: bool
    busy: bool
    views: dict[int, CardView]
    checklist: list[str]
    settings: list[LiveSetting]
    added: dict[str, str]  # study -> prompt external id


class AddResult(BaseModel):
    study: str
    prompt_id: int
    prompt_external_id: str
    responses: int
    model_judgments: int
    labels: int
    already_added: bool = False


class LiveSession:
    def __init__(self, owner: str, request: LiveRequest, engine: Engine, info: EngineInfo,
                 answer_extraction: str = "none") -> None:
        self.id = secrets.token_hex(8)
        self.owner, self.request, self.engine, self.info = owner, request, engine, info
        self.answer_extraction = answer_extraction
        rng = random.SystemRandom()
        self.cards = [LiveCard(slot=i + 1, setting=i // request.n, seed=rng.randrange(2**31))
                      for i in range(request.cards())]
        self.results: dict[str, tuple[MethodInput, MethodResult, int]] = {}
        self._view_rows: dict[str, list[JudgmentIn]] = {}  # results as in-memory judgments (ids = slots)
        self.method_status = [MethodStatus(method=m) for m in request.methods]
        self.added: dict[str, AddResult] = {}
        # When the last sample ended: the person may label from then on, so a label's time on task counts
        # from here to the Add (judgment.duration_ms, as the Label tab's counts from showing the item).
        self.samples_done_at: float | None = None
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the worker ------------------------------------------------------------------------------
    def busy(self) -> bool:
        t = self._thread
        return t is not None and t.is_alive()

    def stopping(self) -> bool:
        return self._stop.is_set()

    def start(self, slots: list[int] | None = None) -> None:
        """Sample the given cards (all by default) with fresh seeds where they were sampled before,
        then rescore every card. A run already going is stopped first (LiveSessions waits for that
        before it calls start, so this does not block there)."""
        self.stop()
        self.wait()
        self._stop.clear()
        with self._lock:
            for card in self.cards:
                if slots is None or card.slot in slots:
                    if card.state != "waiting":
                        card.seed = random.SystemRandom().randrange(2**31)
                    card.text, card.state, card.finish_reason, card.error, card.stats = "", "waiting", None, None, None
            self.results.clear()
            self._view_rows.clear()
            self.method_status = [MethodStatus(method=m) for m in self.request.methods]
            self.added.clear()  # the samples changed: adding again makes a new prompt
            self.samples_done_at = None
        todo = [c for c in self.cards if c.state == "waiting"]
        self._thread = threading.Thread(target=self._work, args=(todo,), name=f"live-{self.id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        t = self._thread
        if t is not None:
            t.join(timeout)
            return not t.is_alive()
        return True

    def _work(self, todo: list[LiveCard]) -> None:
        streams = [threading.Thread(target=self._stream_card, args=(c,), daemon=True) for c in todo]
        for t in streams:
            t.start()
        for t in streams:
            t.join()
        self.samples_done_at = time.monotonic()
        if not self._stop.is_set():
            self._score()

    def _params(self, card: LiveCard) -> SampleParams:
        s = self.request.settings[card.setting]
        return SampleParams(temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens, seed=card.seed)

    def _stream_card(self, card: LiveCard) -> None:
        gen = self.engine.stream(self.request.messages, self._params(card))
        sample: Sample | None = None
        try:
            while True:
                if self._stop.is_set():
                    gen.close()  # cancels the generation at its next token
                    with self._lock:
                        card.state, card.error = "stopped", "stopped: Stop was pressed"
                    return
                try:
                    piece = next(gen)
                except StopIteration as done:
                    sample = done.value
                    break
                with self._lock:
                    card.state = "streaming"
                    card.text += piece
            stats = self._stats(sample, card)
            with self._lock:
                if sample is not None and sample.text:
                    card.text = sample.text  # decoded once from all bytes: split characters come out whole
                card.finish_reason = sample.finish_reason if sample is not None else "stop"
                card.stats, card.state = stats, "done"
        except Exception as e:  # noqa: BLE001 - any failure ends this card visibly, keeping what arrived
            with self._lock:
                card.state, card.error = "failed", f"failed: {e}"

    def _stats(self, sample: Sample | None, card: LiveCard) -> TokenStats:
        if sample is not None and sample.tokens:
            tokens = sample.tokens
            mode = logprob_mode_for(self.info, self.request.settings[card.setting].temperature)
        else:  # engines that stream text only (SGLang): teacher-forced scoring, whose logprobs are raw
            tokens, mode = self.engine.score_response(self.request.messages, card.text), "raw"
        return token_stats(tokens, vocab_size=getattr(self.engine, "vocab_size", None), logprob_mode=mode)

    def _score(self) -> None:
        inp = self.method_input()
        for status in self.method_status:
            if self._stop.is_set():
                return
            if not inp.responses:
                status.state, status.error = "failed", "no complete sample to judge"
                continue
            method = get_method(status.method)
            status.state = "running"
            t0 = time.perf_counter()
            try:
                result = method.run(inp, self.engine)
            except (EngineError, ValueError) as e:
                status.state, status.error = "failed", str(e)
                continue
            ms = int((time.perf_counter() - t0) * 1000)
            with self._lock:
                self.results[method.id] = (inp, result, ms)
                # As judgments once, for the model's view: the UI polls snapshot() several times a second.
                self._view_rows[method.id] = scoring.verdict_rows(
                    0, 0, self.info.model_id, method, result, list(range(len(result.checklist or []))))
                failed = [v.error for v in result.verdicts if v.status == "failed"]
                # "n/a" (e.g. majority vote with no extractable answers) is not a failure of the method.
                all_failed = bool(failed) and len(failed) == len(result.verdicts)
                status.state = ("n/a" if all_failed and all((e or "").startswith("n/a") for e in failed)
                                else "failed" if all_failed else "done")
                status.error = failed[0] if failed else None
                status.seconds = ms / 1000

    def method_input(self) -> MethodInput:
        """The complete samples as one prompt's method input; response ids are card slots."""
        done = [c for c in self.cards if c.state == "done"]
        return MethodInput(
            prompt_id=0, prompt_external_id=f"live-{self.id}", messages=self.request.messages,
            responses=[ResponseInput(id=c.slot, text=c.text, **(c.stats.model_dump() if c.stats else {}))
                       for c in done],
            answer_extraction=self.answer_extraction, seed=method_seed(f"live-{self.id}", "live"),
            context_length=self.info.context_length)

    # -- what the UI reads -----------------------------------------------------------------------
    def checklist(self) -> list[str]:
        with self._lock:
            found = self.results.get("checklist")
            return list(found[1].checklist or []) if found else []

    def snapshot(self) -> Snapshot:
        with self._lock:
            rows = [r for method_rows in self._view_rows.values() for r in method_rows]
            checklist = self.checklist()
            return Snapshot(
                id=self.id, cards=[c.model_copy() for c in self.cards],
                methods=[m.model_copy() for m in self.method_status],
                sampling_done=all(c.state in ("done", "stopped", "failed") for c in self.cards),
                busy=self.busy(),
                views=views_from(rows, dict(enumerate(checklist)), [c.slot for c in self.cards]),
                checklist=checklist, settings=list(self.request.settings),
                added={k: v.prompt_external_id for k, v in self.added.items()})


@dataclass
class LiveRun:
    """A session the Live tab follows, and the questions its label controls ask (those of the chosen study)."""

    session: LiveSession
    questions: list[str]


class LiveBusy(ServiceError):
    """The person already has a Live generation running."""


class LiveSessions:
    """The Live sessions of one server, by id; each belongs to the person who started it.

    One person runs one Live generation at a time (sampling and scoring), and each asks for at most
    `ctx.live_token_cap` tokens: the engine is shared, so without these one person's three tabs of 8 long
    samples kept everyone else's Live requests waiting for minutes. A second Generate while one runs is
    refused rather than replacing the first: the person may be watching the first in another tab, and a
    stopped generation still holds the engine until its next token, so replacing would not free it."""

    def __init__(self, ctx: AppContext, engine_cfg: EngineConfig | None = None) -> None:
        self.ctx, self.engine_cfg = ctx, engine_cfg
        self._sessions: OrderedDict[str, LiveSession] = OrderedDict()
        self._lock = threading.Lock()  # held while checking a person's running session and starting one

    def start(self, user: str, request: LiveRequest) -> LiveSession:
        check_access(self.ctx, user, request.study)
        check_token_cap(request, self.ctx.live_token_cap)
        engine = self.ctx.engine(self.engine_cfg or self.ctx.default_engine)
        extraction = studies.get_study(self.ctx.db, request.study).config.answer_extraction if request.study \
            else "none"
        session = LiveSession(user, request, Prioritised(engine, LIVE_PRIORITY), engine.info(),  # type: ignore[arg-type]
                              extraction)
        with self._lock:
            self._refuse_if_running(user)
            self._sessions[session.id] = session
            while len(self._sessions) > MAX_SESSIONS:
                _, old = self._sessions.popitem(last=False)
                old.stop()
            session.start()  # a new session: nothing to wait for
        return session

    def generate(self, user: str, request: LiveRequest, picked: str | None = None) -> LiveRun:
        """The Live tab's Generate: start a session and say which label controls to show. `picked`: the
        study prompt the person chose, recorded as the source only when the prompt sampled is its text
        unedited."""
        source = None
        if picked and request.study:
            text = prompt_text(self.ctx, user, request.study, picked)
            source = picked if text.strip() == request.messages[-1]["content"].strip() else None
        session = self.start(user, request.model_copy(update={"source_prompt": source}))
        return LiveRun(session=session, questions=questions(self.ctx, request.study))

    def regenerate(self, user: str, session_id: str | None, slots: list[int] | None,
                   study_name: str | None) -> LiveRun:
        """The Live tab's ↻ buttons: `restart`, with the label controls of the study chosen now."""
        session = self.restart(user, session_id, slots)
        return LiveRun(session=session, questions=questions(self.ctx, study_name))

    def restart(self, user: str, session_id: str | None, slots: list[int] | None = None) -> LiveSession:
        """New samples for some cards (all by default) of the person's own session, which may be running:
        its run is stopped and waited for first, outside the lock (until its next token)."""
        session = self.get(user, session_id)
        session.stop()
        session.wait()
        with self._lock:
            self._refuse_if_running(user)  # another of their sessions, or this one restarted meanwhile
            session.start(slots)
        return session

    def stop(self, user: str, session_id: str | None) -> None:
        """Stop the person's own session (what has arrived is kept)."""
        self.get(user, session_id).stop()

    def add(self, user: str, session_id: str | None, study_name: str | None,
            answers: labelling.Answers | None) -> AddResult:
        """The Live tab's Add to study: `add_to_study` of the person's own session (adding it again stores
        nothing new)."""
        session = self.get(user, session_id)
        if not study_name:
            raise ServiceError("choose the study to add to")
        return add_to_study(self.ctx, user, session, study_name, answers, f"live-{session.id}")

    def _refuse_if_running(self, user: str) -> None:
        running = next((s for s in self._sessions.values() if s.owner == user and s.busy()), None)
        if running is None:
            return
        if running.stopping():
            raise LiveBusy("your previous Live generation is still stopping: press Generate again in a moment")
        snap = running.snapshot()
        done = sum(c.state in ("done", "stopped", "failed") for c in snap.cards)
        what = f"{done} of {len(snap.cards)} samples complete" if not snap.sampling_done else "scoring the samples"
        raise LiveBusy(f"you already have a Live generation running ({what}); one runs at a time per person, so "
                       "that the model stays free for others. Wait for it to finish, or press Stop where it runs.")

    def get(self, user: str, session_id: str | None) -> LiveSession:
        if not session_id:
            raise ServiceError("generate first: there are no samples here yet")
        with self._lock:
            session = self._sessions.get(session_id or "")
        if session is None:
            raise ServiceError("this Live session has ended (the server restarted or it was replaced): "
                               "press Generate again")
        if session.owner != user:
            raise PermissionDenied("this Live session belongs to someone else")
        check_access(self.ctx, user, session.request.study)
        return session


def check_token_cap(request: LiveRequest, cap: int) -> None:
    """Refuse a request whose samples may take more than `cap` tokens in all (0: no cap)."""
    if cap and request.tokens() > cap:
        raise ServiceError(f"too much for one Live generation: {request.describe_tokens()}, and this server "
                           f"allows at most {cap:,} (critlab serve --live-token-cap). Ask for fewer samples or "
                           "fewer max tokens.")


def can_use(ctx: AppContext, user: str, study_name: str | None) -> bool:
    """Admins always; annotators only with a study that grants them the Live tab and has them as a member."""
    a = annotators.get_annotator(ctx.db, user)
    if a is None or a.disabled:
        return False
    if a.role == "admin":
        return True
    if not study_name:
        return False
    study = studies.get_study(ctx.db, study_name)
    return study.config.live_annotators and members.can_label(ctx.db, study.id, user)


def check_access(ctx: AppContext, user: str, study_name: str | None) -> None:
    if not can_use(ctx, user, study_name):
        raise PermissionDenied("the Live tab is for admins, or for the members of a study that grants it")


def granted_studies(ctx: AppContext, user: str) -> list[str]:
    """The studies this person may use the Live tab with (as `can_use` decides, in two queries: every open
    page asks on its refresh timer)."""
    a = annotators.get_annotator(ctx.db, user)
    if a is None or a.disabled:
        return []
    return granted_of(studies.list_studies(ctx.db), None if a.role == "admin" else members.studies_of(ctx.db, user))


def granted_of(every: list[Study], mine: set[int] | None) -> list[str]:
    """`granted_studies` from what its caller has read already: every study, and the ids of the person's
    (None: an admin, who may use every study)."""
    return [s.name for s in every if mine is None or (s.config.live_annotators and s.id in mine)]


# -- adding a session to a study ---------------------------------------------------------------------
def add_to_study(ctx: AppContext, user: str, session: LiveSession, study_name: str,
                 answers: labelling.Answers | None, idempotency_key: str) -> AddResult:
    """Store the prompt, its complete samples (one 'live' generation run per sampling setting), the
    model's judgments and the person's labels in one transaction. `answers` use card slots as response
    ids and checklist indexes as item ids. Adding the same session to the same study twice stores
    nothing new; stopped and failed cards are left out."""
    check_access(ctx, user, study_name)
    study = studies.get_study(ctx.db, study_name)
    if not session.wait(timeout=0):
        raise ServiceError("the model is still sampling or scoring: wait for it to finish (or press Stop)")
    if study.name in session.added:
        return session.added[study.name].model_copy(update={"already_added": True})
    done = [c for c in session.cards if c.state == "done"]
    if not done:
        raise ServiceError("no complete sample to add: generate first")
    with ctx.db.write():
        prompt_id, external = _insert_prompt(ctx, user, session, study)
        ids = _insert_samples(ctx, session, study, prompt_id, done)
        model_rows = _store_results(ctx, session, study, prompt_id, ids)
        label_ids = _store_labels(ctx, user, session, study, prompt_id, ids, answers, idempotency_key)
    result = AddResult(study=study.name, prompt_id=prompt_id, prompt_external_id=external, responses=len(ids),
                       model_judgments=model_rows, labels=len(label_ids))
    session.added[study.name] = result
    return result


def _insert_prompt(ctx: AppContext, user: str, session: LiveSession, study: Study) -> tuple[int, str]:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    external = f"live-{stamp}-{session.id[:6]}"
    meta = {"source": "live", "added_by": user}
    if session.request.source_prompt:
        meta["from_prompt"] = session.request.source_prompt
    prompts.insert_prompts(ctx.db, study.id, [PromptIn(external_id=external, messages=session.request.messages,
                                                       metadata=meta)])
    pid = prompts.find_prompt_id(ctx.db, study.id, external)
    return int(pid), external


def _run_mode(cards: list[LiveCard]) -> str | None:
    """The logprob mode of a Live run: its cards' (sampled on the embedded engine: raw; teacher-forced after an
    SGLang stream: raw too), None when unknown or mixed."""
    modes = {c.stats.logprob_mode for c in cards if c.stats is not None}
    return modes.pop() if len(modes) == 1 else None


def _insert_samples(ctx: AppContext, session: LiveSession, study: Study, prompt_id: int,
                    done: list[LiveCard]) -> dict[int, int]:
    """slot -> stored response id."""
    info, ids = session.info, {}
    for k, setting in enumerate(session.request.settings):
        cards = [c for c in done if c.setting == k]
        if not cards:
            continue
        run = studies.create_run(
            ctx.db, study.id, info.engine, info.model_id,
            SamplingSettings(n=len(cards), temperature=setting.temperature, top_p=setting.top_p,
                             max_tokens=setting.max_tokens),
            seed_base=cards[0].seed, seeds_honoured=info.seeds_honoured, logprob_mode=_run_mode(cards), kind="live")
        stored = responses.insert_responses(ctx.db, [
            ResponseIn(prompt_id=prompt_id, run_id=run.id, sample_index=i, origin="sampled", text=c.text,
                       engine=info.engine, model_id=info.model_id, seed=c.seed,
                       params={"temperature": setting.temperature, "top_p": setting.top_p,
                               "max_tokens": setting.max_tokens, "seed": c.seed},
                       finish_reason=c.finish_reason, stats=c.stats, metadata={"live_slot": c.slot})
            for i, c in enumerate(cards)])
        ids.update({c.slot: rid for c, rid in zip(cards, stored)})
    return ids


def _store_results(ctx: AppContext, session: LiveSession, study: Study, prompt_id: int, ids: dict[int, int]) -> int:
    written = 0
    for method_id, (inp, result, ms) in session.results.items():
        method: Method = get_method(method_id)
        real_inp = inp.model_copy(update={
            "prompt_id": prompt_id,
            "responses": [r.model_copy(update={"id": ids[r.id]}) for r in inp.responses if r.id in ids]})
        written += scoring.store_result(ctx, study, real_inp, method, session.info,
                                        _remap(result, ids), ms)
    return written


def _remap(result: MethodResult, ids: dict[int, int]) -> MethodResult:
    def rid(x: int | None) -> int | None:
        return ids.get(x) if x is not None else None

    return result.model_copy(update={
        "verdicts": [v.model_copy(update={"response_id": rid(v.response_id), "response_b_id": rid(v.response_b_id),
                                          "shown_order": [ids[i] for i in v.shown_order] if v.shown_order else None})
                     for v in result.verdicts],
        "new_responses": [r.model_copy(update={"parent_id": rid(r.parent_id)}) for r in result.new_responses]})


def _store_labels(ctx: AppContext, user: str, session: LiveSession, study: Study, prompt_id: int,
                  ids: dict[int, int], answers: labelling.Answers | None, key: str) -> list[int]:
    if answers is None or answers == labelling.Answers():
        return []
    item_ids = [i.id for i in cl.items] if (cl := checklists.get_checklist(ctx.db, prompt_id, method="checklist")) \
        else []

    def rid(slot: int) -> int:
        if slot not in ids:
            raise ServiceError(f"response {slot} is not a complete sample: label only complete responses")
        return ids[slot]

    def item(i: int) -> int:
        if not 0 <= i < len(item_ids):
            raise ServiceError(f"checklist item {i + 1} does not exist")
        return item_ids[i]

    order = [ids[c.slot] for c in session.cards if c.slot in ids]
    sub = labelling.submission(
        study=study.name, prompt_id=prompt_id, shown_order=order, stage="revealed",
        best=rid(answers.best) if answers.best is not None else None,
        ratings={rid(k): v for k, v in answers.ratings.items()},
        pairwise=answers.pairwise,
        correct={rid(k): v for k, v in answers.correct.items()},
        checklist_yes={rid(k): [item(i) for i in v] for k, v in answers.checklist_yes.items()},
        invalid_items=[item(i) for i in answers.invalid_items],
        critique={rid(k): v for k, v in answers.critique.items()},
        reference=answers.reference, comment=answers.comment, idempotency_key=key,
        duration_ms=None if session.samples_done_at is None else
        min(int((time.monotonic() - session.samples_done_at) * 1000), labelling.MAX_DURATION_MS))
    return labelling.submit(ctx, user, sub, source="live").judgment_ids


# -- what the Live tab offers --------------------------------------------------------------------------
DEFAULT_QUESTIONS = ["best", "rating", "comment"]


def questions(ctx: AppContext, study_name: str | None) -> list[str]:
    """The label controls to show: the chosen study's questions (labels are added to it)."""
    return list(studies.get_study(ctx.db, study_name).config.questions) if study_name else list(DEFAULT_QUESTIONS)


def study_prompts(ctx: AppContext, user: str, study_name: str) -> list[str]:
    """External ids of the study's prompts, to pick one instead of typing."""
    check_access(ctx, user, study_name)
    return prompt_ids(ctx, studies.get_study(ctx.db, study_name))


def prompt_ids(ctx: AppContext, study: Study) -> list[str]:
    """`study_prompts` for a caller that has checked access already (a study `granted_of` listed)."""
    return [p.external_id for p in prompts.list_prompts(ctx.db, study.id)]


def prompt_text(ctx: AppContext, user: str, study_name: str, external_id: str) -> str:
    """The last user message of a study prompt (what the Live tab's prompt box shows)."""
    check_access(ctx, user, study_name)
    study = studies.get_study(ctx.db, study_name)
    pid = prompts.find_prompt_id(ctx.db, study.id, external_id)
    if pid is None:
        raise ServiceError(f"no prompt {external_id!r} in study {study.name!r}")
    chat = prompts.chat(prompts.get_prompt(ctx.db, pid))
    return next((m["content"] for m in reversed(chat) if m["role"] == "user"), "")
