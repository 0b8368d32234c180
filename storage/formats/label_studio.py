"""Label Studio tasks (read and write), with the labelling config that makes them open in Label Studio.

Written layout (`<out>.json`, a JSON array of tasks, and `<out stem>.config.xml`): one task per item;
`data` holds `prompt` and `r1`..`rN` (the item's responses in order; "" where an item has fewer) and a
`critlab` object (item id, response ids and models, the chat when the prompt is more than one message,
annotator names by `completed_by` id). The config shows the prompt and the responses and has one control
per question the file answers:

- `Pairwise name="pair_<i>_<j>" toName="r<i>,r<j>"` (r<i> shown left) and `Choices name="pair_<i>_<j>_tie"`
  (`tie`, `both_bad`) for pairwise verdicts;
- `Rating name="rating_<i>" toName="r<i>" maxRating="<highest>"` for ratings on a 1..highest scale;
- `Choices name="correct_<i>"` (`correct`, `incorrect`) and `Choices name="best"` (`r1`..`rN`).

Human judgments are `annotations` (one per person, `completed_by` = a number named in `data.critlab`),
model judgments `predictions` (one per verdict, `model_version` = the model, `score` = its probability
of the predicted winner). Read: a task file plus the project's config beside it (`<stem>.config.xml`); the
controls above are read by type (Pairwise, Rating, Choices with correct/incorrect, `best`, `*_tie`) and
anything else is kept in the prompt's metadata.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from storage.fileio import atomic_file, kind, sha256_file
from storage.formats.common import Source, Tally, json_records, need

SUFFIXES = (".json",)
TIE_WORDS = ("tie", "both_bad")


def config_path(tasks: str | Path) -> Path:
    p = Path(tasks)
    return p.with_name(f"{p.stem}.config.xml")


# -- write -----------------------------------------------------------------------------------------
def write(items: list[dict[str, Any]], out: Path, *, study: Any = None) -> tuple[str, Counter[str], dict[str, Any]]:
    lost: Counter[str] = Counter()
    n_max = max((len(i["responses"]) for i in items), default=0)
    pairs: set[tuple[int, int]] = set()
    scales: Counter[int] = Counter()
    uses = {"correct": False, "best": False}
    for it in items:
        pos = {r["id"]: k for k, r in enumerate(it["responses"], 1)}
        for j in it["judgments"]:
            if j["type"] == "pairwise":
                pairs.add((pos[j["shown"][0]], pos[j["shown"][1]]))
            elif "scale" in j and _whole_scale(j):
                scales[int(j["scale"][1])] += 1
            uses["correct"] |= j["type"] == "correct"
            uses["best"] |= j["type"] == "best_of_n"
    top = max(scales, default=None)
    tasks = [_task(it, top, n_max, lost) for it in items]
    with atomic_file(out) as (_, f):
        f.write(b"[\n")
        for n, task in enumerate(tasks):
            f.write((("," if n else "") + json.dumps(task, ensure_ascii=False) + "\n").encode())
        f.write(b"]\n")
    config = config_path(out)
    with atomic_file(config) as (_, f):
        f.write(label_config(n_max, sorted(pairs), top, **uses).encode())
    return sha256_file(out), lost, {"label_config": str(config.resolve())}


def _whole_scale(j: dict[str, Any]) -> bool:
    lo, hi = j["scale"]
    return lo == 1 and float(hi).is_integer() and float(j["score"]).is_integer()


def label_config(n: int, pairs: list[tuple[int, int]], max_rating: int | None, *, correct: bool, best: bool) -> str:
    """The labelling config (XML) for tasks with up to `n` responses."""
    view = ET.Element("View")
    ET.SubElement(view, "Header", value="Prompt")
    ET.SubElement(view, "Text", name="prompt", value="$prompt")
    for k in range(1, n + 1):
        ET.SubElement(view, "Header", value=f"Response {k}")
        ET.SubElement(view, "Text", name=f"r{k}", value=f"$r{k}")
        if max_rating:
            ET.SubElement(view, "Rating", name=f"rating_{k}", toName=f"r{k}", maxRating=str(max_rating))
        if correct:
            ch = ET.SubElement(view, "Choices", name=f"correct_{k}", toName=f"r{k}", choice="single")
            for v in ("correct", "incorrect"):
                ET.SubElement(ch, "Choice", value=v)
    if best and n:
        ET.SubElement(view, "Header", value="Best response")
        ch = ET.SubElement(view, "Choices", name="best", toName="prompt", choice="single")
        for k in range(1, n + 1):
            ET.SubElement(ch, "Choice", value=f"r{k}")
    for i, j in pairs:
        ET.SubElement(view, "Header", value=f"Response {i} (left) vs response {j} (right)")
        ET.SubElement(view, "Pairwise", name=f"pair_{i}_{j}", toName=f"r{i},r{j}")
        ch = ET.SubElement(view, "Choices", name=f"pair_{i}_{j}_tie", toName="prompt", choice="single")
        for v in TIE_WORDS:
            ET.SubElement(ch, "Choice", value=v)
    ET.indent(view)
    return ET.tostring(view, encoding="unicode") + "\n"


def _task(it: dict[str, Any], top: int | None, n_max: int, lost: Counter[str]) -> dict[str, Any]:
    pos = {r["id"]: k for k, r in enumerate(it["responses"], 1)}
    prompt = it.get("prompt") or "\n\n".join(f"{m['role']}: {m['content']}" for m in it["messages"])
    meta: dict[str, Any] = {"item_id": it["item_id"],
                            "responses": {f"r{k}": {key: r[key] for key in ("id", "model", "metadata") if key in r}
                                          for k, r in enumerate(it["responses"], 1)}}
    if "messages" in it:
        meta["messages"] = it["messages"]
    for key in ("category", "reference", "metadata"):
        if key in it:
            meta[key] = it[key]
    # Every task fills every object the config shows: "" where this item has fewer responses.
    data: dict[str, Any] = {"prompt": prompt, **{f"r{k}": "" for k in range(1, n_max + 1)},
                            **{f"r{k}": r["text"] for k, r in enumerate(it["responses"], 1)}}
    people: dict[str, int] = {}
    annotations: dict[str, list[dict[str, Any]]] = {}
    predictions: list[dict[str, Any]] = []
    for j in it["judgments"]:
        if j.get("stage", "blind") != "blind":
            lost["label_studio: revealed-stage labels (Label Studio has one label per person)"] += 1
            continue
        result, score = _result(j, pos, top)
        if result is None:
            lost[f"label_studio: {score}"] += 1
            continue
        if j.get("rationale"):
            result["meta"] = {"text": [j["rationale"]]}  # a result's own note (Label Studio's region meta)
        if j["judge_kind"] == "human":
            annotations.setdefault(j["judge"], []).append(result)
            people.setdefault(j["judge"], len(people) + 1)
        else:
            pred: dict[str, Any] = {"model_version": j["judge"], "result": [result]}
            if score is not None:
                pred["score"] = score
            predictions.append(pred)
    meta["annotators"] = {str(uid): name for name, uid in people.items()}
    data["critlab"] = meta
    return {"data": data,
            "annotations": [{"completed_by": people[name], "result": res, "was_cancelled": False,
                             "ground_truth": False} for name, res in annotations.items()],
            "predictions": predictions}


def _result(j: dict[str, Any], pos: dict[str, int], top: int | None) -> tuple[dict[str, Any] | None, Any]:
    """(the result object, the prediction score) or (None, why it cannot be written)."""
    t = j["type"]
    if t == "pairwise":
        a, b = (pos[s] for s in j["shown"])
        if j["winner"] in TIE_WORDS:
            res = {"from_name": f"pair_{a}_{b}_tie", "to_name": "prompt", "type": "choices",
                   "value": {"choices": [j["winner"]]}}
        else:
            res = {"from_name": f"pair_{a}_{b}", "to_name": f"r{a},r{b}", "type": "pairwise",
                   "value": {"selected": "left" if pos[j["winner"]] == a else "right"}}
        prob = j.get("prob", {}).get(j["winner"]) if j["judge_kind"] == "model" else None
        return res, prob
    if "scale" in j and (t == "likert" or (t == "rating" and j["judge_kind"] == "model")):
        if not _whole_scale(j) or int(j["scale"][1]) != top:
            return None, f"ratings on a scale other than 1-{top}"
        k = pos[j["response"]]
        return {"from_name": f"rating_{k}", "to_name": f"r{k}", "type": "rating",
                "value": {"rating": int(j["score"])}}, None
    if t == "correct" and j["judge_kind"] == "human":
        k = pos[j["response"]]
        return {"from_name": f"correct_{k}", "to_name": f"r{k}", "type": "choices",
                "value": {"choices": ["correct" if j["value"] else "incorrect"]}}, None
    if t == "best_of_n" and j["judge_kind"] == "human":
        return {"from_name": "best", "to_name": "prompt", "type": "choices",
                "value": {"choices": [f"r{pos[j['winner']]}"]}}, None
    return None, "model scores other than ratings and pairwise verdicts"


# -- read ------------------------------------------------------------------------------------------
def _tags(src: Source) -> dict[str, dict[str, Any]]:
    """The config's tags by name: `{"tag": "Text"|"Pairwise"|..., "to": [...], "value": "$x", "choices": [...]}`."""
    path = config_path(src.path)
    shown = path.name
    if not path.is_file():
        raise src.err(0, None, f"needs the project's labelling config beside it as {shown} (in Label Studio: "
                      "Settings → Labeling Interface → Code)")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise src.err(0, None, f"{shown} is not valid XML: {e}") from None
    tags: dict[str, dict[str, Any]] = {}
    for el in root.iter():
        name = el.get("name")
        if not name:
            continue
        tags[name] = {"tag": el.tag, "to": [t.strip() for t in (el.get("toName") or "").split(",") if t.strip()],
                      "value": el.get("value"), "max": int(el.get("maxRating") or 5),
                      "choices": [c.get("value") for c in el.iter("Choice")]}
    return tags


