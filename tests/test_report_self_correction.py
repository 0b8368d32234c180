"""The report's `self_correction` section on a hand-built study: critique judgments, revision responses (as the
scoring service stores them: origin 'revision', parent_id, the critic's model id, metadata.method) and human
correct / incorrect labels; every figure worked out from the design table below by its definition."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from app.services.agreement import method_info
from storage import judgments, prompts, responses
from storage.analysis.report import build_report, report_html, report_markdown
from storage.db import Database
from storage.models import ChatMessage, JudgmentIn, PromptIn, ResponseIn, StudyConfig
from storage.studies import create_study
from tests.builders import make_prompt, make_responses, make_run
from tests.test_agreement_report import undocumented_keys

# response -> (prompt, human votes on it); "split" = two annotators disagree (no consensus)
ORIGINAL = {"r1": (0, "correct"), "r2": (0, "incorrect"), "r3": (1, "correct"), "r4": (1, "incorrect"),
            "r5": (2, "incorrect"), "r6": (2, "split")}
# revisions in insertion order: (name, critic model, original, human label or None)
REVISIONS = [("v2", "m", "r2", "correct"), ("v3", "m", "r3", "incorrect"), ("v4a", "m", "r4", "incorrect"),
             ("v4b", "m", "r4", "correct"), ("v1o", "other", "r1", "incorrect")]
CRITIQUED = {"m": ["r1", "r2", "r3", "r4", "r5", "r6"], "other": ["r1"]}


def _expected(judge: str) -> dict[str, Any]:
    """From the definitions: before = the original's label, after = the judge's first revision's label (the
    original's when it has none); attempts with an unknown side are left out."""
    ok = {k: v for k, (_, v) in ORIGINAL.items() if v != "split"}
    ok.update({name: lab for name, _, _, lab in REVISIONS if lab})
    pairs = []
    for r in CRITIQUED[judge]:
        revs = [name for name, critic, orig, _ in REVISIONS if critic == judge and orig == r]
        after = ok.get(revs[0]) if revs else ok.get(r)
        if r in ok and after is not None:
            pairs.append((ok[r] == "correct", after == "correct"))
    n = len(pairs)
    before, after = sum(b for b, _ in pairs), sum(a for _, a in pairs)
    fixed, broken = sum((not b) and a for b, a in pairs), sum(b and not a for b, a in pairs)
    return {"n": n, "accuracy_before": before / n, "accuracy_after": after / n, "delta": (after - before) / n,
            "delta_i_to_c": fixed / n, "delta_c_to_i": broken / n,
            "confidence_level": (before - broken) / before if before else None,
            "critique_score": fixed / (n - before) if n > before else None, "i_to_c": fixed, "c_to_i": broken}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Any:
    db = Database(tmp_path_factory.mktemp("sc") / "sc.duckdb")
    sid = create_study(db, "self-correction", config=StudyConfig(questions=["correct"])).id
    run = make_run(db, sid, "m")
    pids = [make_prompt(db, sid, f"q{k}", f"Question {k}?") for k in range(3)]
    ids: dict[str, int] = {}
    for k, pid in enumerate(pids):
        names = [name for name, (kk, _) in ORIGINAL.items() if kk == k]
        ids.update(zip(names, make_responses(db, pid, [f"answer {n}" for n in names], run_id=run)))
    for name, critic, orig, _ in REVISIONS:
        ids[name] = responses.insert_responses(db, [ResponseIn(
            prompt_id=pids[ORIGINAL[orig][0]], origin="revision", parent_id=ids[orig], text=f"fixed {name}",
            model_id=critic, metadata={"method": "critique", "variant": "s0", "seed": 1})])[0]
    rows: list[JudgmentIn] = []

    def rec(**kw: Any) -> None:
        rows.append(JudgmentIn(study_id=sid, idempotency_key=uuid.uuid4().hex, **kw))

    def vote(name: str, pid: int, lab: str, who: str = "ann1") -> None:
        rec(prompt_id=pid, judge_kind="human", judge=who, method="correct", response_id=ids[name], label=lab,
            value=1.0 if lab == "correct" else 0.0)
    for name, (k, lab) in ORIGINAL.items():
        if lab == "split":
            vote(name, pids[k], "correct")
            vote(name, pids[k], "incorrect", "ann2")
        else:
            vote(name, pids[k], lab)
    for name, _, orig, lab in REVISIONS:
        if lab:
            vote(name, pids[ORIGINAL[orig][0]], lab)
    for judge, done in CRITIQUED.items():
        for name in done:
            rec(prompt_id=pids[ORIGINAL[name][0]], judge_kind="model", judge=judge, method="critique",
                response_id=ids[name], value=0.5, label="split")
    judgments.record(db, rows)
    rep = build_report(db, sid, n_boot=200, seed=3, method_info=method_info)
    yield {"db": db, "sid": sid, "rep": rep}
    db.close()


