"""What an export does to the folder it writes into: the card is `<stem>.card.md` beside the data file (a
README.md there stays byte-identical), an existing data file or card is refused unless overwrite is asked
for, data file and card (and the --hf-dir copy, whose card is README.md) appear together or not at all, and
a failure at any step leaves no file, no temp file and no export_run row."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from click.testing import CliRunner

from app.cli import main
from app.services import exports
from app.services.context import AppContext, ServiceError
from storage.db import Database
from storage.models import Annotator
from storage.export import ExportOptions, export_dataset
from storage.export import files as export_files
from storage.export import run as export_run
from storage.export.files import OutputExists
from storage.fileio import StorageWriteError
from tests.builders import label, make_prompt, make_responses, make_study

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import datasets  # noqa: E402  (a test extra: a missing one must fail, not skip)

README = b"# My project\n\nHand-written notes that no export may touch.\n"


@pytest.fixture
def labelled(db: Database) -> Database:
    """Study "demo": two prompts, each with a pick and strictly lower ratings (two DPO pairs)."""
    sid = make_study(db).id
    for ext in ("p1", "p2"):
        pid = make_prompt(db, sid, ext, f"Question {ext}?")
        a, b, c = make_responses(db, pid, [f"{ext} A", f"{ext} B", f"{ext} C"])
        label(db, sid, pid, "alice", a, {a: 7, b: 4, c: 1})
    return db


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def runs(db: Database) -> int:
    return db.fetchval("SELECT count(*) FROM export_run")


def test_readme_beside_out_is_untouched_and_the_card_has_its_own_name(labelled: Database, tmp_path: Path) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "README.md").write_bytes(README)
    r = export_dataset(labelled, "demo", folder / "pairs.jsonl", ExportOptions())
    assert r.rows == 2
    assert (folder / "README.md").read_bytes() == README
    assert listing(folder) == ["README.md", "pairs.card.md", "pairs.jsonl"]
    assert r.card_path == str((folder / "pairs.card.md").resolve())
    card = (folder / "pairs.card.md").read_text()
    assert card.startswith("---\nconfigs:") and 'path: "pairs.jsonl"' in card and r.content_hash in card
    # A second export to another file in the same folder gets its own card; the first keeps its own.
    p = export_dataset(labelled, "demo", folder / "rm.parquet", ExportOptions(kind="rm"))
    assert listing(folder) == ["README.md", "pairs.card.md", "pairs.jsonl", "rm.card.md", "rm.parquet"]
    assert 'path: "rm.parquet"' in Path(p.card_path).read_text()
    assert (folder / "pairs.card.md").read_text() == card and (folder / "README.md").read_bytes() == README


@pytest.mark.parametrize("taken", ["pairs.jsonl", "pairs.card.md"])
def test_an_existing_data_file_or_card_is_refused_unless_overwrite(labelled: Database, tmp_path: Path,
                                                                   taken: str) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "README.md").write_bytes(README)
    (folder / taken).write_bytes(b"someone's own file\n")
    with pytest.raises(OutputExists, match=rf"{folder / taken} already exists .*pass --overwrite"):
        export_dataset(labelled, "demo", folder / "pairs.jsonl", ExportOptions())
    assert (folder / taken).read_bytes() == b"someone's own file\n"
    assert listing(folder) == sorted(["README.md", taken]) and runs(labelled) == 0

    r = export_dataset(labelled, "demo", folder / "pairs.jsonl", ExportOptions(), overwrite=True)
    assert listing(folder) == ["README.md", "pairs.card.md", "pairs.jsonl"]
    assert digest(folder / "pairs.jsonl") == r.content_hash and (folder / "README.md").read_bytes() == README
    assert runs(labelled) == 1


def test_overwrite_never_replaces_a_directory(labelled: Database, tmp_path: Path) -> None:
    (tmp_path / "out" / "pairs.card.md").mkdir(parents=True)
    with pytest.raises(OutputExists, match="is a directory"):
        export_dataset(labelled, "demo", tmp_path / "out" / "pairs.jsonl", ExportOptions(), overwrite=True)
    assert listing(tmp_path / "out") == ["pairs.card.md"] and runs(labelled) == 0


def test_publish_never_swaps_a_file_for_a_folder(tmp_path: Path) -> None:
    """A folder that appears at a target after the early check is refused even where replacing is allowed."""
    staged, other = tmp_path / ".new.tmp", tmp_path / ".card.tmp"
    staged.write_text("new")
    other.write_text("card")
    (tmp_path / "pairs.jsonl").write_text("earlier")
    (tmp_path / "pairs.card.md").mkdir()
    (tmp_path / "pairs.card.md" / "keep.txt").write_text("mine")
    with pytest.raises(OutputExists, match="is a directory"):
        export_files.publish([(staged, tmp_path / "pairs.jsonl", "the data file"),
                              (other, tmp_path / "pairs.card.md", "the card")], replace=lambda _: True)
    assert (tmp_path / "pairs.jsonl").read_text() == "earlier"  # the first move was undone
    assert (tmp_path / "pairs.card.md" / "keep.txt").read_text() == "mine"
    assert listing(tmp_path) == [".card.tmp", "pairs.card.md", "pairs.jsonl"]  # the caller removes its temps


# -- failures between the data file and the card ------------------------------------------------------------------
def _fail_writing_the_card(monkeypatch: pytest.MonkeyPatch, db: Database) -> None:
    def boom(out: Path, text: str) -> Path:
        raise OSError(errno.ENOSPC, "No space left on device", str(out))
    monkeypatch.setattr(export_run, "write_card", boom)


def _fail_moving_the_card(monkeypatch: pytest.MonkeyPatch, db: Database) -> None:
    real = export_files._place_new

    def place(src: Path, target: Path) -> None:
        if target.name.endswith(".card.md"):
            raise OSError(errno.EIO, "Input/output error", str(target))
        real(src, target)
    monkeypatch.setattr(export_files, "_place_new", place)


def _fail_after_moving_both(monkeypatch: pytest.MonkeyPatch, db: Database) -> None:
    """The files are in place, then the COMMIT of the export_run row fails (a real rollback follows)."""
    real_publish, real_write = export_run.publish, db.write
    moved: list[Path] = []

    def publish(*args: Any, **kw: Any) -> Any:
        placed = real_publish(*args, **kw)
        moved.extend(t for t in placed.placed if t.exists())
        return placed

    @contextlib.contextmanager
    def write() -> Iterator[Any]:
        with real_write() as cur:
            yield cur
            if moved:
                raise duckdb.TransactionException("Failed to commit: injected")
    monkeypatch.setattr(export_run, "publish", publish)
    monkeypatch.setattr(db, "write", write)


FAILURES = {"writing the card": (_fail_writing_the_card, OSError, "No space left on device"),
            "moving the card into place": (_fail_moving_the_card, OSError, "Input/output error"),
            "the commit after both are in place": (_fail_after_moving_both, duckdb.Error, "injected")}


@pytest.mark.parametrize("when", list(FAILURES))
@pytest.mark.parametrize("earlier", [False, True], ids=["new", "over-an-earlier-export"])
def test_a_failure_between_data_and_card_leaves_neither(labelled: Database, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch, when: str,
                                                         earlier: bool) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "README.md").write_bytes(README)
    if earlier:  # an earlier export there, replaced with overwrite: a failed one must leave it as it was
        export_dataset(labelled, "demo", folder / "pairs.jsonl", ExportOptions(kind="sft"))
    before = {name: (folder / name).read_bytes() for name in listing(folder)}
    n_runs = runs(labelled)
    inject, error, text = FAILURES[when]
    inject(monkeypatch, labelled)
    with pytest.raises(error, match=text):
        export_dataset(labelled, "demo", folder / "pairs.jsonl", ExportOptions(), overwrite=earlier)
    assert {name: (folder / name).read_bytes() for name in listing(folder)} == before  # no temp files either
    assert runs(labelled) == n_runs


def test_a_read_only_folder_leaves_nothing(labelled: Database, tmp_path: Path) -> None:
    """A read-only bind mount (root ignores directory permissions, so chmod would prove nothing)."""
    src, folder = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    folder.mkdir()
    (src / "README.md").write_bytes(README)
    for args in (["--bind", str(src), str(folder)], ["-o", "remount,ro,bind", str(folder)]):
        r = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
        if r.returncode != 0:
            subprocess.run(["umount", str(folder)], capture_output=True, check=False)
            pytest.skip(f"cannot mount here: {r.stderr.strip()}")
    try:
        with pytest.raises(StorageWriteError, match=rf"^read-only file system in {folder} while writing "
                                                    rf"{folder / 'pairs.jsonl'}; nothing was written"):
            export_dataset(labelled, "demo", folder / "pairs.jsonl", ExportOptions())
        assert listing(folder) == ["README.md"] and (folder / "README.md").read_bytes() == README
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)
    assert runs(labelled) == 0


# -- the --hf-dir copy ----------------------------------------------------------------------------------------------
def test_hf_dir_copy_has_the_card_as_readme(labelled: Database, tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "README.md").write_bytes(README)
    r = export_dataset(labelled, "demo", folder / "pairs.jsonl", ExportOptions(), hf_dir=tmp_path / "hf")
    assert listing(folder) == ["README.md", "pairs.card.md", "pairs.jsonl"]
    assert (folder / "README.md").read_bytes() == README
    hf_card = (tmp_path / "hf" / "README.md").read_text()
    assert 'path: "data-*.arrow"' in hf_card and "load_from_disk" in hf_card and r.content_hash in hf_card
    assert f"| export_run | {r.export_run_id} |" in hf_card
    ds = datasets.load_from_disk(str(tmp_path / "hf"))
    assert len(ds) == r.rows == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left

    # A failure after the copy was staged takes everything out again, the earlier copy included.
    earlier = {p.name: p.read_bytes() for p in (tmp_path / "hf").iterdir() if p.is_file()}
    with pytest.MonkeyPatch.context() as mp:
        _fail_after_moving_both(mp, labelled)
        with pytest.raises(duckdb.Error, match="injected"):
            export_dataset(labelled, "demo", folder / "more.jsonl", ExportOptions(), hf_dir=tmp_path / "hf")
    assert {p.name: p.read_bytes() for p in (tmp_path / "hf").iterdir() if p.is_file()} == earlier
    assert listing(folder) == ["README.md", "pairs.card.md", "pairs.jsonl"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_hf_dir_may_not_hold_the_data_file(labelled: Database, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="would hold the data file"):
        export_dataset(labelled, "demo", tmp_path / "hf" / "pairs.jsonl", ExportOptions(), hf_dir=tmp_path / "hf")
    assert not (tmp_path / "hf").exists() and runs(labelled) == 0


# -- the CLI and the Export tab's service -----------------------------------------------------------------------------
def test_cli_refuses_an_existing_file_and_overwrite_replaces_it(labelled: Database, tmp_path: Path) -> None:
    db_path = labelled.path
    labelled.close()
    out = tmp_path / "pairs.jsonl"
    (tmp_path / "README.md").write_bytes(README)
    runner = CliRunner()
    args = ["export", "dpo", "--study", "demo", "--out", str(out), "--db", db_path]
    r = runner.invoke(main, args)
    # stdout: the fixture's database was made before any CLI call set critlab's umask, so the CLI may warn
    # about its mode on stderr (which tests run first in this process decides)
    assert r.exit_code == 0 and r.stdout.startswith("2 pairs written to"), r.output
    assert json.loads(r.stdout.split("\n", 1)[1])["card_path"] == str(tmp_path / "pairs.card.md")
    first = out.read_bytes()
    r = runner.invoke(main, args + ["--min-annotators", "2"])
    assert r.exit_code == 1 and f"Error: {out} already exists (the data file)" in r.output, r.output
    assert "--overwrite" in r.output and out.read_bytes() == first
    r = runner.invoke(main, args + ["--min-annotators", "2", "--overwrite"])
    assert r.exit_code == 0 and r.stdout.startswith("0 pairs"), r.output
    assert out.read_bytes() == b"" and (tmp_path / "README.md").read_bytes() == README
    assert "--overwrite" in runner.invoke(main, ["export", "dpo", "--help"]).output


def test_export_download_zips_data_and_card(labelled: Database, tmp_path: Path) -> None:
    ctx = AppContext(db=labelled)
    r = exports.export_download(ctx, "admin", exports.ExportDownload(study="demo", kind="dpo", format="parquet"))
    data, card = Path(r["out_path"]), Path(r["card_path"])
    assert data.parent.parent == exports.exports_dir(ctx) and listing(data.parent) == sorted([data.name, card.name])
    assert card.name == f"{data.stem}.card.md" and r["rel_path"] == str(data.relative_to(data.parent.parent.parent))
    # The download: a fresh .zip offered to the admin through /api/downloads/ (app/services/downloads.py).
    link = exports.download_link(ctx, "admin", r["export_run_id"])
    offer = ctx.downloads.take(link["url"].rsplit("/", 1)[1], Annotator(id=1, name="admin", role="admin"),
                               lambda study_id, who: True)
    assert offer.filename == link["filename"] == f"{data.stem}.zip"
    with zipfile.ZipFile(offer.path) as z:
        assert sorted(z.namelist()) == sorted([data.name, card.name])
        assert z.read(data.name) == data.read_bytes() and z.read(card.name) == card.read_bytes()
    ctx.downloads.discard(offer)
    assert not offer.path.exists()
    # Only what the Export tab wrote beside the database is offered (a CLI export may sit anywhere).
    elsewhere = exports.export(ctx, "admin", exports.Export(study="demo", out=str(tmp_path / "cli.jsonl")))
    with pytest.raises(ServiceError, match="no file under"):
        exports.download_link(ctx, "admin", elsewhere["export_run_id"])
    ctx.downloads.close()
    with pytest.raises(LookupError, match="nope"):
        exports.export_download(ctx, "admin", exports.ExportDownload(study="nope"))
    assert listing(exports.exports_dir(ctx)) == [data.parent.name]  # a refused export leaves no empty folder