def read(src: Source, tally: Tally) -> Iterator[tuple[int, dict[str, Any]]]:
    tags = _tags(src)
    targeted = {t for tag in tags.values() if tag["tag"] != "Text" for t in tag["to"]}
    texts = [n for n, t in tags.items() if t["tag"] in ("Text", "HyperText", "Paragraphs")]
    responses = [n for n in texts if n in targeted and n != "prompt"]
    prompt_obj = "prompt" if "prompt" in texts else next((n for n in texts if n not in responses), None)
    if prompt_obj is None:
        raise src.err(0, None, f"{config_path(src.path).name} has no Text object for the prompt")
    for line, task in json_records(src):
        if not isinstance(task, dict):
            raise src.err(line, None, f"expected a task object, got {kind(task)}")
        yield line, _item(task, line, src, tally, tags, prompt_obj, responses)


def _var(tags: dict[str, dict[str, Any]], name: str) -> str:
    return re.sub(r"^\$", "", tags[name]["value"] or name)


def _item(task: dict[str, Any], line: int, src: Source, tally: Tally, tags: dict[str, dict[str, Any]],
          prompt_obj: str, responses: list[str]) -> dict[str, Any]:
    data = need(task, "data", dict, src, line, "the task's data object")
    cl = data.get("critlab") if isinstance(data.get("critlab"), dict) else {}
    item_id = cl.get("item_id") or (str(task["id"]) if isinstance(task.get("id"), int | str) else f"task-{line}")
    item: dict[str, Any] = {"item_id": item_id, "responses": [], "judgments": []}
    if isinstance(cl.get("messages"), list):
        item["messages"] = cl["messages"]
    else:
        item["prompt"] = need(data, _var(tags, prompt_obj), str, src, line, "the prompt text",
                              at=f"data.{_var(tags, prompt_obj)}")
    for key in ("category", "reference", "metadata"):
        if key in cl:
            item[key] = cl[key]
    meta = item.setdefault("metadata", {})
    extra = {k: v for k, v in data.items() if k not in ("critlab", _var(tags, prompt_obj), *[_var(tags, r) for r in responses])}
    if extra:
        meta["label_studio_data"] = extra
        tally.kept["other task data (prompt metadata)"] += 1
    ids: dict[str, str] = {}
    for obj in responses:
        text = data.get(_var(tags, obj))
        if text in (None, ""):
            continue  # padding: this task has fewer responses than the config shows
        if not isinstance(text, str):
            raise src.err(line, f"data.{_var(tags, obj)}", f"expected the response text, got {kind(text)}")
        info = (cl.get("responses") or {}).get(obj) or {}
        ids[obj] = str(info.get("id") or obj)
        item["responses"].append({"id": ids[obj], "text": text,
                                  **{k: info[k] for k in ("model", "metadata") if info.get(k)}})
    names = cl.get("annotators") or {}
    for a_i, ann in enumerate(task.get("annotations") or []):
        at = f"annotations[{a_i}]"
        if not isinstance(ann, dict):
            raise src.err(line, at, f"expected an annotation object, got {kind(ann)}")
        if ann.get("was_cancelled"):
            tally.ignored["cancelled annotations"] += 1
            continue
        who = ann.get("completed_by")
        judge = (names.get(str(who)) if not isinstance(who, dict) else None) or (
            who.get("email") if isinstance(who, dict) else None) or f"ls-user-{who.get('id') if isinstance(who, dict) else who}"
        for r_i, res in enumerate(need(ann, "result", list, src, line, "a list of results", at=f"{at}.result")):
            _judgment(item, res, f"{at}.result[{r_i}]", "human", judge, None, src, line, tally, tags, ids)
        details = {k: ann[k] for k in ("id", "lead_time", "created_at", "updated_at") if k in ann}
        if details:
            meta.setdefault("annotations", []).append({"judge": judge, **details})
            tally.kept["annotation ids and times (prompt metadata)"] += 1
    for p_i, pred in enumerate(task.get("predictions") or []):
        at = f"predictions[{p_i}]"
        if not isinstance(pred, dict):
            raise src.err(line, at, f"expected a prediction object, got {kind(pred)}")
        judge = str(pred.get("model_version") or "label-studio-model")
        score = pred.get("score")
        if score is not None and (isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 1):
            raise src.err(line, f"{at}.score", f"expected a probability 0-1, got {score!r}")
        for r_i, res in enumerate(need(pred, "result", list, src, line, "a list of results", at=f"{at}.result")):
            _judgment(item, res, f"{at}.result[{r_i}]", "model", judge, score, src, line, tally, tags, ids)
    if not item["metadata"]:
        del item["metadata"]
    return item


