"""Where an item's cards come from: one generation run (the default), or several runs and the imported
responses of a study (StudyConfig.label_runs), mixed into at most MAX_RESPONSES cards per prompt.

The mix, the one rule for the Label tab, the submit check, scoring and the queue's readiness:
- each source gives its responses of the prompt in its own order (a run: by sample index; "imported":
  the prompt's imported and reference responses, by id);
- the sources are put in a per-prompt order, a shuffle seeded by (study id, prompt id) (so no source is
  always first when the cap cuts the set, and the order is the same on every read);
- cards are taken round-robin in that order, one response of each source per round, a source that has
  no more responses being passed over, until MAX_RESPONSES cards or every source is empty.
With one source this is that source's first MAX_RESPONSES responses, as before.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from typing import NamedTuple, TypeVar

from storage.models import MAX_RESPONSES

IMPORTED = "imported"  # the source name of a study's imported (and reference) responses

T = TypeVar("T")


class LabelSources(NamedTuple):
    """The label set's sources: generation runs in the study's order, and whether the imported responses
    are one. `need`: how many sampled responses the listed runs must hold of a prompt for it to be ready
    (the sum of their n; a run holds at most n samples of a prompt, one per sample index)."""

    runs: tuple[int, ...] = ()
    need: int = 0
    imported: bool = False

    @classmethod
    def of_run(cls, run_id: int | None, n: int) -> LabelSources:
        """One run's n samples, or (None) the imported responses."""
        return cls((run_id,), n, False) if run_id is not None else cls((), 0, True)

    @property
    def single_run(self) -> int | None:
        """The run, when the set is exactly one run's samples (the label loop's fast path)."""
        return self.runs[0] if len(self.runs) == 1 and not self.imported else None

    @property
    def names(self) -> list[int | str]:
        return [*self.runs, *([IMPORTED] if self.imported else [])]


def source_order(study_id: int, prompt_id: int, sources: Sequence[int | str]) -> list[int | str]:
    """The prompt's order of the sources: a shuffle seeded by (study, prompt), independent of the order
    they are listed in.

    >>> source_order(1, 7, [3, 4, "imported"]) == source_order(1, 7, ["imported", 4, 3])
    True
    """
    ordered = sorted(sources, key=str)
    seed = int.from_bytes(hashlib.sha256(f"sources:{study_id}:{prompt_id}".encode()).digest()[:8], "big")
    random.Random(seed).shuffle(ordered)
    return ordered


def mix(study_id: int, prompt_id: int, groups: dict[int | str, list[T]]) -> list[T]:
    """The cards of one prompt from each source's responses (see the module's rule).

    >>> len(mix(1, 1, {1: list(range(6)), 2: list(range(10, 16))}))
    8
    >>> sorted(mix(1, 1, {1: [1, 2], 2: [20, 21, 22, 23, 24, 25, 26, 27]}))[:2]
    [1, 2]
    """
    queues = [list(groups[s]) for s in source_order(study_id, prompt_id, list(groups))]
    out: list[T] = []
    while len(out) < MAX_RESPONSES and any(queues):
        for q in queues:
            if q and len(out) < MAX_RESPONSES:
                out.append(q.pop(0))
    return out
