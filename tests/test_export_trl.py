"""Every export kind loads with `datasets.load_dataset` and passes TRL's own data utilities (conversational
detection, prompt extraction, chat-template application with the SmolLM2 tokenizer read from the bundled GGUF
through transformers + gguf), from a demo-like study (generated, self-scored and labelled through the services)
and from an imported judgments file. Also: the `datasets` directory, the card's features, the CLI and the ops."""

from __future__ import annotations

import json
import os
from functools import partial
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from app.cli_export import add_export_commands
from app.services import exports, generation, labelling
from app.services.context import AppContext, ServiceError
from app.services.scoring import start_scoring
from app.services.exports import export_methods
from backend.engines.llamacpp_util import default_model_path
from storage import studies
from storage.db import Database
from storage.export import ExportOptions, row_schema
from storage.export import export_dataset as _export_dataset
from storage.import_judgments import import_judgments
from backend.engines.chat_template import load_chat_template
from storage.migrations import BUNDLED_ID
from storage.models import ModelIdentity, SamplingSettings, StudyConfig
from tests.builders import make_members, make_prompt, make_study
from tests.scripted_engine import ScriptedEngine

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Plain imports, not importorskip: these are in the test extras, and a missing one must fail CI, not skip
# the check that TRL accepts the exports.
import datasets  # noqa: E402
import trl.data_utils as data_utils  # noqa: E402

# Model sources, judge rows and standard-style prompts need the method facts the app layer passes in.
export_dataset = partial(_export_dataset, methods=export_methods())

EMBEDDED = BUNDLED_ID
PAIR_KINDS = ("dpo", "rm", "judge")


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    """SmolLM2's tokenizer and chat template, read from the GGUF the embedded engine uses (no download)."""
    from transformers import AutoTokenizer

    path = default_model_path()
    return AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))


# -- a demo-like study: generated, self-scored and labelled through the services ---------------------------------
def _texts(chat: list[dict[str, str]], j: int, params: Any, schema: dict | None, seed: int | None) -> str:
    props = (schema or {}).get("properties", {})
    last = chat[-1]["content"]
    if "verdict" in props:  # critique: sample 0 says correct, sample 1 incorrect
        verdict = "correct" if j == 0 else "incorrect"
        return json.dumps({"critique": f"Checked <b>step</b> {j}.", "verdict": verdict,
                           "first_error": "none" if j == 0 else "the sum", "corrected_response": ""})
    if "score" in props:  # rubric: a higher score for a lower sample number
        n = next((k for k in range(3) if f"sample {k}" in last), 2)
        return json.dumps({"justification": "fine", "score": 5 - n})
    return f"sample {j}: answer to {last} — ünïcode ✓ <script>alert(1)</script>"


