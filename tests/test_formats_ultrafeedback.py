"""UltraFeedback / distilabel: ratings become model judgments of method `rating` on a 1-5 scale (with
their rationales), DPO formatter rows two responses and their ratings; people's ratings of the same
responses are compared with them in the agreement report as hand-worked below; malformed rows stop the
import with file:line:field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.formats_helpers import SAMPLES, dump, report, write_lines

from storage import judgments
from storage.db import Database
from storage.import_judgments import JudgmentFileError, import_judgments
from storage.models import JudgmentIn
from storage.studies import create_study

SAMPLE = SAMPLES / "ultrafeedback.jsonl"


def _rate(db: Database, sid: int, texts: dict[str, float], judge: str = "ann1") -> None:
    rows = db.fetchall("""SELECT r.id, r.prompt_id, r.text FROM response r JOIN prompt p ON p.id = r.prompt_id
                          WHERE p.study_id = ?""", [sid])
    by_text = {t: (rid, pid) for rid, pid, t in rows}
    judgments.record(db, [JudgmentIn(study_id=sid, prompt_id=by_text[t][1], judge_kind="human", judge=judge,
                                     method="likert", response_id=by_text[t][0], value=v,
                                     idempotency_key=f"t-{judge}-{by_text[t][0]}") for t, v in texts.items()])


def test_sample_imports_ratings_with_scale_and_rationale(db: Database) -> None:
    sid = create_study(db, "uf").id
    s = import_judgments(db, sid, SAMPLE, fmt="ultrafeedback")
    assert (s.items, s.responses, s.judgments) == (3, 7, 6)
    assert s.tally == {"mapped": {"ratings (model judgments on a 1-5 scale)": 6},
                       "kept_aside": {"other columns (prompt metadata)": 1},
                       "ignored": {"null ratings (the rating model's answer was not parsed)": 1,
                                   "chosen/rejected orders (they follow from the ratings)": 1}}
    rows = db.fetchall("""SELECT j.judge, j.judge_kind, j.method, r.model_id, j.value, j.dist, j.rationale
                          FROM judgment j JOIN response r ON r.id = j.response_id ORDER BY j.id""")
    assert rows[0][:5] == ("gpt-4", "model", "rating", "mistral-7b-instruct", 5.0)
    assert json.loads(rows[0][5]) == {"scale_min": 1.0, "scale_max": 5.0}
    assert rows[0][6] == "Three concrete, actionable tips as asked."
    assert [r[0] for r in rows[-2:]] == ["ultrafeedback", "ultrafeedback"]  # DPO rows name no rating model
    assert {r[3]: r[4] for r in rows[-2:]} == {"mistral-7b-instruct": 5.0, "tiny-llama": 2.0}
    meta = json.loads(db.fetchall("SELECT metadata FROM prompt ORDER BY id")[0][0])
    assert "raw_output_ultra_feedback_0" in meta["distilabel_metadata"]


def test_report_compares_ratings_with_people_by_hand(db: Database) -> None:
    """Study tips: gpt-4 rates 5, 4, 1; a person 6, 2, 3. Ranks 3, 2, 1 vs 3, 1, 2: d² = 0 + 1 + 1 = 2,
    rho = 1 − 6·2 / (3·(9 − 1)) = 0.5. The French prompt has one gpt-4 rating (the other is null): no
    per-prompt correlation. The DPO row (rater unnamed: `ultrafeedback`) 5 vs 2, the person 3 vs 6: rho = −1."""
    sid = create_study(db, "uf").id
    import_judgments(db, sid, SAMPLE, fmt="ultrafeedback")
    _rate(db, sid, {"1. Put your phone in another room. 2. Work in 25-minute blocks. 3. Keep water nearby.": 6,
                    "Try to focus harder and avoid distractions.": 2, "Study.": 3, "11 is prime.": 3,
                    "12 is prime.": 6})
    rows = {r["judge"]: r for r in report(db, sid)["headline"]["rows"]}
    assert rows["gpt-4"]["method"] == "rating" and rows["gpt-4"]["compared_with"] == "likert"
    main = rows["gpt-4"]["main"]
    assert (main["metric"], main["value"], main["n"]) == ("spearman_per_prompt_mean", pytest.approx(0.5), 1)
    assert rows["ultrafeedback"]["main"]["value"] == pytest.approx(-1.0)


def test_dpo_row_without_ratings_keeps_the_preference(db: Database, tmp_path: Path) -> None:
    row = {"prompt": "Hi", "chosen": "Hello!", "rejected": "Go away.", "chosen_model": "a", "rejected_model": "b"}
    sid = create_study(db, "uf").id
    s = import_judgments(db, sid, write_lines(tmp_path / "dpo.jsonl", [row]), fmt="ultrafeedback")
    assert s.tally["mapped"] == {"chosen-over-rejected preferences without ratings (model pairwise)": 1}
    (label, variant), = db.fetchall("SELECT label, variant FROM judgment")
    chosen, = db.fetchall("SELECT id FROM response WHERE text = 'Hello!'")[0]
    assert label == str(chosen) and variant.startswith("order:")


UF = {"instruction": "Q", "generations": ["a", "b"], "generation_models": ["m1", "m2"], "ratings": [3, 4],
      "rationales": ["x", "y"], "model_name": "gpt-4"}


@pytest.mark.parametrize(("bad", "where", "detail"), [
    ({**UF, "ratings": [3, 6]}, "ratings[1]", "outside UltraFeedback's scale 1-5"),
    ({**UF, "ratings": [3]}, "ratings", "expected a list of 2 (one per generation), got 1"),
    ({**UF, "ratings": [3, "good"]}, "ratings[1]", "expected a rating 1-5, got 'good'"),
    ({**UF, "generations": ["a", 2]}, "generations[1]", "expected text, got a number"),
    ({**UF, "instruction": None}, "instruction", "missing"),
    ({"prompt": "Q", "chosen": [{"role": "user", "content": "Q"}], "rejected": "r"}, "chosen[0]",
     "the assistant's reply"),
    ({"prompt": "Q", "chosen": "c", "rejected": "r", "chosen_rating": 0}, "chosen_rating", "outside"),
    ({"prompt": "Q", "chosen": "c"}, "rejected", "missing"),
    ({"something": 1}, None, "not an UltraFeedback row"),
])
def test_a_malformed_row_stops_everything(db: Database, tmp_path: Path, bad: dict, where: str | None,
                                          detail: str) -> None:
    sid = create_study(db, "uf").id
    before = dump(db)
    path = write_lines(tmp_path / "uf.jsonl", [UF, {**UF, "instruction": "Other"}, bad])
    with pytest.raises(JudgmentFileError) as e:
        import_judgments(db, sid, path, fmt="ultrafeedback")
    assert (e.value.line, e.value.field) == (3, where) and detail in e.value.detail
    assert dump(db) == before
