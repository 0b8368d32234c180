"""Answer extraction for majority vote and Borda: modes, number normalisation, nested boxes, regexes."""

from __future__ import annotations

import pytest

from backend.methods.answers import extract_answer, normalise, validate_mode

CASES = [
    # (text, mode, expected)
    ("So the answer is 42.", "last_number", "42"),
    ("First 3 apples, then 17 pears", "last_number", "17"),
    ("It costs 1,000 dollars", "last_number", "1000"),
    ("Total: $1,234,567.00", "last_number", "1234567"),
    ("The price is 3.50", "last_number", "3.5"),
    ("We get -2 as x", "last_number", "-2"),
    ("x = -0.75", "last_number", "-0.75"),
    ("5-2 = 3 but 7-4", "last_number", "4"),  # a minus between numbers is not a sign
    ("about .5 of it", "last_number", "0.5"),
    ("a list: 1, 2, 3", "last_number", "3"),  # ", " is a list, not a thousands separator
    ("007", "last_number", "7"),
    ("-0.0", "last_number", "0"),
    ("no number here", "last_number", None),
    ("\\boxed{12}", "boxed", "12"),
    ("first \\boxed{1} then \\boxed{\\frac{1}{2}}", "boxed", "\\frac{1}{2}"),
    ("\\boxed{a{b{c}}d} and an unclosed \\boxed{x", "boxed", "a{b{c}}d"),
    ("\\boxed{ 7 }", "boxed", "7"),
    ("\\boxed{}", "boxed", None),
    ("no box: 12", "boxed", None),
    ("Answer: B. Then Answer: C", "regex:Answer: ([A-D])", "C"),  # group 1 of the last match
    ("Final: yes, final: no", "regex:(?i)final: \\w+", "final: no"),  # no group: the whole match
    ("Answer: (maybe)", "regex:Answer: (\\d+)?", "Answer:"),  # group 1 did not take part: whole match
    ("nothing", "regex:Answer: (\\w+)", None),
    ("42", "none", None),
]


@pytest.mark.parametrize(("text", "mode", "expected"), CASES)
def test_extract_answer(text: str, mode: str, expected: str | None) -> None:
    assert extract_answer(text, mode) == expected


@pytest.mark.parametrize(("mode", "message"), [
    ("regex:(unclosed", "invalid regex in answer extraction mode 'regex:(unclosed'"),
    ("regex:[a-", "invalid regex"),
    ("regex:", "needs a pattern"),
    ("last_word", "unknown answer extraction mode 'last_word'"),
    ("", "unknown answer extraction mode ''"),
])
def test_invalid_modes_raise_clear_errors(mode: str, message: str) -> None:
    with pytest.raises(ValueError) as e:
        validate_mode(mode)
    assert message in str(e.value)
    with pytest.raises(ValueError):
        extract_answer("42", mode)


@pytest.mark.parametrize("mode", ["none", "last_number", "boxed", "regex:(\\d+)"])
def test_valid_modes(mode: str) -> None:
    assert validate_mode(mode) == mode


@pytest.mark.parametrize(("a", "b"), [("Paris.", "paris"), ("  New  York ", "new york"), ("A\tB\n", "a b")])
def test_normalise(a: str, b: str) -> None:
    assert normalise(a) == normalise(b) == b