def test_figures_follow_from_the_design(built):
    sec = built["rep"]["self_correction"]
    assert sec["available"], sec
    by = {r["judge"]: r for r in sec["judges"]}
    assert sorted(by) == ["m", "other"]
    m = by["m"]
    # r6 has no consensus; r4's first revision (v4a) counts, not v4b
    assert (m["n_critiqued"], m["n_revised"], m["n_unlabelled"], m["n_revised_labelled"], m["n_own"]) == (6, 3, 1, 3, 5)
    for judge, row in by.items():
        exp = _expected(judge)
        assert (row["n"], row["i_to_c"], row["c_to_i"]) == (exp["n"], exp["i_to_c"], exp["c_to_i"])
        for f in ("accuracy_before", "accuracy_after", "delta", "delta_i_to_c", "delta_c_to_i", "confidence_level",
                  "critique_score"):
            got = row[f]["estimate"]
            assert (got is None) if exp[f] is None else got == pytest.approx(exp[f], abs=1e-12), (judge, f)
            if got is not None:
                lo, hi = row[f]["ci"]
                assert lo - 1e-12 <= got <= hi + 1e-12
    # by hand for m: 5 attempts, r1 c→c, r2 i→c, r3 c→i, r4 i→i (v4a), r5 i→i
    assert m["accuracy_before"]["estimate"] == pytest.approx(2 / 5) and m["delta"]["estimate"] == pytest.approx(0)
    assert m["confidence_level"]["estimate"] == pytest.approx(1 / 2) and m["critique_score"]["estimate"] == \
        pytest.approx(1 / 3)
    # "other" only ever saw a right answer: no critique score
    assert by["other"]["critique_score"]["estimate"] is None and by["other"]["confidence_level"]["estimate"] == 0
    assert by["other"]["n_own"] == 0


def test_rendered_and_documented(built):
    rep = built["rep"]
    md, page = report_markdown(rep), report_html(rep)
    assert "Self-correction (critique revisions)" in md and "critique score" in md
    assert "0.400 [" in md  # m's accuracy before with its interval
    assert "[–, –]" not in md  # other's undefined critique score is a plain dash
    assert "Self-correction (critique revisions)" in page
    assert not undocumented_keys(rep["self_correction"])
    plain = build_report(built["db"], built["sid"], n_boot=0, method_info=method_info)
    row = next(r for r in plain["self_correction"]["judges"] if r["judge"] == "m")
    assert row["delta_i_to_c"] == {"estimate": 0.2, "ci": None, "n_valid": None}
    left = build_report(built["db"], built["sid"], n_boot=0, method_info=method_info, extended=False)
    assert left["self_correction"]["available"] is False


