"""`critlab generate` and `critlab score` on a GGUF the user brings (a tiny Llama-3-style file built at test
time), its identity in the database, and a standard-style export rendered with that file's own template."""

from __future__ import annotations

import hashlib
from functools import partial
from pathlib import Path

from click.testing import CliRunner

from app.cli import main
from app.services import labelling
from app.services.context import AppContext
from app.services.exports import export_methods
from storage import studies
from storage.db import Database
from storage.export import ExportOptions
from storage.export import export_dataset as _export_dataset
from tests.builders import make_members
from tests.tiny_gguf import LLAMA3_TEMPLATE

# Model sources, judge rows and standard-style prompts need the method facts the app layer passes in.
export_dataset = partial(_export_dataset, methods=export_methods())


def run(*args: str):  # noqa: ANN201
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_generate_score_and_export_on_a_users_gguf_with_its_own_template(tmp_path: Path,
                                                                         tiny_ggufs: dict[str, Path]) -> None:
    gguf = tiny_ggufs["llama3"]
    sha = hashlib.sha256(gguf.read_bytes()).hexdigest()
    db = str(tmp_path / "c.duckdb")
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"id": "a", "prompt": "Say hi"}\n{"id": "b", "prompt": "Count to 3"}\n')
    assert run("import", "prompts", str(prompts), "--study", "s", "--db", db).exit_code == 0

    r = run("generate", "--study", "s", "--model", str(gguf), "--n", "2", "--max-tokens", "6", "--seed", "1",
            "--db", db)
    assert r.exit_code == 0, r.output
    assert f"Computing the SHA-256 of {gguf.resolve()}" in r.output  # once, with a progress line
    r = run("score", "--study", "s", "--model", str(gguf), "--db", db)
    assert r.exit_code == 0, r.output
    assert "Computing the SHA-256" not in r.output  # remembered by path, size and mtime

    with Database(db) as d:
        (model_id,) = d.fetchall("SELECT DISTINCT model_id FROM generation_run")[0]
        assert model_id.endswith(f"@{sha[:12]}")
        judges = {j for (j,) in d.fetchall("SELECT DISTINCT judge FROM judgment WHERE judge_kind = 'model'")}
        assert judges == {model_id}
        assert {j for (j,) in d.fetchall("SELECT DISTINCT judge FROM method_run")} == {model_id}
        row = d.fetchrow("SELECT * FROM model WHERE model_id = ?", [model_id])
        assert (row["sha256"], row["size_bytes"], row["chat_template"], row["bundled"]) == (
            sha, gguf.stat().st_size, LLAMA3_TEMPLATE, False)
    r = run("models", "--db", db)
    assert model_id in r.output and sha in r.output and "bundled" not in r.output

    # A person labels both prompts; the standard-style export renders prompts with the file's own template.
    ctx = AppContext(db=Database(db))
    try:
        make_members(ctx.db, studies.get_study(ctx.db, "s").id, "alice")
        for _ in range(2):
            item = labelling.next_item(ctx, "alice", "s")
            order = [c.response_id for c in item.cards]
            labelling.submit(ctx, "alice", labelling.LabelSubmission(
                study="s", prompt_id=item.prompt_id, shown_order=order, best=order[0],
                ratings={order[0]: 6, order[1]: 2}, idempotency_key=f"alice-key-{item.prompt_id}"))
        out = tmp_path / "pairs.jsonl"
        summary = export_dataset(ctx.db, "s", out, ExportOptions(style="standard"))
    finally:
        ctx.close()
    assert summary.rows == 2
    text = out.read_text()
    assert "<|start_header_id|>user<|end_header_id|>" in text and "<|im_start|>" not in text
