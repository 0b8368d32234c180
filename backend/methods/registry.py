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
    "follow_up_likelihood": "follow_up:FollowUpLikelihood",
    "selfcheck_prompt": "selfcheck:SelfCheckPrompt",
    "principles_critique": "principles:PrinciplesCritique",
}


# What `critlab score`, the Score button and the Live tab run unless told otherwise: the methods that
# generate no text (stored token statistics, answer votes, one prefill read per response), so a first
# pass over a study takes minutes on a laptop. The others (checklist, critique, rubric, gsa and
# principles_critique generate; pairwise and brainstorming read much longer prompts; follow_up_likelihood
# and selfcheck_prompt make tens of reads per response) are chosen on purpose, or with "all".
DEFAULT_METHODS: tuple[str, ...] = ("neg_perplexity", "neg_entropy", "self_certainty", "select_majority",
                                    "select_borda", "p_true", "judge_score")


def method_ids() -> list[str]:
    return list(_SPEC)


def default_method_ids() -> list[str]:
    return list(DEFAULT_METHODS)


def get_method(method_id: str) -> Method:
    if method_id not in _SPEC:
        raise KeyError(f"unknown method {method_id!r}; known: {', '.join(_SPEC)}")
    module, cls = _SPEC[method_id].split(":")
    return getattr(import_module(f"backend.methods.{module}"), cls)()


def all_methods() -> list[Method]:
    return [get_method(m) for m in _SPEC]


def choice_label(method: Method) -> str:
    """How a picker names a method: its id, what it is, what it costs.

    >>> choice_label(get_method("p_true"))
    'p_true — P(True) self-check · 1 prefill read per response'
    """
    return f"{method.id} — {method.brief} · {method.calls_brief}"


def method_choices() -> list[tuple[str, str]]:
    """(label, id) of every method in table order, for a checkbox group."""
    return [(choice_label(m), m.id) for m in all_methods()]


def parse_method_list(text: str | None) -> list[str]:
    """`--methods id,id` → ids in table order; None, "" or "default" → `DEFAULT_METHODS` (in that
    order: the cheapest first); "all" → every method.

    >>> parse_method_list("p_true, checklist")
    ['checklist', 'p_true']
    >>> parse_method_list(None) == list(DEFAULT_METHODS)
    True
    """
    if text is None or text.strip() in ("", "default"):
        return default_method_ids()
    if text.strip() == "all":
        return method_ids()
    wanted = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [w for w in wanted if w not in _SPEC]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(_SPEC)}")
    return [m for m in _SPEC if m in wanted]