def _probs(chat: list[dict[str, str]], prefix: str, candidates: list[str]) -> dict[str, float]:
    last = chat[-1]["content"]
    if candidates == ["A", "B", "C"]:  # pairwise: the lower sample number wins, in both orders
        a_part = last.split("Assistant B")[0]
        nums = [k for k in range(3) if f"sample {k}" in last]
        a_wins = bool(nums) and f"sample {min(nums)}" in a_part
        return {"A": 0.7, "B": 0.2, "C": 0.1} if a_wins else {"A": 0.2, "B": 0.7, "C": 0.1}
    return {c: 1.0 / len(candidates) for c in candidates}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> AppContext:
    db = Database(tmp_path_factory.mktemp("demo") / "demo.duckdb")
    # Poses as the bundled model, with the template the real engine reports for it (exports render with it).
    template = load_chat_template(default_model_path())
    model = ModelIdentity(model_id=EMBEDDED, engine="embedded", name="SmolLM2", chat_template=template.text,
                          special_tokens=template.special, bundled=True)
    engine = ScriptedEngine(texts=_texts, probs=_probs, model_id=EMBEDDED, engine="embedded", model=model)
    ctx = AppContext(db=db, engine_factory=lambda cfg: engine)
    s = make_study(db, "sample")
    studies.update_study(db, s.id, config=StudyConfig(questions=["best", "rating", "correct", "comment"]))
    for i in range(4):
        make_prompt(db, s.id, f"q{i}", f"Question {i}: what is {i} + {i}?", system="Answer briefly." if i else None)
    generation.start_generation(ctx, "sample", SamplingSettings(n=3, seed=0, max_tokens=32), background=False)
    job = start_scoring(ctx, "sample", ["critique", "rubric", "pairwise"], background=False)
    assert job.status == "done", job.error
    make_members(db, s.id, "alice", "bob", "carol")
    for who, best_pos in (("alice", 0), ("bob", 0), ("carol", 1)):
        for _ in range(4):
            item = labelling.next_item(ctx, who, "sample")
            order = [c.response_id for c in item.cards]
            by_sample = sorted(order)  # sample 0 has the lowest id
            ratings = {by_sample[0]: 7, by_sample[1]: 4, by_sample[2]: 1}
            labelling.submit(ctx, who, labelling.LabelSubmission(
                study="sample", prompt_id=item.prompt_id, shown_order=order, best=by_sample[best_pos],
                ratings=ratings, correct={by_sample[0]: True, by_sample[2]: False},
                idempotency_key=f"{who}-{item.prompt_id}-key"))
    yield ctx
    ctx.close()


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Database:
    """An imported judgments file: human pairwise, likert, best_of_n and correct; model p_true, critiques, pairwise."""
    d = tmp_path_factory.mktemp("imported")
    lines = []
    for i in range(3):
        h = lambda who, **kw: {"judge": who, "judge_kind": "human", **kw}
        m = lambda **kw: {"judge": "gpt-x", "judge_kind": "model", **kw}
        lines.append({
            "item_id": f"mt{i}", "prompt": f"Explain {i} in one line.", "category": "demo",
            "responses": [{"id": "r1", "text": f"Good answer {i}.", "model": "model-a"},
                          {"id": "r2", "text": f"Bad answer {i} with \"quotes\" and =HYPERLINK()", "model": "model-b"}],
            "judgments": [
                h("ann1", type="pairwise", shown=["r1", "r2"], winner="r1"),
                h("ann2", type="pairwise", shown=["r2", "r1"], winner="r1"),
                h("ann1", type="likert", response="r1", score=6, scale=[1, 7]),
                h("ann1", type="likert", response="r2", score=2, scale=[1, 7]),
                h("ann1", type="best_of_n", shown=["r1", "r2"], winner="r1"),
                h("ann1", type="correct", response="r1", value=True),
                h("ann1", type="correct", response="r2", value=False),
                m(type="p_true", response="r1", prob=0.9), m(type="p_true", response="r2", prob=0.2),
                m(type="critique", response="r2", variant="s0", score=1, label="correct", rationale="seems fine"),
                m(type="critique", response="r2", variant="s1", score=0, label="incorrect",
                  rationale="wrong\nFirst error: Bad"),
                m(type="pairwise", shown=["r1", "r2"], winner="r1", prob={"r1": 0.8, "r2": 0.1, "tie": 0.1}),
                m(type="pairwise", shown=["r2", "r1"], winner="r1", prob={"r1": 0.6, "r2": 0.3, "tie": 0.1}),
            ]})
    f = d / "judgments.jsonl"
    f.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n", encoding="utf-8")
    db = Database(d / "imported.duckdb")
    s = make_study(db, "mt")
    import_judgments(db, s.id, str(f))
    yield db
    db.close()


# -- checks ---------------------------------------------------------------------------------------------------
def load(path: str, cache: Path) -> Any:
    fmt = "parquet" if path.endswith(".parquet") else "json"
    return datasets.load_dataset(fmt, data_files=path, split="train", cache_dir=str(cache))


