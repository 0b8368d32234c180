"""`--consensus dawid_skene | mace` (storage.export.consensus): on a hand-built study where two spammers
outvote one careful annotator by plurality on a few units, the annotator models trust the careful one, and
the exported consensus equals crowd-kit's `DawidSkene` / `MACE` labels on the same votes (the independent
reference); plurality stays the default and is unchanged."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from crowdkit.aggregation import MACE, DawidSkene

from app.cli import main
from storage import judgments, studies
from storage.db import Database
from storage.export import ExportOptions, export_dataset, preview_dataset
from storage.models import JudgmentIn, StudyConfig
from tests.builders import make_prompt, make_responses

CAREFUL, SPAMMERS = ("a", "b", "c"), ("s1", "s2")
N_CALIBRATION, N_TARGET = 10, 3


def _vote(db: Database, sid: int, pid: int, who: str, **kw) -> None:
    judgments.record(db, [JudgmentIn(study_id=sid, prompt_id=pid, judge_kind="human", judge=who,
                                     idempotency_key=uuid.uuid4().hex, **kw)])


def _study(db: Database, signal: str) -> tuple[int, list[tuple[str, int, int, bool]]]:
    """Calibration prompts labelled by all five (the careful three right, truth alternating; the spammers always
    give the first answer: "correct", the lower response id), then target prompts whose truth is the second
    answer, labelled by one careful annotator and both spammers. Returns (study id, [(prompt external id,
    first response, second response, target?)])."""
    s = studies.create_study(db, "cs", config=StudyConfig(questions=["best", "correct", "pairwise"]))
    out = []
    for i in range(N_CALIBRATION + N_TARGET):
        target = i >= N_CALIBRATION
        ext = f"{'t' if target else 'c'}{i}"
        pid = make_prompt(db, s.id, ext, f"Question {i}?")
        lo, hi = make_responses(db, pid, [f"{ext} one", f"{ext} two"])
        first_true = (i % 2 == 0) and not target
        voters = (("a",) + SPAMMERS) if target else CAREFUL + SPAMMERS
        for who in voters:
            says_first = True if who in SPAMMERS else first_true
            if signal == "correct":
                _vote(db, s.id, pid, who, method="correct", response_id=lo,
                      label="correct" if says_first else "incorrect", value=1.0 if says_first else 0.0)
            elif signal == "best":
                _vote(db, s.id, pid, who, method="best_of_n", response_id=lo if says_first else hi,
                      shown_order=[lo, hi])
            else:
                _vote(db, s.id, pid, who, method="pairwise", response_id=lo, response_b_id=hi,
                      shown_order=[lo, hi], label=str(lo if says_first else hi))
        out.append((ext, lo, hi, target))
    return s.id, out


def _crowd_kit(db: Database, sid: int, signal: str, model: str) -> dict[str, bool]:
    """crowd-kit's label per prompt: True when it is the first answer (correct / the lower id)."""
    method = {"correct": "correct", "best": "best_of_n", "pairwise": "pairwise"}[signal]
    rows = db.fetchall("SELECT p.external_id, j.judge, j.label, j.response_id, j.response_b_id FROM judgment j "
                       "JOIN prompt p ON p.id = j.prompt_id WHERE j.study_id = ? AND j.method = ? ORDER BY p.position, "
                       "j.judge", [sid, method])
    first = {ext: min(r[3] for r in rows if r[0] == ext) for ext, *_ in rows}
    if signal == "correct":
        label = [r[2] == "correct" for r in rows]
    elif signal == "best":
        label = [r[3] == first[r[0]] for r in rows]
    else:
        label = [int(r[2]) == first[r[0]] for r in rows]
    df = pd.DataFrame({"task": [r[0] for r in rows], "worker": [r[1] for r in rows],
                       "label": ["first" if x else "second" for x in label]})
    agg = DawidSkene() if model == "dawid_skene" else MACE(n_restarts=1, n_iter=50, random_state=0)
    return {t: v == "first" for t, v in agg.fit_predict(df).items()}


