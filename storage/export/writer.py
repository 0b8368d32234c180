"""Streaming row writers: JSONL or Parquet, written in batches to a temp file beside the target (the export
then publishes it together with its card, so readers never see half a file), so an export of any size holds
one batch in memory; and the `datasets.save_to_disk` copy, staged the same way.

critlab writes no CSV: exports are JSONL or Parquet (plus the Markdown card and the agreement report's
Markdown/HTML), so no output can turn a cell such as `=HYPERLINK(...)` into a spreadsheet formula. A CSV
writer added here must prefix cells starting with = + - @ tab or CR with `'` (OWASP "CSV injection");
tests/test_bad_files.py fails when a CSV writer appears."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from storage.fileio import sha256_file, temp_beside, write_error

FORMATS = (".jsonl", ".parquet")
BATCH_ROWS = 1000


def check_format(out: Path) -> str:
    fmt = out.suffix.lower()
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {out.suffix or '(no extension)'!r} for {out}: use .jsonl or .parquet")
    return fmt


class RowWriter:
    """`write(row)` … `finish()` → sha256 of the temp file; `abort()` removes the temp file.

    Disk full, a file size limit or read-only storage raise `storage.fileio.StorageWriteError` naming `out`,
    with the temp file already removed (the caller's `abort()` is then harmless)."""

    def __init__(self, out: Path, schema: pa.Schema, batch_rows: int = BATCH_ROWS):
        self.out, self.schema, self.fmt = out, schema, check_format(out)
        self.batch_rows = batch_rows
        fd, self.tmp = temp_beside(out)
        self._file = os.fdopen(fd, "wb")
        self._pq = pq.ParquetWriter(self._file, schema, compression="zstd") if self.fmt == ".parquet" else None
        self._batch: list[dict[str, Any]] = []
        self.rows = 0

    def write(self, row: dict[str, Any]) -> None:
        self._batch.append(row)
        self.rows += 1
        if len(self._batch) >= self.batch_rows:
            with self._failing_storage():
                self._flush()

    @contextlib.contextmanager
    def _failing_storage(self) -> Iterator[None]:
        """A full disk mid-export: drop the temp file and say so once, not as a bare `[Errno 28]`."""
        try:
            yield
        except OSError as e:
            problem = write_error(e, self.out)
            if problem is None:
                raise
            self.abort()
            raise problem from e

    def _flush(self) -> None:
        if not self._batch:
            return
        if self._pq is not None:
            self._pq.write_batch(pa.RecordBatch.from_pylist(self._batch, schema=self.schema))
        else:
            self._file.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self._batch).encode("utf-8"))
        self._batch.clear()

    def finish(self) -> str:
        """Close the temp file (`self.tmp`, flushed to disk) and return its sha256; the caller moves it into
        place (storage.export.files.publish) or calls `abort()`."""
        try:
            with self._failing_storage():
                self._flush()
                if self._pq is not None:
                    self._pq.close()
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()
        except BaseException:
            self.abort()
            raise
        return sha256_file(self.tmp)

    def abort(self) -> None:
        # Closing flushes what is buffered, which fails again on a full disk; the file is deleted anyway.
        if self._pq is not None:
            with contextlib.suppress(Exception):
                self._pq.close()
        if not self._file.closed:
            with contextlib.suppress(OSError):
                self._file.close()
        self.tmp.unlink(missing_ok=True)


def check_hf_dir(hf_dir: Path, out: Path) -> None:
    """Refuse, before anything is written, an --hf-dir that would replace something that is not an earlier
    `datasets` directory (an empty directory is fine), or that holds the data file itself."""
    try:
        import datasets  # noqa: F401
    except ImportError as e:
        raise ValueError("--hf-dir needs the `datasets` package: pip install datasets") from e
    hf, folder = hf_dir.resolve(), out.parent.resolve()
    if hf == folder or hf in folder.parents:
        raise ValueError(f"--hf-dir {hf_dir} would hold the data file {out}: choose a directory of its own")
    if hf_dir.exists() and (not hf_dir.is_dir() or (any(hf_dir.iterdir()) and not (hf_dir / "state.json").is_file())):
        raise ValueError(f"--hf-dir {hf_dir} exists and is not an earlier datasets directory; choose a new path")


def is_datasets_dir(path: Path) -> bool:
    """An earlier --hf-dir (replaced by the next export there), or an empty directory."""
    return path.is_dir() and not path.is_symlink() and (
        (path / "state.json").is_file() or not any(path.iterdir()))


@contextlib.contextmanager
def staged_hf_dir(data_file: Path, fmt: str, schema: pa.Schema, hf_dir: Path) -> Iterator[Path]:
    """A `datasets.save_to_disk` directory of the written (temp) `data_file`, staged beside `hf_dir`; the
    caller publishes it (or leaves it, and it is removed with the staging folder). Needs `datasets`."""
    import datasets

    features = datasets.Features.from_arrow_schema(schema)
    hf_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=hf_dir.parent, prefix=f".{hf_dir.name}.") as work:
        cache = Path(work) / "cache"
        if fmt == ".parquet":
            ds = datasets.Dataset.from_parquet(str(data_file), features=features, cache_dir=str(cache))
        elif data_file.stat().st_size == 0:
            ds = datasets.Dataset(schema.empty_table())
        else:
            ds = datasets.Dataset.from_json(str(data_file), features=features, cache_dir=str(cache))
        staged = Path(work) / "out"
        ds.save_to_disk(str(staged), num_shards=1 if len(ds) == 0 else None)  # an empty one still gets a shard
        del ds
        yield staged