def check_trl(ds: Any, kind: str, style: str, tokenizer: Any) -> None:
    """The loaded dataset has TRL's columns and passes its data utilities, row by row."""
    expected = row_schema(kind, style).names
    assert ds.column_names == expected
    for ex in ds:
        assert data_utils.is_conversational(ex) == (style != "standard")
        if kind in PAIR_KINDS:
            # an explicit prompt: TRL keeps it as is, and the prompt is never repeated inside chosen/rejected
            assert data_utils.maybe_extract_prompt(ex) == ex
            if style != "standard":
                assert [m["role"] for m in ex["chosen"]] == [m["role"] for m in ex["rejected"]] == ["assistant"]
                assert ex["prompt"][-1]["role"] == "user"
        if kind == "kto":
            assert isinstance(ex["label"], bool)
        if kind == "rm":
            assert isinstance(ex["margin"], float) and ex["margin"] > 0
        if style == "standard":
            assert isinstance(ex["prompt"], str) and ex["prompt"].endswith("<|im_start|>assistant\n")
            continue
        templated = data_utils.maybe_apply_chat_template(ex, tokenizer)
        assert isinstance(templated.get("prompt", templated.get("text")), str)
        if "prompt" in ex:
            # TRL's rendering (transformers' chat template from the GGUF) = the prompt a standard export writes
            assert templated["prompt"] == tokenizer.apply_chat_template(ex["prompt"], tokenize=False,
                                                                        add_generation_prompt=True)
    if kind in ("dpo", "rm") and len(ds):
        unpaired = data_utils.unpair_preference_dataset(ds.remove_columns([c for c in ds.column_names
                                                                            if c not in ("prompt", "chosen", "rejected")]))
        assert len(unpaired) == 2 * len(ds) and set(unpaired.column_names) == {"prompt", "completion", "label"}


DEMO_CASES = [("dpo", {}), ("rm", {}), ("kto", {}), ("sft", {}), ("judge", {}),
              ("dpo", {"source": "model:rubric"}), ("dpo", {"source": "model:pairwise"}),
              ("dpo", {"source": "consensus:rubric"}), ("dpo", {"per_annotator": True}),
              ("rm", {"signal": "ratings", "all_pairs": True}), ("sft", {"source": "model:rubric"}),
              ("kto", {"signal": "ratings"})]


@pytest.mark.parametrize(("kind", "extra"), DEMO_CASES)
def test_demo_study_exports_load_and_pass_trl(demo: AppContext, tokenizer: Any, tmp_path: Path, kind: str,
                                             extra: dict[str, Any]) -> None:
    for style, ext in (("conversational", "jsonl"), ("conversational", "parquet"), ("standard", "jsonl")):
        out = tmp_path / f"{style}-{ext}" / f"{kind}.{ext}"  # a .jsonl and a .parquet of one stem share a card name
        r = export_dataset(demo.db, "sample", out, ExportOptions(kind=kind, style=style, **extra))
        assert r.rows > 0, (kind, extra, r.skipped)
        ds = load(r.out_path, tmp_path / "cache")
        assert len(ds) == r.rows
        check_trl(ds, kind, style, tokenizer)
        assert "alice" not in out.read_bytes().decode("utf-8", "replace")


def test_standard_prompts_are_the_chat_template_rendering(demo: AppContext, tokenizer: Any, tmp_path: Path) -> None:
    conv = export_dataset(demo.db, "sample", tmp_path / "c.jsonl", ExportOptions())
    std = export_dataset(demo.db, "sample", tmp_path / "s.jsonl", ExportOptions(style="standard"))
    rows_c = [json.loads(x) for x in Path(conv.out_path).read_text().splitlines()]
    rows_s = [json.loads(x) for x in Path(std.out_path).read_text().splitlines()]
    assert len(rows_c) == len(rows_s) > 0
    for c, s in zip(rows_c, rows_s):
        assert s["prompt"] == tokenizer.apply_chat_template(c["prompt"], tokenize=False, add_generation_prompt=True)
        assert (s["chosen"], s["rejected"]) == (c["chosen"][0]["content"], c["rejected"][0]["content"])
        assert "<script>alert(1)</script>" in s["chosen"]  # verbatim text, never the sanitised rendering
        assert s["meta"] == c["meta"]
    judge_std = export_dataset(demo.db, "sample", tmp_path / "j.jsonl", ExportOptions(kind="judge", style="standard"))
    row = json.loads(Path(judge_std.out_path).read_text().splitlines()[0])
    assert row["prompt"].startswith("<|im_start|>system\n") and json.loads(row["chosen"])["verdict"] in (
        "correct", "incorrect")


