"""The method table (docs/methods.md opens with it; `critlab methods` prints it), built from the
method classes so the docs and the agreement report read one source."""

from __future__ import annotations

from backend.methods.registry import DEFAULT_METHODS, all_methods
from storage.models import HumanMethod

HUMAN_QUESTION: dict[str, str] = {
    HumanMethod.CORRECT: "human correct / incorrect",
    HumanMethod.RATING: "human 1–7 rating",
    HumanMethod.BEST: "human best pick",
    HumanMethod.PAIRWISE: "human pairwise vote",
    "checklist": "human YES/NO on the same checklist items",
}
METRICS = {
    "calibration": "AUROC, Brier, ECE (10 equal-count bins, tied probabilities kept whole)",
    "rank": "Spearman / Kendall τ-b per prompt and pooled",
    "top1": "top-1 accuracy vs random (1/N) and majority",
    "agreement": "agreement (with/without ties), Cohen's κ",
}
HEADER = ("| id | version | layer | output (higher = better) | cost | source | compared with | metrics |\n"
          "|---|---|---|---|---|---|---|---|")


def method_table_markdown() -> str:
    rows = [HEADER]
    for m in all_methods():
        rows.append(f"| `{m.id}` | {m.version} | {m.layer} | {m.outputs} | {m.cost} | {m.source} | "
                     f"{HUMAN_QUESTION[m.compared_with]} | {METRICS[m.metric_family]} |")
    return "\n".join(rows)


def calls_table_markdown() -> str:
    """Which methods run by default and what each asks of the engine per prompt (the unit the Score
    button's time estimate counts in)."""
    rows = ["| id | default | engine calls |", "|---|---|---|"]
    for m in all_methods():
        rows.append(f"| `{m.id}` | {'yes' if m.id in DEFAULT_METHODS else ''} | {m.calls_brief} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(method_table_markdown())
    print()
    print(calls_table_markdown())