def _exported(db: Database, signal: str, consensus: str, tmp_path: Path) -> dict[str, bool]:
    """The export's consensus per prompt: True when it is the first answer."""
    kind = "kto" if signal == "correct" else "sft" if signal == "best" else "dpo"
    out = tmp_path / f"{signal}-{consensus}.jsonl"
    export_dataset(db, "cs", out, ExportOptions(kind=kind, signal=signal, consensus=consensus))
    got = {}
    for line in out.read_text().splitlines():
        meta = json.loads(line)["meta"]
        lo = min(meta["response_ids"]) if kind == "dpo" else None
        if kind == "kto":
            got[meta["prompt_id"]] = meta["label"]
        elif kind == "sft":
            got[meta["prompt_id"]] = meta["chosen_response_id"] == db.fetchval(
                "SELECT min(id) FROM response WHERE prompt_id = ?", [meta["prompt_db_id"]])
        else:
            got[meta["prompt_id"]] = meta["chosen_response_id"] == lo
    return got


@pytest.mark.parametrize("signal", ["correct", "best", "pairwise"])
@pytest.mark.parametrize("model", ["dawid_skene", "mace"])
def test_annotator_models_overrule_the_spammers_as_crowd_kit_does(db: Database, tmp_path: Path, signal: str,
                                                                  model: str) -> None:
    sid, prompts = _study(db, signal)
    plurality = _exported(db, signal, "plurality", tmp_path)
    fitted = _exported(db, signal, model, tmp_path)
    for ext, _, _, target in prompts:
        if target:  # 2-1 for the spammers' answer by plurality; the model trusts the careful annotator
            assert plurality[ext] is True and fitted[ext] is False, (ext, plurality[ext], fitted[ext])
        else:
            assert plurality[ext] == fitted[ext] == (int(ext[1:]) % 2 == 0), ext
    assert fitted == _crowd_kit(db, sid, signal, model)


def test_the_card_and_the_export_run_name_the_consensus(db: Database, tmp_path: Path) -> None:
    _study(db, "correct")
    res = export_dataset(db, "cs", tmp_path / "k.jsonl", ExportOptions(kind="kto", signal="correct",
                                                                       consensus="dawid_skene"))
    card = Path(res.card_path).read_text()
    assert "the human consensus by Dawid–Skene" in card
    params = json.loads(db.fetchval("SELECT params FROM export_run WHERE id = ?", [res.export_run_id]))
    assert params["consensus"] == "dawid_skene"
    # the target rows keep the votes and show how few agreed with the chosen label
    rows = [json.loads(x)["meta"] for x in (tmp_path / "k.jsonl").read_text().splitlines()]
    target = [m for m in rows if m["prompt_id"].startswith("t")]
    assert target and all(m["label"] is False and m["agreement"] == pytest.approx(1 / 3) for m in target)


@pytest.mark.parametrize("options,message", [
    ({"kind": "dpo", "consensus": "mace", "per_annotator": True}, "use each person's own labels"),
    ({"kind": "dpo", "consensus": "mace", "signal": "ratings"}, "fits categorical votes"),
    ({"kind": "dpo", "consensus": "dawid_skene", "source": "model:rubric"}, "weighs human labels"),
])
def test_bad_combinations_are_refused(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ExportOptions(**options)


def test_an_auto_signal_that_resolves_to_ratings_is_refused(db: Database) -> None:
    s = studies.create_study(db, "r")
    pid = make_prompt(db, s.id, "p", "Q?")
    a, b = make_responses(db, pid, ["x", "y"])
    for rid, v in ((a, 6.0), (b, 2.0)):
        _vote(db, s.id, pid, "a", method="likert", response_id=rid, value=v)
    with pytest.raises(ValueError, match="use it with the best, pairwise or correct signal, not ratings"):
        preview_dataset(db, "r", ExportOptions(kind="dpo", consensus="mace"))


def test_cli_consensus_option(tmp_path: Path) -> None:
    path = tmp_path / "c.duckdb"
    with Database(path) as db:
        _study(db, "correct")
    r = CliRunner().invoke(main, ["export", "kto", "--study", "cs", "--signal", "correct", "--consensus", "mace",
                                  "--out", str(tmp_path / "k.jsonl"), "--db", str(path)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    labels = {json.loads(x)["meta"]["prompt_id"]: json.loads(x)["meta"]["label"]
              for x in (tmp_path / "k.jsonl").read_text().splitlines()}
    assert [labels[f"t{i}"] for i in range(N_CALIBRATION, N_CALIBRATION + N_TARGET)] == [False] * N_TARGET
    r = CliRunner().invoke(main, ["export", "kto", "--help"])
    assert "--consensus [plurality|dawid_skene|mace]" in r.output
