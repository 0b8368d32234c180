"""A small reference model of the labelling protocol, written from its rules (DESIGN.md, "The labelling
protocol", and issue 13's study members) and not from the service code: who may label the study (its
members), what each person has answered at each stage, what they have seen, what they hold reserved,
skipped and labelled, and what the study asks for.

tests/test_protocol_machine.py drives the real service layer and this model side by side.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from storage.label_sources import source_order

MAX_CARDS = 8
Stage = str  # "blind" | "revealed"
# One stored answer: (method, response id or None, value or text).
Answer = tuple[str, int | None, object]


@dataclass
class Settings:
    blind: bool = True
    reveal: bool = True
    overlap: int | None = None
    extra: int = 0
    label_runs: list[int | str] = field(default_factory=list)  # empty: the latest run
    queue_order: str = "position"
    gold_rate: float = 0.0


@dataclass
class ProtocolModel:
    prompts: list[int]  # in file order
    settings: Settings = field(default_factory=Settings)
    # (person, prompt, stage) -> (the current answers of that stage, the number of the submit that made them)
    current: dict[tuple[str, int, Stage], tuple[frozenset[Answer], int]] = field(default_factory=dict)
    seen: set[tuple[str, int]] = field(default_factory=set)  # shown the model's view, or stored a revised label
    held: dict[str, list[int]] = field(default_factory=dict)  # open reservations, oldest first
    skipped: dict[str, dict[int, int]] = field(default_factory=dict)  # person -> prompt -> when last skipped
    requeues: dict[int, int] = field(default_factory=dict)
    flagged: set[int] = field(default_factory=set)  # the humans' blind best picks split
    submits: int = 0  # a clock: every submit and skip ticks it
    stored_rows: int = 0  # human judgment rows ever stored (superseded ones included)
    members: set[str] = field(default_factory=set)  # who may label the study; anyone else is refused everything
    study_id: int = 0
    # prompt -> source (a run id or "imported") -> its response ids in source order
    responses: dict[int, dict[int | str, list[int]]] = field(default_factory=dict)
    run_n: dict[int, int] = field(default_factory=dict)  # samples per prompt of each run
    latest_run: int | None = None
    # (person, prompt) -> the policy of the last fresh serving (a renewal of one's own reservation keeps it)
    served: dict[tuple[str, int], str] = field(default_factory=dict)
    gold: set[int] = field(default_factory=set)  # prompts with a gold answer

    # -- the label set ----------------------------------------------------------------------------------
    def sources(self) -> list[int | str]:
        return self.settings.label_runs or ([self.latest_run] if self.latest_run is not None else ["imported"])

    def cards(self, pid: int) -> list[int]:
        """The label set: one response of each source per round, in the prompt's seeded source order, at
        most MAX_CARDS."""
        queues = [list(self.responses[pid].get(s, [])) for s in source_order(self.study_id, pid, self.sources())]
        out: list[int] = []
        while len(out) < MAX_CARDS and any(queues):
            for q in queues:
                if q and len(out) < MAX_CARDS:
                    out.append(q.pop(0))
        return out

    def ready(self, pid: int) -> bool:
        """Every listed run holds its n samples of the prompt (and the imported source, if listed, one)."""
        return all(len(self.responses[pid].get(s, [])) >= (self.run_n[s] if s in self.run_n else 1)
                   for s in self.sources())

    # -- what the rules say ---------------------------------------------------------------------------
    def labelled(self, who: str, pid: int) -> bool:
        return any((who, pid, s) in self.current for s in ("blind", "revealed"))

    def has_seen(self, who: str, pid: int) -> bool:
        return (who, pid) in self.seen

    def latest_stage(self, who: str, pid: int) -> Stage:
        return "revealed" if not self.settings.blind or self.has_seen(who, pid) else "blind"

    def prefill(self, who: str, pid: int, stage: Stage) -> frozenset[Answer]:
        """What an item opens with: the answers of its stage, a reveal step starting from the blind ones."""
        for s in (stage, "blind"):
            if (who, pid, s) in self.current:
                return self.current[(who, pid, s)][0]
        return frozenset()

    def needed(self, pid: int) -> int | None:
        s = self.settings
        if s.overlap is None:
            return None
        return s.overlap + self.requeues.get(pid, 0) + (s.extra if pid in self.flagged else 0)

    def others_busy(self, who: str, pid: int) -> int:
        people = {w for (w, p, _) in self.current if p == pid} | {w for w, ps in self.held.items() if pid in ps}
        return len(people - {who})

    def eligible(self, who: str, exclude: int | None) -> list[int]:
        return [p for p in self.prompts if p != exclude and not self.labelled(who, p) and self.ready(p)
                and not self.gold_served(p)
                and (self.needed(p) is None or self.others_busy(who, p) < self.needed(p))]

    def own_reservation(self, who: str, exclude: int | None) -> int | None:
        return next((p for p in self.held.get(who, []) if p != exclude and not self.labelled(who, p)
                     and self.ready(p)), None)

    def history(self, who: str) -> list[int]:
        """Labelled prompts, by the first submit among the ones whose answers are still current."""
        first: dict[int, int] = {}
        for (w, p, _), (_, at) in self.current.items():
            if w == who:
                first[p] = min(first.get(p, at), at)
        return sorted(first, key=first.__getitem__)

    def gold_served(self, pid: int) -> bool:
        """Gold items leave the routine queue while the gold rate is above 0."""
        return self.settings.gold_rate > 0 and pid in self.gold

    def gold_open(self, who: str, exclude: int | None) -> list[int]:
        """Gold items the person may be served, in serving order: never skipped by them first, in file order,
        then the skipped ones, the oldest skip first (overlap does not apply)."""
        skipped = self.skipped.get(who, {})
        open_ = [p for p in self.prompts if p in self.gold and p != exclude and not self.labelled(who, p)
                 and self.ready(p)]
        return sorted(open_, key=lambda p: (p in skipped, skipped.get(p, 0), self.prompts.index(p)))

    def policy(self, who: str, pid: int) -> str:
        """How a fresh serving is recorded: "disagreement" for an annotator beyond the overlap and its
        re-queues (there only because the prompt is flagged), else the queue order in force."""
        s = self.settings
        if self.gold_served(pid):
            return "gold"
        if s.overlap is not None and self.others_busy(who, pid) >= s.overlap + self.requeues.get(pid, 0):
            return "disagreement"
        return s.queue_order

    # -- what the actions do ----------------------------------------------------------------------------
    def serve(self, who: str, pid: int, stage: Stage, reserve: bool) -> None:
        if stage == "revealed":
            self.seen.add((who, pid))
        if reserve:  # a new reservation, or a renewed one, which makes it the newest
            held = self.held.setdefault(who, [])
            if pid in held:
                held.remove(pid)
            held.append(pid)

    def submit(self, who: str, pid: int, stage: Stage, answers: frozenset[Answer]) -> None:
        self.submits += 1
        self.current[(who, pid, stage)] = (answers, self.submits)
        self.stored_rows += len(answers)
        if stage == "revealed":
            self.seen.add((who, pid))
        if pid in self.held.get(who, []):
            self.held[who].remove(pid)
        picks = {r for (w, p, s), (ans, _) in self.current.items() if p == pid and s == "blind"
                 for m, r, _ in ans if m == "best_of_n"}
        (self.flagged.add if len(picks) > 1 else self.flagged.discard)(pid)

    def add_member(self, who: str) -> None:
        self.members.add(who)

    def remove_member(self, who: str) -> None:
        """Their reservations are released; what they labelled stays (and still counts toward the overlap)."""
        self.members.discard(who)
        self.held.pop(who, None)

    def skip(self, who: str, pid: int) -> None:
        self.submits += 1
        self.skipped.setdefault(who, {})[pid] = self.submits
        if pid in self.held.get(who, []):
            self.held[who].remove(pid)
