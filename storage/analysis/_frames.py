"""Input validation and small vectorised helpers shared by the metric modules (not public API)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

PAIR_CLASSES: tuple[str, ...] = ("first", "second", "tie")
UNIT_KEYS: tuple[str, ...] = ("prompt_id", "unit")


def frame(data: Any, required: Sequence[str], what: str, *, not_null: Sequence[str] | None = None) -> pl.DataFrame:
    """`data` as a polars DataFrame with the `required` columns and no nulls in `not_null` (default: all
    required); a ValueError names the frame, the missing column(s) and the offending rows otherwise."""
    if isinstance(data, pl.LazyFrame):
        data = data.collect()
    if not isinstance(data, pl.DataFrame):
        try:
            data = pl.DataFrame(data)
        except Exception as e:  # noqa: BLE001 - re-raised with the frame's name
            raise ValueError(f"{what}: cannot read as a table ({type(data).__name__}): {e}") from None
    missing = [c for c in required if c not in data.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}; got {data.columns}")
    for col in required if not_null is None else not_null:
        nulls = data[col].null_count()
        if nulls:
            raise ValueError(f"{what}: column {col!r} has {nulls} null value(s)")
    return data


def check_labels(df: pl.DataFrame, col: str, classes: Sequence[Any], what: str) -> None:
    """Raise a ValueError naming the values of `col` that are not in `classes`."""
    bad = df.filter(~pl.col(col).is_in(list(classes)))
    if bad.height:
        values = bad[col].unique(maintain_order=True).head(5).to_list()
        raise ValueError(f"{what}: {bad.height} row(s) with {col} outside {list(classes)}, e.g. {values}")


def check_unique(df: pl.DataFrame, keys: Sequence[str], what: str, hint: str = "") -> None:
    """Raise a ValueError naming a duplicated key when `keys` do not identify the rows of `df`."""
    # Equal keys hash alike, so as many distinct row hashes as rows proves the keys unique at a fraction of
    # the cost of grouping; only when hashes meet (a duplicate, or a rare collision) is the grouping needed.
    if df.height < 2 or df.select(pl.struct(list(keys)).hash().n_unique()).item() == df.height:
        return
    dup = df.group_by(list(keys)).len().filter(pl.col("len") > 1)
    if dup.height:
        first = dup.row(0, named=True)
        raise ValueError(f"{what}: {dup.height} duplicated {tuple(keys)} key(s), e.g. {first}"
                         + (f"; {hint}" if hint else ""))


def index_of(df: pl.DataFrame, keys: Sequence[str], name: str) -> tuple[pl.DataFrame, np.ndarray]:
    """The distinct `keys` (in order of first appearance, with a row index `name`) and, per row of `df`,
    the index of its key."""
    distinct = df.select(list(keys)).unique(maintain_order=True).with_row_index(name)
    idx = df.select(list(keys)).join(distinct, on=list(keys), how="left", maintain_order="left", nulls_equal=True)
    return distinct, idx[name].to_numpy().astype(np.int64)


def codes(series: pl.Series, classes: Sequence[Any]) -> np.ndarray:
    """Position of each value in `classes` (values must be in `classes`)."""
    lookup = pl.DataFrame({"_v": list(classes), "_code": np.arange(len(classes), dtype=np.int64)},
                          schema_overrides={"_v": series.dtype} if series.dtype != pl.Null else None)
    if series.dtype == pl.Null:  # a column of a frame built empty without a schema: join on the classes' type
        series = series.cast(lookup["_v"].dtype)
    out = pl.DataFrame({"_v": series}).join(lookup, on="_v", how="left", maintain_order="left")["_code"]
    return out.to_numpy().astype(np.int64)


def unique_mode(counts: np.ndarray) -> np.ndarray:
    """Per row of a (rows × classes) count matrix, the index of the unique maximum, or -1 when the maximum
    is shared or the row is empty."""
    if counts.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    top = counts.max(axis=1)
    n_top = (counts == top[:, None]).sum(axis=1)
    return np.where((n_top == 1) & (top > 0), counts.argmax(axis=1), -1)


def as_float_array(x: Any, what: str) -> np.ndarray:
    """A 1-D float array from a list / numpy array / polars Series; a ValueError names non-finite values."""
    arr = x.to_numpy() if isinstance(x, pl.Series) else np.asarray(x)
    try:
        arr = arr.astype(np.float64).ravel()
    except (TypeError, ValueError):
        raise ValueError(f"{what}: expected numbers, got dtype {arr.dtype}") from None
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(f"{what}: {int(bad.sum())} missing or non-finite value(s) (first at position "
                         f"{int(np.argmax(bad))})")
    return arr


def binary_labels(y: Any, what: str) -> np.ndarray:
    """0/1 float labels from bools or 0/1 numbers; a ValueError names other values."""
    arr = as_float_array(y, what)
    bad = (arr != 0) & (arr != 1)
    if bad.any():
        raise ValueError(f"{what}: labels must be 0/1 or bool, got {sorted(set(arr[bad].tolist()))[:5]}")
    return arr


def safe_div(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    """num / den with nan where den == 0 (no warnings)."""
    num_a = np.asarray(num, dtype=np.float64)
    den_a = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num_a, den_a).shape, np.nan)
    np.divide(num_a, den_a, out=out, where=den_a != 0)
    return out


def zero_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0 where den == 0 (sklearn's zero_division=0)."""
    num_a = np.asarray(num, dtype=np.float64)
    den_a = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num_a, den_a).shape)
    np.divide(num_a, den_a, out=out, where=den_a != 0)
    return out


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank (scipy.stats.rankdata(method="average"))."""
    _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)
    return (upper - (counts - 1) / 2.0)[inv.ravel()]