def test_demo_card_states_the_provenance(demo: AppContext, tmp_path: Path) -> None:
    r = export_dataset(demo.db, "sample", tmp_path / "pairs.jsonl", ExportOptions(min_annotators=2))
    card = Path(r.card_path).read_text()
    run = studies.list_runs(demo.db, studies.get_study(demo.db, "sample").id)[0]
    for needle in ('"sample"', EMBEDDED, "| 0.8 | 0.9 | 32 |", f"| {run.id} | embedded |", "`min_annotators`: 2",
                   r.content_hash, "Agreement (share of a row's annotators agreeing", "unanimous rows",
                   "| kept | 4 |"):
        assert needle in card, needle
    # the card's features type every column when a folder of the file and the card as README.md is loaded
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "pairs.jsonl").write_bytes(Path(r.out_path).read_bytes())
    (hub / "README.md").write_text(card)
    ds = datasets.load_dataset(str(hub), split="train", cache_dir=str(tmp_path / "cache"))
    assert ds.features == datasets.Features.from_arrow_schema(row_schema("dpo", "conversational"))
    assert len(ds) == 4


def test_hf_dir_is_a_datasets_directory(demo: AppContext, tmp_path: Path) -> None:
    r = export_dataset(demo.db, "sample", tmp_path / "kto.parquet", ExportOptions(kind="kto"),
                       hf_dir=tmp_path / "hf")
    ds = datasets.load_from_disk(str(tmp_path / "hf"))
    assert len(ds) == r.rows and ds.column_names == ["prompt", "completion", "label", "meta"]
    assert ds.features == datasets.Features.from_arrow_schema(row_schema("kto", "conversational"))
    again = export_dataset(demo.db, "sample", tmp_path / "kto2.jsonl", ExportOptions(kind="kto"), hf_dir=r.hf_dir)
    assert len(datasets.load_from_disk(again.hf_dir)) == r.rows  # an earlier datasets directory is replaced
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not an earlier datasets directory"):
        export_dataset(demo.db, "sample", tmp_path / "x.jsonl", ExportOptions(), hf_dir=tmp_path / "mine")
    empty = export_dataset(demo.db, "sample", tmp_path / "none.jsonl", ExportOptions(min_annotators=9),
                           hf_dir=tmp_path / "hf-empty")
    assert empty.rows == 0 and len(datasets.load_from_disk(empty.hf_dir)) == 0


IMPORTED_CASES = [("dpo", {}), ("rm", {}), ("kto", {}), ("sft", {}), ("judge", {}),
                  ("dpo", {"source": "model:p_true"}), ("dpo", {"source": "model:pairwise"}),
                  ("dpo", {"source": "consensus:pairwise"}), ("dpo", {"signal": "best"})]


@pytest.mark.parametrize(("kind", "extra"), IMPORTED_CASES)
def test_imported_judgments_export_and_load(imported: Database, tokenizer: Any, tmp_path: Path, kind: str,
                                            extra: dict[str, Any]) -> None:
    for ext in ("jsonl", "parquet"):
        r = export_dataset(imported, "mt", tmp_path / ext / f"{kind}.{ext}", ExportOptions(kind=kind, **extra))
        assert r.rows == (6 if kind == "kto" else 3), (kind, extra, r.skipped)
        ds = load(r.out_path, tmp_path / "cache")
        check_trl(ds, kind, "conversational", tokenizer)
    first = ds[0]
    assert first["meta"]["off_policy"] is False and first["meta"]["origins"][0]["origin"] == "imported"
    if kind in ("dpo", "rm", "sft"):
        assert "Good answer 0." in json.dumps(first, ensure_ascii=False)


