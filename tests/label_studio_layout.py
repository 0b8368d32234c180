"""Label Studio's documented task layout, checked without Label Studio (its SDK would pin numpy below the
version critlab runs with): written from the task-format, predictions and tag docs (labelstud.io/guide/
task_format, /guide/predictions, /tags/pairwise, /tags/rating, /tags/choices)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

CONTROL_TYPES = {"Pairwise": "pairwise", "Rating": "rating", "Choices": "choices", "TextArea": "textarea"}
OBJECTS = {"Text", "HyperText", "Paragraphs"}


def problems(config_xml: str, tasks: list[dict[str, Any]]) -> list[str]:
    """Everything in `tasks` that Label Studio's documented layout does not allow with this config."""
    out: list[str] = []
    root = ET.fromstring(config_xml)
    if root.tag != "View":
        return [f"the config's root is <{root.tag}>, not <View>"]
    objects = {e.get("name"): e for e in root.iter() if e.tag in OBJECTS}
    controls = {e.get("name"): e for e in root.iter() if e.tag in CONTROL_TYPES}
    names = [e.get("name") for e in root.iter() if e.get("name")]
    if len(names) != len(set(names)):
        out.append("tag names repeat")
    for name, c in controls.items():
        for target in (c.get("toName") or "").split(","):
            if target not in objects:
                out.append(f"control {name} points at {target!r}, which is no object tag")
        if c.tag == "Pairwise" and len(c.get("toName", "").split(",")) != 2:
            out.append(f"Pairwise {name} must name two objects")
    variables = {re.sub(r"^\$", "", o.get("value", "")) for o in objects.values()}
    for n, task in enumerate(tasks):
        data = task.get("data")
        if not isinstance(data, dict):
            out.append(f"task {n}: no data object")
            continue
        for v in variables:
            if not isinstance(data.get(v), str):
                out.append(f"task {n}: data.{v} is missing or not text")
        for kind, key in (("annotations", "completed_by"), ("predictions", "model_version")):
            for m, ann in enumerate(task.get(kind, [])):
                where = f"task {n} {kind}[{m}]"
                if key not in ann:
                    out.append(f"{where}: no {key}")
                if kind == "predictions" and "score" in ann and not isinstance(ann["score"], int | float):
                    out.append(f"{where}: score is not a number")
                for r in ann.get("result", []):
                    out += [f"{where}: {p}" for p in _result_problems(r, controls)]
    return out


def _result_problems(r: dict[str, Any], controls: dict[str, ET.Element]) -> list[str]:
    c = controls.get(r.get("from_name"))
    if c is None:
        return [f"from_name {r.get('from_name')!r} is no control tag"]
    out = []
    if r.get("to_name") != c.get("toName"):
        out.append(f"{c.get('name')}: to_name {r.get('to_name')!r} is not the tag's toName {c.get('toName')!r}")
    if r.get("type") != CONTROL_TYPES[c.tag]:
        out.append(f"{c.get('name')}: type {r.get('type')!r} is not {CONTROL_TYPES[c.tag]!r}")
    v = r.get("value", {})
    if c.tag == "Pairwise" and v.get("selected") not in ("left", "right"):
        out.append(f"{c.get('name')}: selected must be left or right")
    if c.tag == "Rating":
        top = int(c.get("maxRating", 5))
        if not isinstance(v.get("rating"), int) or not 1 <= v["rating"] <= top:
            out.append(f"{c.get('name')}: rating must be a whole number 1-{top}")
    if c.tag == "Choices":
        allowed = {ch.get("value") for ch in c.iter("Choice")}
        picked = v.get("choices")
        if not isinstance(picked, list) or not picked or not set(picked) <= allowed:
            out.append(f"{c.get('name')}: choices {picked!r} not among {sorted(allowed)}")
        if c.get("choice", "single") == "single" and isinstance(picked, list) and len(picked) > 1:
            out.append(f"{c.get('name')}: a single choice holds one value")
    if "meta" in r and not (isinstance(r["meta"], dict) and isinstance(r["meta"].get("text"), list)):
        out.append(f"{c.get('name')}: meta must be {{'text': [...]}}")
    return out
