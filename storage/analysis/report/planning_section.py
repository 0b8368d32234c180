"""The report's `planning` section: how many more labels would halve the interval of each headline figure
(from its bootstrap interval) and of each PPI++ estimate (`storage.analysis.planning`)."""

from __future__ import annotations

import math
from typing import Any

from storage.analysis.planning import labels_for_width, ppi_labels_for_width
from storage.analysis.ppi import z_value
from storage.analysis.report.figures import LEVEL, _unavailable

TARGET_SHARE = 0.5  # the target width: half the current one


def _plan(fig: dict[str, Any]) -> dict[str, Any] | None:
    ci, n = fig.get("ci"), fig.get("n") or 0
    if not ci or n < 1 or ci[1] is None or ci[0] is None or ci[1] <= ci[0]:
        return None
    width = ci[1] - ci[0]
    se = width / (2 * z_value(LEVEL))  # the bootstrap interval read as a normal one
    r = labels_for_width(se, int(n), TARGET_SHARE * width, LEVEL)
    return {"metric": fig["metric"], "value": fig.get("value"), "n": int(n), "width_now": width,
            "target_width": TARGET_SHARE * width, "n_needed": r["n_needed"], "more": r["more"]}


def _planning(rep: dict[str, Any]) -> dict[str, Any]:
    rows = []
    hl = rep.get("headline", {})
    for r in hl.get("rows", []) if hl.get("available") else []:
        for key in ("main", "ceiling"):
            fig = r.get(key)
            plan = _plan(fig) if fig else None
            if plan:
                rows.append({"judge": r["judge"], "method": r["method"], "figure": key, **plan})
    ppi_rows = []
    pp = rep.get("ppi", {})
    for r in pp.get("rows", []) if pp.get("available") else []:
        if not r.get("available"):
            continue
        lo, hi = r["ppi_plus"]["ci"]
        width = hi - lo
        if not width > 0:
            continue
        res = {"sd_rectifier": r["sd_rectifier"], "sd_imputed": r["sd_imputed"], "n_unlabelled": r["n_unlabelled"],
               "n_labelled": r["n_labelled"], "level": LEVEL}
        plan = ppi_labels_for_width(res, TARGET_SHARE * width)
        ppi_rows.append({"judge": r["judge"], "method": r["method"], "target": r["target"],
                         **{k: r[k] for k in ("level", "a", "b") if k in r}, "n": r["n_labelled"],
                         "width_now": width, "target_width": TARGET_SHARE * width,
                         "n_needed": None if math.isinf(plan["n_needed"]) else plan["n_needed"],
                         "more": None if math.isinf(plan["more"]) else plan["more"], "floor": plan["floor"]})
    if not rows and not ppi_rows:
        return _unavailable("no headline figure or PPI estimate with an interval to plan from")
    return {"available": True, "target": "half the current interval width", "level": LEVEL,
            "assumption": ("se shrinks as 1/sqrt(n) with the spread measured so far; the bootstrap interval is read "
                           "as a normal one, se = width / (2 z); n counts the figure's units (labels, pairs, "
                           "prompts); PPI++: lambda and the unlabelled predictions held fixed, null when the "
                           "target lies below the floor more labels cannot pass"),
            "headline": rows, "ppi": ppi_rows}