def test_without_critique_or_labels_says_why(tmp_path: Path):
    db = Database(tmp_path / "none.duckdb")
    sid = create_study(db, "none").id
    pid = make_prompt(db, sid)
    rid = make_responses(db, pid, ["a"], run_id=make_run(db, sid, "m"))[0]
    rep = build_report(db, sid, n_boot=0, method_info=method_info)
    assert rep["self_correction"]["reason"].startswith("no critique judgments")
    judgments.record(db, [JudgmentIn(study_id=sid, prompt_id=pid, judge_kind="model", judge="m", method="critique",
                                     response_id=rid, value=1.0, idempotency_key=uuid.uuid4().hex)])
    rep = build_report(db, sid, n_boot=0, method_info=method_info)
    assert rep["self_correction"] == {"available": False, "reason": "no human correct / incorrect labels, and no "
                                                                    "prompt with a numeric reference answer"}
    db.close()


# reference "#### 12" on q0 and "It is 5." on q1 (q2 has a text reference: not matchable); per original
# response its text, then each critic's revision text (None: no revision written)
REF = {"q0": "6 + 6 = 12 #### 12", "q1": "It is 5.", "q2": "Paris"}
ATTEMPTS = {"q0": [("So the total is 12.", "Checked: still 12."), ("I get 11.", "Fixed: 12."),
                   ("Answer: 13", None)],
            "q1": [("5", "Revised to 6."), ("four", "It is 5")],
            "q2": [("Paris", "Lyon")]}


def test_reference_matched_correctness_without_human_labels(tmp_path: Path):
    """No person labelled anything: the section reads correctness from the numeric references. Attempts on q0
    and q1: before 12 ✓, 11 ✗, 13 ✗, 5 ✓, 'four' ✗; after 12 ✓, 12 ✓, 13 ✗ (no revision), 6 ✗, 5 ✓ → before
    2/5, after 3/5, fixed 2, broken 1; q2's text reference is not matched."""
    db = Database(tmp_path / "ref.duckdb")
    sid = create_study(db, "ref").id
    run = make_run(db, sid, "m")
    rows: list[JudgmentIn] = []
    for ext, attempts in ATTEMPTS.items():
        prompts.insert_prompts(db, sid, [PromptIn(external_id=ext, reference=REF[ext],
                                                  messages=[ChatMessage(role="user", content="?")])])
        pid = db.fetchval("SELECT id FROM prompt WHERE external_id = ?", [ext])
        ids = make_responses(db, pid, [text for text, _ in attempts], run_id=run)
        for rid, (_, revised) in zip(ids, attempts):
            rows.append(JudgmentIn(study_id=sid, prompt_id=pid, judge_kind="model", judge="m", method="critique",
                                   response_id=rid, value=0.0, idempotency_key=uuid.uuid4().hex))
            if revised is not None:
                responses.insert_responses(db, [ResponseIn(prompt_id=pid, origin="revision", parent_id=rid,
                                                           text=revised, model_id="m",
                                                           metadata={"method": "critique", "variant": "s0"})])
    judgments.record(db, rows)
    sec = build_report(db, sid, n_boot=50, method_info=method_info)["self_correction"]
    assert sec["available"] and sec["judges"] == [] and sec["human"]["available"] is False
    (row,) = sec["reference"]["judges"]
    assert (row["n"], row["n_unlabelled"], row["i_to_c"], row["c_to_i"]) == (5, 1, 2, 1)
    assert row["accuracy_before"]["estimate"] == pytest.approx(2 / 5)
    assert row["accuracy_after"]["estimate"] == pytest.approx(3 / 5)
    assert row["confidence_level"]["estimate"] == pytest.approx(1 / 2)  # 12 kept, 5 → 6 broken
    assert row["critique_score"]["estimate"] == pytest.approx(2 / 3)  # 11 → 12, four → 5 fixed; 13 not
    assert not undocumented_keys(sec)
    assert "By reference answer instead of human labels" in report_markdown(build_report(
        db, sid, n_boot=0, method_info=method_info))
    db.close()