def _judgment(item: dict[str, Any], res: Any, at: str, judge_kind: str, judge: str, score: float | None,
              src: Source, line: int, tally: Tally, tags: dict[str, dict[str, Any]], ids: dict[str, str]) -> None:
    if not isinstance(res, dict):
        raise src.err(line, at, f"expected a result object, got {kind(res)}")
    name, value = res.get("from_name"), res.get("value")
    tag = tags.get(name) if isinstance(name, str) else None
    if tag is None or not isinstance(value, dict):
        item.setdefault("metadata", {}).setdefault("other_results", []).append({"judge": judge, **res})
        tally.kept["results of controls critlab does not read (prompt metadata)"] += 1
        return
    head = {"judge": judge, "judge_kind": judge_kind}

    def obj(o: str) -> str:
        if o not in ids:
            raise src.err(line, f"{at}.from_name", f"{name!r} points at {o!r}, which this task has no text for")
        return ids[o]

    kind_ = tag["tag"]
    if kind_ == "Pairwise":
        sel = value.get("selected")
        if sel not in ("left", "right") or len(tag["to"]) != 2:
            raise src.err(line, f"{at}.value.selected", f"expected 'left' or 'right', got {sel!r}")
        shown = [obj(o) for o in tag["to"]]
        j = {**head, "type": "pairwise", "shown": shown, "winner": shown[0 if sel == "left" else 1]}
        if judge_kind == "model" and score is not None:
            j["prob"] = {j["winner"]: score}
    elif kind_ == "Choices" and name.endswith("_tie") and tags.get(name[:-4], {}).get("tag") == "Pairwise":
        choice = _one_choice(value, at, src, line, TIE_WORDS)
        shown = [obj(o) for o in tags[name[:-4]]["to"]]
        j = {**head, "type": "pairwise", "shown": shown, "winner": "tie" if judge_kind == "model" else choice}
        if judge_kind == "model" and score is not None:
            j["prob"] = {"tie": score}
    elif kind_ == "Rating":
        rating = value.get("rating")
        if isinstance(rating, bool) or not isinstance(rating, int | float):
            raise src.err(line, f"{at}.value.rating", f"expected a number, got {kind(rating)}")
        if not 1 <= rating <= tag["max"]:
            raise src.err(line, f"{at}.value.rating", f"rating {rating} is outside 1-{tag['max']} (maxRating)")
        j = {**head, "type": "likert" if judge_kind == "human" else "rating", "response": obj(tag["to"][0]),
             "score": rating, "scale": [1, tag["max"]]}
    elif kind_ == "Choices" and set(tag["choices"]) == {"correct", "incorrect"} and judge_kind == "human":
        choice = _one_choice(value, at, src, line, ("correct", "incorrect"))
        j = {**head, "type": "correct", "response": obj(tag["to"][0]), "value": choice == "correct"}
    elif kind_ == "Choices" and name == "best" and judge_kind == "human":
        choice = _one_choice(value, at, src, line, tuple(ids))
        j = {**head, "type": "best_of_n", "shown": list(ids.values()), "winner": obj(choice)}
    else:
        item.setdefault("metadata", {}).setdefault("other_results", []).append({"judge": judge, **res})
        tally.kept["results of controls critlab does not read (prompt metadata)"] += 1
        return
    note = res.get("meta", {}).get("text") if isinstance(res.get("meta"), dict) else None
    if isinstance(note, list) and note and all(isinstance(t, str) for t in note):
        j["rationale"] = "\n".join(note)
    item["judgments"].append(j)
    tally.mapped[f"{'human' if judge_kind == 'human' else 'model'} {j['type']} labels"] += 1


def _one_choice(value: dict[str, Any], at: str, src: Source, line: int, allowed: tuple[str, ...]) -> str:
    choices = value.get("choices")
    if not isinstance(choices, list) or len(choices) != 1 or choices[0] not in allowed:
        raise src.err(line, f"{at}.value.choices", f"expected one of {', '.join(allowed)}, got {choices!r}")
    return choices[0]
