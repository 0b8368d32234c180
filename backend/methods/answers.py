"""Final-answer extraction for the vote-based selectors (majority vote, Borda).

A study's `answer_extraction` setting (StudyConfig.answer_extraction) names one mode:

- ``none``: no extraction. Every response is free-form, so majority vote has nothing to count (its
  verdict is "n/a") and Borda falls back to self-certainty best-of-N.
- ``last_number``: the last integer or decimal in the text, normalised: thousands separators dropped
  ("1,000" → "1000"), trailing decimal zeros dropped ("3.50" → "3.5", "2.0" → "2"), leading zeros
  dropped ("007" → "7"), a leading minus kept ("-2") unless it joins two numbers ("5-2" → "2").
- ``boxed``: the content of the last ``\\boxed{...}`` (nested braces handled, e.g. ``\\boxed{\\frac{1}{2}}``
  → ``\\frac{1}{2}``); an unclosed last box falls back to the previous complete one.
- ``regex:PATTERN``: a Python regular expression; the answer is the first capture group of the LAST
  match, or the whole match when the pattern has no group (or group 1 did not take part). Use inline
  flags for options, e.g. ``regex:(?i)answer:\\s*(\\w+)``.

An extracted answer is stripped; an empty one counts as no answer (None). Two answers are the same
when their `normalise` forms are equal.
"""

from __future__ import annotations

import re
from functools import lru_cache

MODES = ("none", "last_number", "boxed", "regex:PATTERN")

# A number not glued to a preceding digit or dot; a minus counts only when it does not follow a word,
# a digit or a closing bracket (so "5-2" gives 2, not -2). Thousands groups must be complete.
_NUMBER = re.compile(
    r"(?<![\d.])(?:(?<![\w)\]])-)?(?:\d{1,3}(?:,\d{3})+(?![\d])|\d+)(?:\.\d+)?"
    r"|(?<![\w.])-?\.\d+")
_BOXED = "\\boxed{"


def validate_mode(mode: str) -> str:
    """Return `mode` when it is a known answer-extraction mode, else raise ValueError saying why.

    >>> validate_mode("boxed")
    'boxed'
    >>> validate_mode("regex:answer: (\\\\d+)")
    'regex:answer: (\\\\d+)'
    >>> validate_mode("first_word")
    Traceback (most recent call last):
    ValueError: unknown answer extraction mode 'first_word'; use none, last_number, boxed or regex:PATTERN
    >>> validate_mode("regex:(")
    Traceback (most recent call last):
    ValueError: invalid regex in answer extraction mode 'regex:(': missing ), unterminated subpattern at position 0
    """
    if mode in ("none", "last_number", "boxed"):
        return mode
    if mode.startswith("regex:"):
        if not mode[len("regex:"):]:
            raise ValueError("answer extraction mode 'regex:' needs a pattern after the colon, "
                             "e.g. regex:Answer: (\\S+)")
        _compile(mode[len("regex:"):])
        return mode
    raise ValueError(f"unknown answer extraction mode {mode!r}; use none, last_number, boxed or regex:PATTERN")


@lru_cache(maxsize=64)
def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as e:
        raise ValueError(f"invalid regex in answer extraction mode {'regex:' + pattern!r}: {e}") from None


def extract_answer(text: str, mode: str) -> str | None:
    """The final answer of `text` under `mode` (see the module docstring), or None when there is none.

    >>> extract_answer("So 12 + 30 = 42.", "last_number")
    '42'
    >>> extract_answer("It costs $1,000.50 in total", "last_number")
    '1000.5'
    >>> extract_answer("The answer is \\\\boxed{\\\\frac{1}{2}}", "boxed")
    '\\\\frac{1}{2}'
    >>> extract_answer("Answer: B (because ...)", "regex:Answer: ([A-D])")
    'B'
    >>> extract_answer("no digits here", "last_number") is None
    True
    >>> extract_answer("42", "none") is None
    True
    """
    validate_mode(mode)
    if mode == "none":
        answer = None
    elif mode == "last_number":
        matches = _NUMBER.findall(text)
        answer = _number(matches[-1]) if matches else None
    elif mode == "boxed":
        answer = _last_boxed(text)
    else:
        pattern = _compile(mode[len("regex:"):])
        last = None
        for last in pattern.finditer(text):
            pass
        if last is None:
            answer = None
        else:
            answer = last.group(1) if pattern.groups and last.group(1) is not None else last.group(0)
    answer = answer.strip() if answer is not None else None
    return answer or None


def normalise(answer: str) -> str:
    """The form two answers are compared in: stripped, lower-case, single spaces, no trailing period.

    >>> normalise("  Paris.  ")
    'paris'
    >>> normalise("New   York\\nCity") == normalise("new york city")
    True
    """
    return " ".join(answer.split()).lower().rstrip(".").rstrip()


def _number(raw: str) -> str:
    """'1,000' → '1000', '3.50' → '3.5', '2.0' → '2', '007' → '7', '-0' → '0', '.5' → '0.5'."""
    s = raw.replace(",", "")
    sign = "-" if s.startswith("-") else ""
    s = s.lstrip("-")
    whole, _, frac = s.partition(".")
    whole = whole.lstrip("0") or "0"
    frac = frac.rstrip("0")
    out = f"{whole}.{frac}" if frac else whole
    return "0" if out == "0" else sign + out


def _last_boxed(text: str) -> str | None:
    """Content of the last complete \\boxed{...}, matching nested braces."""
    start = text.rfind(_BOXED)
    while start != -1:
        depth, i = 1, start + len(_BOXED)
        while i < len(text):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    return text[start + len(_BOXED):i]
            i += 1
        start = text.rfind(_BOXED, 0, start)  # unclosed: try the box before it
    return None
