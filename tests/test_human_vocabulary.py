"""One vocabulary for the human questions: storage.models.HumanMethod and QUESTION_METHODS are what the
labelling service writes, what the method table compares with, and the only place the method names are spelled."""

from __future__ import annotations

import pathlib
import re
import typing

import pytest

from app.services.labelling import ChecklistQuestion, LabelSubmission, _judgments
from backend.methods.registry import all_methods
from backend.methods.table import HUMAN_QUESTION
from storage.models import QUESTION_METHODS, QUESTIONS, ComparedWith, HumanMethod, Study, StudyConfig

ROOT = pathlib.Path(__file__).resolve().parents[1]

# One answer per question, on a two-card item with a two-item checklist.
ANSWERS: dict[str, dict[str, object]] = {
    "best": {"best": 11},
    "rating": {"ratings": {11: 5, 12: 2}},
    "pairwise": {"pairwise": "A"},
    "correct": {"correct": {11: True}},
    "checklist": {"checklist_yes": {11: [1]}},
    "critique": {"critique": {12: "disagree"}},
    "reference": {"reference": "42"},
    "comment": {"comment": "fine"},
}


def test_every_question_has_methods_and_an_answer_here() -> None:
    assert set(QUESTION_METHODS) == set(QUESTIONS) == set(ANSWERS)
    written = [m for ms in QUESTION_METHODS.values() for m in ms]
    assert sorted(written) == sorted(HumanMethod), "each human method belongs to exactly one question"


@pytest.mark.parametrize("question", QUESTIONS)
def test_the_labelling_service_writes_exactly_the_questions_methods(question: str) -> None:
    study = Study(id=1, name="s", config=StudyConfig(questions=[question]))
    sub = LabelSubmission(study="s", prompt_id=7, shown_order=[11, 12], idempotency_key="key-12345678",
                          **ANSWERS[question])
    checklist = [ChecklistQuestion(id=1, question="Is it right?"), ChecklistQuestion(id=2, question="Short?")]
    rows = _judgments(study, "ann", sub, "label", checklist)
    assert rows and {r.method for r in rows} == set(QUESTION_METHODS[question])
    assert all(type(r.method) is str for r in rows), "stored as plain strings"


def test_method_table_compares_with_the_vocabulary() -> None:
    allowed = set(typing.get_args(ComparedWith))
    assert set(HUMAN_QUESTION) == allowed
    assert allowed - {"checklist"} <= set(HumanMethod)
    assert {m.compared_with for m in all_methods()} <= allowed


def _bare_method_name() -> re.Pattern[str]:
    names = "|".join(re.escape(m.value) for m in HumanMethod)
    return re.compile(rf"""method["')]*\s*(==|!=|<>|=|(NOT\s+)?IN\s*\()\s*["']({names})["']""", re.IGNORECASE)


def test_human_methods_are_named_through_the_enum() -> None:
    # A method compared with or assigned as a bare string, in Python or in SQL. Report section keys such as
    # rep["best_of_n"] are the report format's own names, and the judgments file's `type` Literals
    # (storage/judgment_records.py) the file format's own words.
    pattern = _bare_method_name()
    found = []
    for pkg in ("app", "backend", "storage"):
        for path in (ROOT / pkg).rglob("*.py"):
            rel = path.relative_to(ROOT).as_posix()
            for no, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line) and rel != "storage/models.py" and not line.strip().startswith((">>>", "Source(")):
                    found.append(f"{rel}:{no}: {line.strip()}")
    assert not found, "\n".join(found)


def test_the_guard_sees_bare_names() -> None:
    pattern = _bare_method_name()
    for line in ('if j.method == "best_of_n":', "AND method <> 'criterion_valid'", 'pl.col("method") == "likert"',
                 'JudgmentIn(method="critique_agree")', "method NOT IN ('criterion_valid')"):
        assert pattern.search(line), line
    assert not pattern.search('rep["best_of_n"]')
