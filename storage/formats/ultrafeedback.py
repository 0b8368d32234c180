"""UltraFeedback as distilabel writes it (read), and distilabel's DPO formatter rows.

- UltraFeedback rows: `instruction, generations[], generation_models[] (or model_names[]), ratings[],
  rationales[], model_name` (the rating model; `ultrafeedback_model` after a rename). Each rating is a
  model judgment of method `rating` on its generation, on UltraFeedback's 1-5 scale, by `model_name`,
  with its rationale. A null rating (the judge's output could not be parsed) is not a judgment.
- DPO formatter rows: `prompt, prompt_id, chosen, chosen_model, chosen_rating, rejected, rejected_model,
  rejected_rating` (chosen / rejected as chats or plain text): two responses and their two ratings; when a
  rating is missing, the chosen-over-rejected preference is kept as a model pairwise verdict instead.

Prompts are keyed by `prompt_id` when given, else by the instruction's text, so rows about one prompt
meet in one item. Columns critlab has no place for go to the prompt's or the response's metadata.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from storage.fileio import kind
from storage.formats.common import ItemBuilder, Source, Tally, json_records, need, text_id

SCALE = (1, 5)
METHOD = "rating"  # a model's direct rating of one response on a scale (docs/formats.md)
DEFAULT_JUDGE = "ultrafeedback"
UF_USED = {"instruction", "generations", "generation_models", "model_names", "ratings", "rationales",
           "model_name", "ultrafeedback_model", "rationales-for-ratings", "types"}
DPO_USED = {"prompt", "prompt_id", "chosen", "chosen_model", "chosen_rating", "rejected", "rejected_model",
            "rejected_rating", "model_name", "ultrafeedback_model"}


def _rating(v: Any, field: str, src: Source, line: int) -> float | None:
    if v is None:
        return None
    if isinstance(v, str):  # some exports keep ratings as text ("4")
        try:
            v = float(v)
        except ValueError:
            raise src.err(line, field, f"expected a rating {SCALE[0]}-{SCALE[1]}, got {v!r}") from None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise src.err(line, field, f"expected a rating {SCALE[0]}-{SCALE[1]}, got {kind(v)}")
    if not SCALE[0] <= v <= SCALE[1]:
        raise src.err(line, field, f"rating {v} is outside UltraFeedback's scale {SCALE[0]}-{SCALE[1]}")
    return float(v)


def _judge(rec: dict[str, Any], src: Source, line: int) -> str:
    for key in ("model_name", "ultrafeedback_model"):
        if rec.get(key) is not None:
            return need(rec, key, str, src, line, "the rating model's name")
    return DEFAULT_JUDGE


def _reply(v: Any, field: str, src: Source, line: int) -> str:
    """A DPO side's text: a plain string, or the last assistant message of a chat."""
    if isinstance(v, str):
        return v
    if isinstance(v, list) and v and all(isinstance(m, dict) for m in v):
        last = v[-1]
        if last.get("role") == "assistant" and isinstance(last.get("content"), str):
            return last["content"]
        raise src.err(line, f"{field}[{len(v) - 1}]", "expected the last message to be the assistant's reply")
    raise src.err(line, field, f"expected text or a chat ending with the assistant's reply, got {kind(v)}")


def read(src: Source, tally: Tally) -> Iterator[tuple[int, dict[str, Any]]]:
    b = ItemBuilder()
    for line, rec in json_records(src):
        if not isinstance(rec, dict):
            raise src.err(line, None, "expected a JSON object (one row)")
        if "generations" in rec:
            _uf_row(b, rec, src, line, tally)
        elif "chosen" in rec or "rejected" in rec:
            _dpo_row(b, rec, src, line, tally)
        else:
            raise src.err(line, None, "not an UltraFeedback row (instruction, generations, ratings) nor a DPO row "
                          "(prompt, chosen, rejected)")
    yield from b.located()


def _extras(rec: dict[str, Any], used: set[str], tally: Tally) -> dict[str, Any]:
    extra = {k: v for k, v in rec.items() if k not in used}
    if extra:
        tally.kept["other columns (prompt metadata)"] += 1
    return extra


