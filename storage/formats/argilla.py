"""Argilla 2.x datasets (read and write): the folder `Dataset.to_disk` writes (`.argilla/settings.json`,
`.argilla/dataset.json`, `records.json`), or a records file (`records.to_json`: nested records; a Hugging
Face export of `records.to_datasets()` as JSON Lines: flattened columns) with the settings beside it.

The settings say what each record holds: text fields (the one named `prompt`, `instruction` or `question`,
else the first, is the prompt; the others are responses) and questions. A question is read as:
- a label question whose labels are response field names (plus `tie` / `both_bad`): with two labelled
  responses a pairwise verdict, shown in the order the labels list them; with more, a best-of-N pick;
- a rating question: a rating of the one response field its name contains (`response1_rating`,
  `rating_response_2`), or of the only response; scale = its lowest and highest values;
- a label question with the labels `correct` / `incorrect`: correctness of the response its name contains.
Submitted responses are people's judgments (one per user); suggestions are model judgments (`agent` =
the model, `score` = its probability). Anything else (other questions, metadata, vectors, drafts' values)
is kept in the prompt's metadata or counted as ignored.

Written: one record per item, the prompt and the responses as text fields `response_1`..`response_N`, a
question per pairwise order (`pair_<i>_<j>`, labels response_<i>, response_<j>, tie, both_bad), per
rating (`rating_<k>`), correctness (`correct_<k>`) and the best pick (`best`) used, users as UUIDs derived
from their names, and a `critlab` metadata entry (JSON text: item id, response ids and models, the chat,
annotator names by UUID) so a study read back is the study written.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from storage.fileio import fsync_dir, kind, sha256_file, write_error
from storage.formats.common import Source, Tally, json_records, need

SUFFIXES = ("",)  # a folder, as Dataset.to_disk writes
TIE_WORDS = ("tie", "both_bad")
PROMPT_NAMES = ("prompt", "instruction", "question")
_USERS = uuid.UUID("6c1f0e1e-3c47-4a8e-9a51-0c2b7f1d9a10")  # namespace for user ids derived from names


def user_id(name: str) -> str:
    """A stable UUID for a person's name (Argilla identifies users by UUID).

    >>> user_id("ann1") == user_id("ann1") != user_id("ann2")
    True
    """
    return str(uuid.uuid5(_USERS, name))


# -- write -----------------------------------------------------------------------------------------
def write(items: list[dict[str, Any]], out: Path, *, study: Any = None) -> tuple[str, Counter[str], dict[str, Any]]:
    lost: Counter[str] = Counter()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} exists and is not an empty folder (an Argilla export is a folder)")
    n_max = max((len(i["responses"]) for i in items), default=0)
    questions: dict[str, dict[str, Any]] = {}
    records = [_record(it, questions, lost) for it in items]
    if "best" in questions:
        questions["best"] = _label_q("best", "Best response", [f"response_{k}" for k in range(1, n_max + 1)])
    fields = [{"name": "prompt", "title": "Prompt", "required": True, "settings": {"type": "text", "use_markdown": False}}]
    fields += [{"name": f"response_{k}", "title": f"Response {k}", "required": False,
                "settings": {"type": "text", "use_markdown": False}} for k in range(1, n_max + 1)]
    settings = {"guidelines": f"Exported by critlab from study {getattr(study, 'name', '')!r}.",
                "fields": fields, "questions": [questions[k] for k in sorted(questions, key=_question_order)],
                "metadata": [], "vectors": [], "allow_extra_metadata": True,
                "distribution": {"strategy": "overlap", "min_submitted": 1}, "mapping": None}
    dataset = {"name": re.sub(r"[^A-Za-z0-9_-]+", "-", getattr(study, "name", "critlab")) or "critlab",
               "guidelines": settings["guidelines"], "allow_extra_metadata": True, "status": "ready",
               "distribution": settings["distribution"]}
    parent = out.parent
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    try:
        (tmp / ".argilla").mkdir()
        (tmp / ".argilla" / "settings.json").write_text(json.dumps(settings, ensure_ascii=False))
        (tmp / ".argilla" / "dataset.json").write_text(json.dumps(dataset, ensure_ascii=False))
        with open(tmp / "records.json", "w", encoding="utf-8") as f:
            f.write("[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n]\n")
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        problem = write_error(e, out) if isinstance(e, OSError) else None
        if problem is not None:
            raise problem from e
        raise
    fsync_dir(parent)
    return sha256_file(out / "records.json"), lost, {"settings": str((out / ".argilla" / "settings.json").resolve())}


def _question_order(name: str) -> tuple:
    head, *nums = name.split("_")
    return ({"best": 0, "rating": 1, "correct": 2, "pair": 3}.get(head, 4), [int(n) for n in nums if n.isdigit()])


def _label_q(name: str, title: str, labels: list[str]) -> dict[str, Any]:
    return {"name": name, "title": title, "required": False,
            "settings": {"type": "label_selection", "options": [{"value": v, "text": v, "description": None}
                                                                for v in labels], "visible_options": None}}


def _record(it: dict[str, Any], questions: dict[str, dict[str, Any]], lost: Counter[str]) -> dict[str, Any]:
    pos = {r["id"]: k for k, r in enumerate(it["responses"], 1)}
    fields = {"prompt": it.get("prompt") or "\n\n".join(f"{m['role']}: {m['content']}" for m in it["messages"])}
    fields.update({f"response_{k}": r["text"] for k, r in enumerate(it["responses"], 1)})
    crit: dict[str, Any] = {"item_id": it["item_id"],
                            "responses": {f"response_{k}": {key: r[key] for key in ("id", "model", "metadata") if key in r}
                                          for k, r in enumerate(it["responses"], 1)}}
    for key in ("messages", "category", "reference", "metadata"):
        if key in it:
            crit[key] = it[key]
    people: dict[str, str] = {}
    responses: dict[str, list[dict[str, Any]]] = {}
    suggestions: dict[str, dict[str, Any]] = {}
    for j in it["judgments"]:
        if j.get("stage", "blind") != "blind":
            lost["argilla: revealed-stage labels (one response per user and question)"] += 1
            continue
        got = _answer(j, pos, questions)
        if isinstance(got, str):
            lost[f"argilla: {got}"] += 1
            continue
        q, value, score = got
        if j.get("rationale"):  # Argilla has no place for a verdict's reasons: kept with critlab's metadata
            crit.setdefault("rationales", []).append({"question": q, "judge": j["judge"], "kind": j["judge_kind"],
                                                      "text": j["rationale"]})
        if j["judge_kind"] == "human":
            uid = user_id(j["judge"])
            people[uid] = j["judge"]
            responses.setdefault(q, []).append({"value": value, "user_id": uid, "status": "submitted"})
        elif q in suggestions:
            lost["argilla: a second model verdict on one question (one suggestion per question)"] += 1
        else:
            suggestions[q] = {"value": value, "score": score, "agent": j["judge"]}
    crit["annotators"] = people
    return {"id": str(it["item_id"]), "fields": fields, "metadata": {"critlab": json.dumps(crit, ensure_ascii=False)},
            "suggestions": suggestions, "responses": responses, "vectors": {}, "status": "pending", "_server_id": None}


def _answer(j: dict[str, Any], pos: dict[str, int], questions: dict[str, dict[str, Any]]) -> tuple | str:
    t = j["type"]
    if t == "pairwise":
        a, b = (pos[s] for s in j["shown"])
        name = f"pair_{a}_{b}"
        questions.setdefault(name, _label_q(name, f"Response {a} (shown first) or response {b}?",
                                            [f"response_{a}", f"response_{b}", *TIE_WORDS]))
        value = j["winner"] if j["winner"] in TIE_WORDS else f"response_{pos[j['winner']]}"
        if j["judge_kind"] == "model" and j["winner"] == "both_bad":
            value = "tie"
        return name, value, (j.get("prob") or {}).get(j["winner"])
    if "scale" in j and (t == "likert" or (t == "rating" and j["judge_kind"] == "model")):
        lo, hi = j["scale"]
        if not (float(lo).is_integer() and float(hi).is_integer() and 0 <= lo < hi <= 10
                and float(j["score"]).is_integer()):
            return "ratings off a whole-number scale within 0-10"
        k = pos[j["response"]]
        name = f"rating_{k}"
        q = questions.setdefault(name, {"name": name, "title": f"Rating of response {k}", "required": False,
                                        "settings": {"type": "rating", "options": []}})
        values = {o["value"] for o in q["settings"]["options"]} | set(range(int(lo), int(hi) + 1))
        q["settings"]["options"] = [{"value": v} for v in sorted(values)]
        return name, int(j["score"]), j.get("prob")
    if t == "correct" and j["judge_kind"] == "human":
        k = pos[j["response"]]
        name = f"correct_{k}"
        questions.setdefault(name, _label_q(name, f"Is response {k} correct?", ["correct", "incorrect"]))
        return name, "correct" if j["value"] else "incorrect", None
    if t == "best_of_n" and j["judge_kind"] == "human":
        questions.setdefault("best", {})  # its labels are set once the widest item is known
        return "best", f"response_{pos[j['winner']]}", None
    return "model scores other than ratings and pairwise verdicts"


# -- read ------------------------------------------------------------------------------------------
def _settings_path(path: Path) -> Path | None:
    for p in (path / ".argilla" / "settings.json", path.parent / ".argilla" / "settings.json",
              path.with_name(f"{path.stem}.settings.json")):
        if p.is_file():
            return p
    return None


def read(src: Source, tally: Tally) -> Iterator[tuple[int, dict[str, Any]]]:
    path = Path(src.path)
    settings_file = _settings_path(path)
    records_file = path / "records.json" if path.is_dir() else path
    if settings_file is None:
        raise src.err(0, None, "needs the dataset's settings: the folder Dataset.to_disk writes (with "
                      ".argilla/settings.json), or a records file with <name>.settings.json beside it")
    try:
        settings = json.loads(settings_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise src.err(0, None, f"{settings_file.name} is not readable JSON: {e}") from None
    schema = _Schema(settings, src)
    rsrc = Source(records_file, src.display_name and f"{src.display_name}/{records_file.name}" if path.is_dir() else src.display_name)
    if not records_file.is_file():
        raise rsrc.err(0, None, "no records file (records.json)")
    for line, rec in json_records(rsrc):
        if not isinstance(rec, dict):
            raise rsrc.err(line, None, f"expected a record object, got {kind(rec)}")
        yield line, schema.item(_nested(rec), line, rsrc, tally)


def _nested(rec: dict[str, Any]) -> dict[str, Any]:
    """A flattened record (Hugging Face columns `q.responses`, `q.responses.users`, `q.suggestion` ...)
    in the nested form `Record.to_dict` writes; a nested record unchanged."""
    if "fields" in rec or not any(".responses" in k or ".suggestion" in k for k in rec):
        return rec
    out: dict[str, Any] = {"id": rec.get("id"), "fields": {}, "metadata": {}, "responses": {}, "suggestions": {}}
    for k, v in rec.items():
        if k.endswith(".responses"):
            q = k[: -len(".responses")]
            users = rec.get(f"{k}.users") or []
            status = rec.get(f"{k}.status") or []
            out["responses"][q] = [{"value": val, "user_id": users[i] if i < len(users) else None,
                                    "status": status[i] if i < len(status) else None} for i, val in enumerate(v or [])]
        elif k.endswith(".suggestion"):
            q = k[: -len(".suggestion")]
            if v is not None:
                out["suggestions"][q] = {"value": v, "score": rec.get(f"{k}.score"), "agent": rec.get(f"{k}.agent")}
        elif ".responses." in k or ".suggestion." in k or k in ("id", "status", "_server_id"):
            continue
        else:
            out["fields"][k] = v  # told apart from metadata by the settings
    return out


class _Schema:
    def __init__(self, settings: dict[str, Any], src: Source):
        fields = [f for f in settings.get("fields", []) if isinstance(f, dict)]
        texts = [f["name"] for f in fields if (f.get("settings") or {}).get("type") in ("text", "chat")]
        if not texts:
            raise src.err(0, None, "the settings have no text field for the prompt")
        self.prompt = next((n for n in texts if n in PROMPT_NAMES), texts[0])
        self.responses = [n for n in texts if n != self.prompt]
        self.field_names = {f["name"] for f in fields}
        self.questions: dict[str, tuple[str, Any]] = {}
        for q in settings.get("questions", []):
            self.questions[q["name"]] = self._meaning(q)

    def _target(self, name: str) -> str | None:
        numbered = re.fullmatch(r"(?:rating|correct)_(\d+)", name)  # the questions critlab writes
        if numbered and f"response_{numbered.group(1)}" in self.responses:
            return f"response_{numbered.group(1)}"
        hits = [r for r in self.responses if r in name]
        hits = [h for h in hits if not any(h != o and h in o for o in hits)]  # response_1 vs response_10
        if len(hits) == 1:
            return hits[0]
        return self.responses[0] if len(self.responses) == 1 else None

    def _meaning(self, q: dict[str, Any]) -> tuple[str, Any]:
        s = q.get("settings") or {}
        options = [o.get("value") for o in s.get("options") or [] if isinstance(o, dict)]
        t = s.get("type")
        if t == "label_selection":
            named = [o for o in options if o in self.responses]
            if set(options) <= {"correct", "incorrect"} and self._target(q["name"]):
                return "correct", self._target(q["name"])
            if len(named) == 2 and set(options) - set(named) <= set(TIE_WORDS):
                return "pairwise", named
            if len(named) >= 2 and set(options) <= set(self.responses):
                return "best", None
        if t == "rating" and options and self._target(q["name"]):
            return "rating", (self._target(q["name"]), [min(options), max(options)])
        return "other", None

    def item(self, rec: dict[str, Any], line: int, src: Source, tally: Tally) -> dict[str, Any]:
        fields = need(rec, "fields", dict, src, line, "the record's fields")
        meta_in = rec.get("metadata") if isinstance(rec.get("metadata"), dict) else {}
        crit: dict[str, Any] = {}
        if isinstance(meta_in.get("critlab"), str):
            try:
                crit = json.loads(meta_in["critlab"])
            except ValueError:
                raise src.err(line, "metadata.critlab", "not valid JSON") from None
        extra_fields = {k: v for k, v in fields.items() if k not in self.field_names}
        item_id = crit.get("item_id") or (str(rec["id"]) if rec.get("id") is not None else f"record-{line}")
        item: dict[str, Any] = {"item_id": item_id, "responses": [], "judgments": []}
        if crit.get("messages"):
            item["messages"] = crit["messages"]
        else:
            item["prompt"] = need(fields, self.prompt, str, src, line, "the prompt text", at=f"fields.{self.prompt}")
        for key in ("category", "reference"):
            if key in crit:
                item[key] = crit[key]
        meta: dict[str, Any] = dict(crit.get("metadata") or {})
        others = {k: v for k, v in meta_in.items() if k != "critlab"}
        if others or extra_fields:
            meta["argilla_metadata"] = {**others, **extra_fields}
            tally.kept["record metadata (prompt metadata)"] += 1
        ids: dict[str, str] = {}
        for name in self.responses:
            text = fields.get(name)
            if text in (None, ""):
                continue
            if not isinstance(text, str):
                raise src.err(line, f"fields.{name}", f"expected text, got {kind(text)}")
            info = (crit.get("responses") or {}).get(name) or {}
            ids[name] = str(info.get("id") or name)
            item["responses"].append({"id": ids[name], "text": text,
                                      **{k: info[k] for k in ("model", "metadata") if info.get(k)}})
        names = crit.get("annotators") or {}
        for q, answers in (rec.get("responses") or {}).items():
            if not isinstance(answers, list):
                raise src.err(line, f"responses.{q}", f"expected a list of user responses, got {kind(answers)}")
            for i, a in enumerate(answers):
                at = f"responses.{q}[{i}]"
                if not isinstance(a, dict):
                    raise src.err(line, at, f"expected {{value, user_id, status}}, got {kind(a)}")
                if a.get("status") in ("draft", "discarded"):
                    tally.ignored[f"{a['status']} responses"] += 1
                    continue
                judge = names.get(str(a.get("user_id"))) or str(need(a, "user_id", str, src, line, "the user's id",
                                                                          at=f"{at}.user_id"))
                self._judgment(item, meta, q, a.get("value"), "human", judge, None, at, ids, src, line, tally)
        for q, s in (rec.get("suggestions") or {}).items():
            at = f"suggestions.{q}"
            if not isinstance(s, dict):
                raise src.err(line, at, f"expected {{value, score, agent}}, got {kind(s)}")
            score = s.get("score")
            if score is not None and (isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 1):
                raise src.err(line, f"{at}.score", f"expected a probability 0-1, got {score!r}")
            judge = str(s.get("agent") or "argilla-suggestion")
            self._judgment(item, meta, q, s.get("value"), "model", judge, score, at, ids, src, line, tally)
        notes = {(r.get("question"), r.get("judge"), r.get("kind")): r.get("text")
                 for r in crit.get("rationales") or [] if isinstance(r, dict)}
        for j in item["judgments"]:
            note = notes.get((j.pop("_question"), j["judge"], j["judge_kind"]))
            if isinstance(note, str) and note:
                j["rationale"] = note
        if meta:
            item["metadata"] = meta
        return item

    def _judgment(self, item: dict[str, Any], meta: dict[str, Any], q: str, value: Any, judge_kind: str, judge: str,
                  score: float | None, at: str, ids: dict[str, str], src: Source, line: int, tally: Tally) -> None:
        what, how = self.questions.get(q, ("other", None))

        def rid(field: str) -> str:
            if field not in ids:
                raise src.err(line, f"{at}.value", f"{value!r} names {field!r}, which this record has no text for")
            return ids[field]

        head = {"judge": judge, "judge_kind": judge_kind}
        if what == "pairwise":
            if value not in (*how, *TIE_WORDS):
                raise src.err(line, f"{at}.value", f"expected one of {', '.join([*how, *TIE_WORDS])}, got {value!r}")
            shown = [rid(f) for f in how]
            winner = value if value in TIE_WORDS else rid(value)
            if judge_kind == "model" and winner == "both_bad":
                winner = "tie"
            j: dict[str, Any] = {**head, "type": "pairwise", "shown": shown, "winner": winner}
            if judge_kind == "model" and score is not None:
                j["prob"] = {winner: score}
        elif what == "rating":
            field, (lo, hi) = how
            if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
                raise src.err(line, f"{at}.value", f"expected a rating {lo}-{hi}, got {value!r}")
            j = {**head, "type": "likert" if judge_kind == "human" else "rating", "response": rid(field),
                 "score": value, "scale": [lo, hi]}
            if judge_kind == "model" and score is not None:
                j["prob"] = score
        elif what == "correct" and judge_kind == "human":
            if value not in ("correct", "incorrect"):
                raise src.err(line, f"{at}.value", f"expected correct or incorrect, got {value!r}")
            j = {**head, "type": "correct", "response": rid(how), "value": value == "correct"}
        elif what == "best" and judge_kind == "human":
            if not isinstance(value, str) or value not in self.responses:
                raise src.err(line, f"{at}.value", f"expected a response field name, got {value!r}")
            j = {**head, "type": "best_of_n", "shown": list(ids.values()), "winner": rid(value)}
        else:
            meta.setdefault("argilla_answers", []).append({"question": q, "judge": judge, "kind": judge_kind,
                                                           "value": value, **({"score": score} if score is not None else {})})
            tally.kept["answers to questions critlab does not read (prompt metadata)"] += 1
            return
        j["_question"] = q  # matches a kept rationale to its verdict; dropped before validation
        item["judgments"].append(j)
        tally.mapped[f"{'human responses' if judge_kind == 'human' else 'suggestions'} ({j['type']})"] += 1
