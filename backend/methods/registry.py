"""Every self-evaluation method by id, in the order of the method table (docs/methods.md)."""

from __future__ import annotations

from importlib import import_module

from backend.methods.base import Method

# id -> "module:Class" (imported on first use, so one broken method cannot stop the others loading)
_SPEC = {
    "checklist": "checklist:ChecklistMethod",
    "p_true": "p_true:PTrue",
    "p_true_brainstorm": "p_true:PTrueBrainstorm",
    "neg_perplexity": "token_confidence:NegPerplexity",
    "neg_entropy": "token_confidence:NegEntropy",
    "self_certainty": "token_confidence:SelfCertainty",
    "judge_score": "judge_score:JudgeScore",
    "critique": "critique:Critique",
    "rubric": "rubric:AdditiveRubric",
    "pairwise": "pairwise:PairwiseSwap",
    "select_majority": "selectors:MajorityVote",
    "select_usc": "selectors:USC",
    "select_borda": "selectors:Borda",
    "gsa": "gsa:GSA",
}


def method_ids() -> list[str]:
    return list(_SPEC)


def get_method(method_id: str) -> Method:
    if method_id not in _SPEC:
        raise KeyError(f"unknown method {method_id!r}; known: {', '.join(_SPEC)}")
    module, cls = _SPEC[method_id].split(":")
    return getattr(import_module(f"backend.methods.{module}"), cls)()


def all_methods() -> list[Method]:
    return [get_method(m) for m in _SPEC]


def parse_method_list(text: str | None) -> list[str]:
    """`--methods id,id` → ids in table order; None or "all" → every method.

    >>> parse_method_list("p_true, checklist")
    ['checklist', 'p_true']
    """
    if text is None or text.strip() in ("", "all"):
        return method_ids()
    wanted = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [w for w in wanted if w not in _SPEC]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(_SPEC)}")
    return [m for m in _SPEC if m in wanted]