def test_standard_style_needs_the_generating_models_template(imported: Database, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--chat-template"):
        export_dataset(imported, "mt", tmp_path / "s.jsonl", ExportOptions(style="standard"))
    r = export_dataset(imported, "mt", tmp_path / "s.jsonl", ExportOptions(style="standard",
                                                                          chat_template=default_model_path()))
    assert r.rows == 3 and "chat template | from" in Path(r.card_path).read_text()


# -- the CLI and the operations ----------------------------------------------------------------------------------
def _cli(ctx: AppContext) -> click.Group:
    @click.group()
    def export() -> None:
        """Export labelled data."""

    def call(db_path: str, op: str, payload: dict[str, Any]) -> dict[str, Any]:
        model, fn = exports.EXPORT_OPS[op]
        try:
            return fn(ctx, "cli", model.model_validate(payload))
        except ValueError as e:
            raise click.ClickException(str(e)) from e

    def db_option(fn: Any) -> Any:
        return click.option("--db", "db_path", default="critlab.duckdb", help="DuckDB file.")(fn)

    add_export_commands(export, call, db_option)
    return export


def test_cli_commands_help_and_export(demo: AppContext, tmp_path: Path) -> None:
    group = _cli(demo)
    runner = CliRunner()
    for kind in ("dpo", "rm", "kto", "sft", "judge"):
        r = runner.invoke(group, [kind, "--help"])
        assert r.exit_code == 0 and "--db" in r.output and "--per-annotator" in r.output, r.output
    r = runner.invoke(group, ["dpo", "--study", "sample", "--out", str(tmp_path / "p.jsonl"), "--min-agreement",
                              "0.7", "--include-origin", "sampled,revision"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("0 pairs: 4 skipped (low_agreement: 4)"), r.output  # every pick is 2 of 3
    summary = json.loads(r.output.split("\n", 1)[1])
    assert summary["rows"] == 0 and summary["skipped"] == {"low_agreement": 4} and summary["export_run_id"]
    r = runner.invoke(group, ["rm", "--study", "sample", "--out", str(tmp_path / "p2.parquet"), "--per-annotator",
                              "--min-margin", "5.5"])
    assert r.exit_code == 0 and r.output.startswith("8 pairs written to"), r.output  # carol's picks: gap 3
    assert "4 skipped (below_min_margin: 4)" in r.output
    r = runner.invoke(group, ["sft", "--study", "sample", "--out", str(tmp_path / "s.jsonl"), "--style", "messages"])
    assert r.exit_code == 0 and r.output.startswith("4 examples written"), r.output
    r = runner.invoke(group, ["kto", "--study", "sample", "--out", str(tmp_path / "k.jsonl"), "--source", "model:rubric"])
    assert r.exit_code != 0 and "kto exports come from human labels" in r.output


def test_ops_preview_writes_nothing(demo: AppContext, tmp_path: Path) -> None:
    before = demo.db.fetchval("SELECT count(*) FROM export_run")
    p = exports.ExportPreview(study="sample", kind="dpo", rows=2, source="consensus:pairwise")
    r = exports.export_preview(demo, "admin", p)
    assert r["rows"] == 4 and len(r["first_rows"]) == 2 and r["columns"] == ["prompt", "chosen", "rejected", "meta"]
    assert r["agreement"]["human_model_agreement"] == 1.0
    assert demo.db.fetchval("SELECT count(*) FROM export_run") == before
    src = exports.export_sources(demo, "admin", exports.ExportSources(study="sample"))["sources"]
    assert src[0] == "human" and {"model:rubric", "consensus:pairwise", "model:critique"} <= set(src)
    with pytest.raises(ServiceError, match="does not fit"):
        exports.export_preview(demo, "admin", exports.ExportPreview(study="sample", kind="dpo", signal="correct"))
    assert exports.exports_dir(demo) == Path(demo.db.path).resolve().parent / "exports"