def _uf_row(b: ItemBuilder, rec: dict[str, Any], src: Source, line: int, tally: Tally) -> None:
    instruction = need(rec, "instruction", str, src, line, "the instruction (prompt) text")
    gens = need(rec, "generations", list, src, line, "a list of generated texts")
    models_key = "generation_models" if "generation_models" in rec else "model_names"
    models = rec.get(models_key) or [None] * len(gens)
    ratings = need(rec, "ratings", list, src, line, "a list of ratings, one per generation")
    rationales = rec.get("rationales") or [None] * len(gens)
    for key, values in ((models_key, models), ("ratings", ratings), ("rationales", rationales)):
        if not isinstance(values, list) or len(values) != len(gens):
            raise src.err(line, key, f"expected a list of {len(gens)} (one per generation), got "
                          f"{len(values) if isinstance(values, list) else kind(values)}")
    judge = _judge(rec, src, line)
    item_id = str(rec["prompt_id"]) if isinstance(rec.get("prompt_id"), str | int) else text_id(instruction, "uf")
    b.item(line, item_id, prompt=instruction, metadata=_extras(rec, UF_USED, tally))
    aside = {k: rec[k] for k in ("rationales-for-ratings", "types") if isinstance(rec.get(k), list)}
    for i, text in enumerate(gens):
        if not isinstance(text, str):
            raise src.err(line, f"generations[{i}]", f"expected text, got {kind(text)}")
        model = models[i]
        if model is not None and not isinstance(model, str):
            raise src.err(line, f"{models_key}[{i}]", f"expected a model name, got {kind(model)}")
        meta = {k: v[i] for k, v in aside.items() if i < len(v) and v[i] is not None}
        if meta:
            tally.kept["per-generation details: types, rationales-for-ratings (response metadata)"] += 1
        rid = b.response(item_id, text, model, meta or None)
        score = _rating(ratings[i], f"ratings[{i}]", src, line)
        if score is None:
            tally.ignored["null ratings (the rating model's answer was not parsed)"] += 1
            continue
        j: dict[str, Any] = {"judge": judge, "judge_kind": "model", "type": METHOD, "response": rid,
                             "score": score, "scale": list(SCALE)}
        why = rationales[i]
        if isinstance(why, str) and why.strip():
            j["rationale"] = why
        if b.judgment(item_id, j):
            tally.mapped["ratings (model judgments on a 1-5 scale)"] += 1
        else:
            tally.ignored["repeat ratings of one response by one model (the first is kept)"] += 1


def _dpo_row(b: ItemBuilder, rec: dict[str, Any], src: Source, line: int, tally: Tally) -> None:
    prompt = need(rec, "prompt", str, src, line, "the prompt text")
    item_id = str(rec["prompt_id"]) if isinstance(rec.get("prompt_id"), str | int) else text_id(prompt, "uf")
    b.item(line, item_id, prompt=prompt, metadata=_extras(rec, DPO_USED, tally))
    judge = _judge(rec, src, line)
    ids, scores = [], []
    for side in ("chosen", "rejected"):
        if rec.get(side) is None:
            raise src.err(line, side, "missing (the reply, as text or a chat)")
        text = _reply(rec[side], side, src, line)
        model = rec.get(f"{side}_model")
        if model is not None and not isinstance(model, str):
            raise src.err(line, f"{side}_model", f"expected a model name, got {kind(model)}")
        ids.append(b.response(item_id, text, model))
        scores.append(_rating(rec.get(f"{side}_rating"), f"{side}_rating", src, line))
    if ids[0] == ids[1]:
        raise src.err(line, "rejected", "the same text by the same model as 'chosen'")
    if None not in scores:
        for rid, score in zip(ids, scores):
            j = {"judge": judge, "judge_kind": "model", "type": METHOD, "response": rid, "score": score,
                 "scale": list(SCALE)}
            if b.judgment(item_id, j):
                tally.mapped["ratings (model judgments on a 1-5 scale)"] += 1
            else:
                tally.ignored["repeat ratings of one response by one model (the first is kept)"] += 1
        tally.ignored["chosen/rejected orders (they follow from the ratings)"] += 1
        return
    j = {"judge": judge, "judge_kind": "model", "type": "pairwise", "shown": ids, "winner": ids[0]}
    if b.judgment(item_id, j):
        tally.mapped["chosen-over-rejected preferences without ratings (model pairwise)"] += 1
