"""Which engine and model a command uses: its own flags, else the running server's engine; the server keeps
at most one extra embedded model; the demo banner only for the bundled model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import main
from app.services.context import AppContext, EngineConfig, ServiceError
from backend.engines.base import EngineInfo
from storage.db import Database
from tests.server_process import ENV, ROOT, start_serve, stop


def run(*args: str):  # noqa: ANN201
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_a_command_without_engine_flags_uses_the_running_servers_engine(tmp_path: Path, standin: str) -> None:
    db = tmp_path / "c.duckdb"
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"id": "a", "prompt": "Say hi"}\n')
    assert run("import", "prompts", str(prompts), "--study", "s", "--db", str(db)).exit_code == 0
    proc, _ = start_serve(db, tmp_path / "server.log", "--engine", "sglang", "--sglang-url", standin)
    try:
        # A subprocess, as a person runs it: the lock file beside the database leads it to the server.
        r = subprocess.run([sys.executable, "-m", "app.cli", "generate", "--study", "s", "--n", "1", "--max-tokens",
                            "8", "--db", str(db)], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300)
        assert r.returncode == 0, r.stderr
        assert f"its engine: sglang at {standin}" in r.stderr
        m = subprocess.run([sys.executable, "-m", "app.cli", "models", "--db", str(db)], capture_output=True,
                           text=True, env=ENV, cwd=ROOT, timeout=120)
        assert m.returncode == 0 and f"Server engine: sglang at {standin}" in m.stdout, m.stdout + m.stderr
    finally:
        stop(proc)
    with Database(db) as d:
        assert d.fetchall("SELECT engine FROM generation_run") == [("sglang",)]
        assert d.fetchall("SELECT engine FROM model") == [("sglang",)]


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "{gguf}", "--sglang-url", "http://x:1"], "not both"),
    (["--engine", "sglang", "--model", "{gguf}"], "--model is for the embedded engine"),
    (["--engine", "embedded", "--sglang-url", "http://x:1"], "--sglang-url is for --engine sglang"),
])
def test_engine_flags_that_contradict_each_other_are_refused(tmp_path: Path, args: list[str], message: str) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    r = run("generate", "--study", "s", "--db", str(tmp_path / "c.duckdb"), *[a.format(gguf=gguf) for a in args])
    assert r.exit_code == 1 and message in r.output
    assert not (tmp_path / "c.duckdb").exists()  # refused before the database was opened


def test_launch_sglang_refuses_the_embedded_engines_flags(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    r = run("serve", "--launch-sglang", "org/model", "--ctx", "512", "--db", str(tmp_path / "c.duckdb"))
    assert r.exit_code == 1 and "--ctx is for the embedded engine" in r.output


class _Fake:
    def __init__(self, cfg: EngineConfig):
        self.cfg, self.closed = cfg, False

    def info(self) -> EngineInfo:
        return EngineInfo(engine="scripted", model_id=f"fake-{self.cfg.model}", context_length=64,
                          self_certainty="exact", logprob_mode="raw")

    def close(self) -> None:
        self.closed = True


def test_the_server_keeps_one_extra_embedded_model_and_never_unloads_one_a_job_may_use(db: Database,
                                                                                        tmp_path: Path) -> None:
    ctx = AppContext(db=db, engine_factory=_Fake)
    a, b, c = (str(tmp_path / f"{x}.gguf") for x in "abc")
    own = ctx.engine()
    first = ctx.engine(EngineConfig(model=a))
    assert ctx.engine(EngineConfig(model=a)) is first  # the same model again: the loaded one
    second = ctx.engine(EngineConfig(model=b))
    assert first.closed and not second.closed and not own.closed
    assert ctx.engine(EngineConfig()) is own
    hold = __import__("threading").Event()
    ctx.submit_job(1, hold.wait)
    try:
        with pytest.raises(ServiceError, match="still running"):
            ctx.engine(EngineConfig(model=c))
        assert not second.closed
    finally:
        hold.set()
        ctx.wait_jobs()
    ctx.engine(EngineConfig(model=c))
    assert second.closed
    assert [i.model_id for i in ctx.loaded()] == ["fake-None", f"fake-{c}"]  # the server's own first
    assert db.fetchval("SELECT count(*) FROM model") == 4  # each model used is recorded once


def test_the_bundled_model_named_by_its_path_is_the_servers_own(db: Database, tmp_path: Path) -> None:
    """`--model` pointing at the installed demo GGUF (or a link to it) reaches the engine the server already
    has, instead of loading a second copy as an extra model."""
    from backend.engines.llamacpp_util import default_model_path

    bundled = default_model_path()
    link = tmp_path / "demo.gguf"
    link.symlink_to(bundled)
    assert EngineConfig(model=str(bundled)).key() == EngineConfig(model=str(link)).key() == EngineConfig().key()
    ctx = AppContext(db=db, engine_factory=_Fake)
    own = ctx.engine()
    assert ctx.engine(EngineConfig(model=str(link))) is own and len(ctx.loaded()) == 1
    assert EngineConfig(model=str(tmp_path / "other.gguf")).key() != EngineConfig().key()


def test_the_demo_banner_shows_only_for_the_bundled_model(db: Database, tmp_path: Path) -> None:
    """The banner is built hidden for every engine, and shown on page load by the rule below."""
    from app.ui.layout import DEMO_MODEL_NOTE, build_ui

    def banner(cfg: EngineConfig) -> list:
        blocks = build_ui(AppContext(db=db, default_engine=cfg), role_of=lambda name: None)
        return [b for b in blocks.blocks.values() if getattr(b, "elem_id", None) == "demo-note"]

    own = tmp_path / "own.gguf"
    own.write_bytes(b"GGUF")
    for cfg in (EngineConfig(), EngineConfig(model=str(own)), EngineConfig(engine="sglang", sglang_url="http://x:1")):
        (b,) = banner(cfg)
        assert b.value == DEMO_MODEL_NOTE and not b.visible


def _demo(db: Database, cfg: EngineConfig, user: str = "root") -> bool:
    from app.services.overview import page_load

    ctx = AppContext(db=db, default_engine=cfg)
    return page_load(ctx, user, admin=user == "root").demo_model is not None


def test_the_demo_banner_follows_where_the_studys_responses_and_judgments_come_from(db: Database,
                                                                                   tmp_path: Path) -> None:
    """Shown when a study the person sees holds responses or model judgments of the bundled model, or when
    the server runs the bundled model and such a study has none yet (its first ones would come from it);
    not for an imported study on a server that happens to run the bundled model."""
    from storage import annotators, members, model_registry
    from storage.migrations import BUNDLED_ID, BUNDLED_SHA256
    from storage.models import ModelIdentity
    from tests.builders import judge, make_prompt, make_responses, make_run, make_study

    own = tmp_path / "own.gguf"
    own.write_bytes(b"GGUF")
    bundled, other = EngineConfig(), EngineConfig(model=str(own))
    annotators.add_annotator(db, "root", "admin", password="root-pass-123")
    annotators.add_annotator(db, "ann", "annotator", password="ann-pass-123")
    assert _demo(db, bundled) and not _demo(db, other)  # a fresh database: the bundled model would sample
    imported = make_study(db, "imported")
    pid = make_prompt(db, imported.id)
    rids = make_responses(db, pid, ["a", "b"], model_id="gpt-x")  # an imported file's responses
    judge(db, imported.id, pid, "some-judge", "p_true", response_id=rids[0], value=0.5, judge_kind="model")
    assert not _demo(db, bundled) and not _demo(db, other)
    members.add(db, imported.id, "ann", added_by="root")

    empty = make_study(db, "empty")  # no responses yet: the server's engine would make them
    make_prompt(db, empty.id)
    assert _demo(db, bundled) and not _demo(db, other)
    assert not _demo(db, bundled, "ann")  # ann sees only the imported study

    model_registry.record_model(db, ModelIdentity(model_id=BUNDLED_ID, engine="embedded", name="SmolLM2",
                                                  sha256=BUNDLED_SHA256, bundled=True))
    # The bundled model judged the imported study's responses: their self-judgments carry no signal.
    judge(db, imported.id, pid, BUNDLED_ID, "p_true", response_id=rids[1], value=0.5, judge_kind="model")
    assert _demo(db, other) and _demo(db, bundled, "ann")
    ctx = AppContext(db=db, default_engine=other)
    from app.services.overview import page_load
    assert page_load(ctx, "ann", admin=False).demo_model == ["imported"]
    assert page_load(ctx, "root", admin=True).demo_model == ["imported"]

    sampled = make_study(db, "sampled")
    make_responses(db, make_prompt(db, sampled.id), ["x"], run_id=make_run(db, sampled.id, model_id=BUNDLED_ID),
                   model_id=BUNDLED_ID)
    assert page_load(ctx, "root", admin=True).demo_model == ["imported", "sampled"]

