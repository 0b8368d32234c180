"""What every section of the agreement report shares: the names the report gives to judge groups, its
constants, and the shape of one figure (`_figure`) or of a section without data (`_unavailable`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from storage.human_labels import CORRECT_LABELS
from storage.models import HumanMethod

if TYPE_CHECKING:  # only for the annotation: intervals imports this module
    from storage.analysis.report.intervals import _CI


FORMAT = "critlab.agreement/3"
STAGES = ("blind", "revealed")
LEVEL = 0.95
HUMANS = "humans"
CONSENSUS = "human consensus"
LOO = "other humans (consensus)"
LOO_MEAN = "other humans (mean rating)"
MEAN_RATING = "humans (mean rating)"
RANDOM = "random (1/N)"
CORRECT_CLASSES = CORRECT_LABELS  # the labels a correctness judgment holds (storage.human_labels)
TOP_DISAGREED = 20
MAX_LISTED_UNITS = 100
# Model rows stored under another id than their method's (the checklist method's per-item answers).
METHOD_OF = {HumanMethod.CHECKLIST_ITEM: "checklist"}
VOTE = ["prompt_id", "unit", "judge", "label"]


def _num(x: Any) -> float | None:
    """A finite float, or None (nan, inf, None)."""
    if x is None:
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _figure(metric: str, judges: Sequence[str], value: Any, n: Any, ci: list[float] | _CI | None = None,
            **extra: Any) -> dict[str, Any]:
    return {"metric": metric, "judges": [str(j) for j in judges], "value": _num(value),
            "n": int(n or 0), "ci": ci, **extra}


def _unavailable(reason: str) -> dict[str, Any]:
    return {"available": False, "reason": reason}


def _f(x: Any, digits: int = 3) -> str:
    v = _num(x)
    return "–" if v is None else f"{v:.{digits}f}"


def _est(x: dict[str, Any] | None) -> str:
    """An estimate with its interval as '0.612 [0.540, 0.684]' ('–' without an estimate)."""
    if not x or x.get("estimate") is None:
        return "–"
    ci = x.get("ci")
    return f"{_f(x.get('estimate'))} [{_f(ci[0])}, {_f(ci[1])}]" if ci else _f(x.get("estimate"))
