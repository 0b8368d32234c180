"""Streaming row writers: JSONL or Parquet, written in batches to a temp file beside the target and renamed
at the end (readers never see half a file), so an export of any size holds one batch in memory."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from storage.export.files import _fsync_dir, _umask, replace_dir, sha256_file

FORMATS = (".jsonl", ".parquet")
BATCH_ROWS = 1000


def check_format(out: Path) -> str:
    fmt = out.suffix.lower()
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {out.suffix or '(no extension)'!r} for {out}: use .jsonl or .parquet")
    return fmt


class RowWriter:
    """`write(row)` … `commit()` → sha256 of the file; `abort()` removes the temp file."""

    def __init__(self, out: Path, schema: pa.Schema, batch_rows: int = BATCH_ROWS):
        self.out, self.schema, self.fmt = out, schema, check_format(out)
        self.batch_rows = batch_rows
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
        self.tmp = Path(name)
        self._file = os.fdopen(fd, "wb")
        self._pq = pq.ParquetWriter(self._file, schema, compression="zstd") if self.fmt == ".parquet" else None
        self._batch: list[dict[str, Any]] = []
        self.rows = 0

    def write(self, row: dict[str, Any]) -> None:
        self._batch.append(row)
        self.rows += 1
        if len(self._batch) >= self.batch_rows:
            self._flush()

    def _flush(self) -> None:
        if not self._batch:
            return
        if self._pq is not None:
            self._pq.write_batch(pa.RecordBatch.from_pylist(self._batch, schema=self.schema))
        else:
            self._file.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self._batch).encode("utf-8"))
        self._batch.clear()

    def commit(self) -> str:
        try:
            self._flush()
            if self._pq is not None:
                self._pq.close()
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.chmod(self.tmp, 0o666 & ~_umask())
            os.replace(self.tmp, self.out)
        except BaseException:
            self.abort()
            raise
        _fsync_dir(self.out.parent)
        return sha256_file(self.out)

    def abort(self) -> None:
        try:
            if self._pq is not None:
                self._pq.close()
        except Exception:
            pass
        if not self._file.closed:
            self._file.close()
        self.tmp.unlink(missing_ok=True)


def write_hf_dir(data_file: Path, schema: pa.Schema, hf_dir: Path) -> None:
    """A `datasets.save_to_disk` directory of the written file (needs the `datasets` package)."""
    try:
        import datasets
    except ImportError as e:
        raise ValueError("--hf-dir needs the `datasets` package: pip install datasets") from e
    if hf_dir.exists() and (not hf_dir.is_dir() or (any(hf_dir.iterdir()) and not (hf_dir / "state.json").is_file())):
        raise ValueError(f"--hf-dir {hf_dir} exists and is not an earlier datasets directory; choose a new path")
    features = datasets.Features.from_arrow_schema(schema)
    hf_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=hf_dir.parent, prefix=f".{hf_dir.name}.") as work:
        cache = Path(work) / "cache"
        if data_file.suffix.lower() == ".parquet":
            ds = datasets.Dataset.from_parquet(str(data_file), features=features, cache_dir=str(cache))
        elif data_file.stat().st_size == 0:
            ds = datasets.Dataset(schema.empty_table())
        else:
            ds = datasets.Dataset.from_json(str(data_file), features=features, cache_dir=str(cache))
        staged = Path(work) / "out"
        ds.save_to_disk(str(staged), num_shards=1 if len(ds) == 0 else None)  # an empty one still gets a shard
        del ds
        replace_dir(staged, hf_dir)
