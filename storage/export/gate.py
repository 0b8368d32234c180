"""The gold gate as an export applies it (storage.gold): the people whose labels it leaves out, how many of the
labels the export reads were theirs, and the gold items, for the summary, the message and the card."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from storage import gold
from storage.db import Database
from storage.export.data import gated_labels


@dataclass(frozen=True)
class ExportGate:
    gate: gold.Gate = gold.Gate(None, (), ())
    labels: dict[str, int] = field(default_factory=dict)  # gated person → their labels the export would read

    @classmethod
    def of(cls, db: Database, study_id: int, g: gold.Gate, human_methods: list[str]) -> ExportGate:
        return cls(g, gated_labels(db, study_id, human_methods, g.names))

    @property
    def names(self) -> list[str]:
        return self.gate.names

    def summary(self) -> dict[str, Any]:
        """The `gated` key of the export summary and of export_run.counts; real names (admins read these)."""
        return {"min_accuracy": self.gate.min_accuracy, "min_answers": gold.MIN_GOLD_ANSWERS,
                "gold_items": len(self.gate.gold_prompts), "labels": sum(self.labels.values()),
                "annotators": [{"annotator": a.annotator, "accuracy": a.accuracy, "answered": a.answered,
                                "labels": self.labels.get(a.annotator, 0)} for a in self.gate.people]}

    def note(self) -> str:
        """The message's tail: what the gate left out (empty when nobody is gated).

        >>> ExportGate(gold.Gate(0.8, (gold.GoldAccuracy("ann", 5, 2, 0.4),), (7,)), {"ann": 3}).note()
        '; gold gate: 3 labels of ann left out (gold accuracy below 80%)'
        """
        if not self.gate.people:
            return ""
        n = sum(self.labels.values())
        return (f"; gold gate: {n} label{'s' if n != 1 else ''} of {', '.join(self.names)} left out "
                f"(gold accuracy below {self.gate.min_accuracy:.0%})")

    def card_filters(self, alias: Callable[[str], str]) -> dict[str, str]:
        """The card's filter lines, annotators named as everywhere in the card (pseudonyms unless
        --annotator-names)."""
        out: dict[str, str] = {}
        if self.gate.gold_prompts:
            out["gold_items"] = (f"{len(self.gate.gold_prompts)} prompts with a gold answer left out (gold items "
                                 "are not data)")
        if self.gate.min_accuracy is not None:
            who = ", ".join(f"{alias(a.annotator)} ({a.accuracy:.0%} of {a.answered} gold answers; "
                            f"{self.labels.get(a.annotator, 0)} labels)" for a in self.gate.people)
            out["gold_gate"] = (f"labels of annotators below {self.gate.min_accuracy:.0%} gold accuracy (over at "
                                f"least {gold.MIN_GOLD_ANSWERS} gold answers) left out: "
                                f"{sum(self.labels.values())} labels" + (f" of {who}" if who else "; nobody gated"))
        return out
