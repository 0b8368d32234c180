"""Correctness by reference match, for prompts whose reference answer is a number (GSM8K-style math): a
response is correct when the last number it writes equals the reference's final number. What the
self-correction figures use where no person labelled a response (a critique's revision, most often: revisions
are not served in the Label tab).

The reference's final number is the one after GSM8K's ``####`` marker when there is one, else its last
number; thousands separators are dropped (``1,000`` is 1000); two numbers are equal within 1e-6 relative. A
reference without a number cannot be matched (None): such prompts stay unlabelled rather than being guessed
by string comparison.

>>> reference_number("She has 3 + 4 = 7 apples. #### 7"), reference_number("The answer is 1,250.5")
(7.0, 1250.5)
>>> answer_matches("So 3 + 4 gives 7 apples.", "#### 7"), answer_matches("It is 8.", "7"), answer_matches("x", "seven")
(True, False, None)
>>> answer_matches("No number here.", "7")
False
"""

from __future__ import annotations

import math
import re

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_MARKER = "####"
REL_TOL = 1e-6
RULE = ("reference match: correct when the last number in the response equals the reference's final number "
        "(after GSM8K's '####' if present, else its last number; thousands separators dropped; relative "
        "tolerance 1e-6); prompts whose reference holds no number are not matched")


def _last_number(text: str) -> float | None:
    found = _NUMBER.findall(text or "")
    for raw in reversed(found):
        try:
            return float(raw.replace(",", ""))
        except ValueError:  # e.g. "1,2,3" read as one token: look further back
            continue
    return None


def reference_number(reference: str | None) -> float | None:
    """The number a reference answer ends on (after '####' when present), or None."""
    if not reference:
        return None
    tail = reference.rsplit(_MARKER, 1)[1] if _MARKER in reference else reference
    return _last_number(tail)


def answer_matches(text: str, reference: str | None) -> bool | None:
    """Whether `text`'s last number equals the reference's final number; None when the reference has none."""
    ref = reference_number(reference)
    if ref is None:
        return None
    got = _last_number(text)
    return got is not None and math.isclose(got, ref, rel_tol=REL_TOL, abs_tol=REL_TOL)
