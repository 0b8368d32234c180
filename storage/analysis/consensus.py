"""Human consensus per unit: the plurality label when it is a unique mode (categorical), the mean (ratings).

Vote frames (categorical): one row per vote, columns ``prompt_id``, ``unit`` (what was judged, unique within
the prompt: e.g. ``"4-9"`` for a response pair, a response id, ``"<response>:<item>"``), ``judge`` and
``label``. A judge has at most one vote per unit. Rating frames: the same with a numeric ``value`` instead of
``label``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from storage.analysis._frames import (
    PAIR_CLASSES,
    UNIT_KEYS,
    check_labels,
    check_unique,
    codes,
    frame,
    index_of,
    unique_mode,
)

VOTE_COLS = ("prompt_id", "unit", "judge", "label")
RATING_COLS = ("prompt_id", "unit", "judge", "value")


def _label_lookup(classes: Sequence[Any], dtype: pl.DataType, name: str) -> pl.DataFrame:
    return pl.DataFrame({"_code": np.arange(len(classes), dtype=np.int64),
                         name: pl.Series(list(classes), dtype=dtype if dtype != pl.Null else None)})


def vote_counts(votes: pl.DataFrame, classes: Sequence[Any]) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    """(distinct units with index ``_u``, per-vote unit index, units × classes count matrix)."""
    units, u = index_of(votes, UNIT_KEYS, "_u")
    k = codes(votes["label"], classes)
    counts = np.zeros((units.height, len(classes)), dtype=np.int64)
    np.add.at(counts, (u, k), 1)
    return units, u, counts


def consensus(votes: Any, classes: Sequence[Any] = PAIR_CLASSES, *, leave_one_out: bool = False) -> pl.DataFrame:
    """The human consensus of each unit: the plurality label when it is a unique mode, else null.

    Without ``leave_one_out``: one row per unit with ``prompt_id, unit, consensus, n_votes, n_top`` (votes for
    the most frequent label). With ``leave_one_out``: one row per vote with ``prompt_id, unit, judge, label,
    consensus, n_others``, where the consensus excludes that judge's own vote (what a human is compared with).
    Units without a unique mode (or without other votes) get a null consensus; report them separately.

    >>> v = pl.DataFrame({"prompt_id": [1, 1, 1, 1, 1], "unit": ["a", "a", "a", "b", "b"],
    ...                   "judge": ["h1", "h2", "h3", "h1", "h2"],
    ...                   "label": ["first", "first", "tie", "first", "second"]})
    >>> consensus(v).rows()
    [(1, 'a', 'first', 3, 2), (1, 'b', None, 2, 1)]
    >>> consensus(v, leave_one_out=True).rows()[:3]  # h3 sees first/first; h1 and h2 see a 1-1 split
    [(1, 'a', 'h1', 'first', None, 2), (1, 'a', 'h2', 'first', None, 2), (1, 'a', 'h3', 'tie', 'first', 2)]
    """
    votes = frame(votes, VOTE_COLS, "votes")
    check_labels(votes, "label", classes, "votes")
    check_unique(votes, (*UNIT_KEYS, "judge"), "votes", "a judge may vote once per unit")
    units, u, counts = vote_counts(votes, classes)
    lookup = _label_lookup(classes, votes["label"].dtype, "consensus")
    if not leave_one_out:
        out = units.with_columns(_code=pl.Series(unique_mode(counts)), n_votes=pl.Series(counts.sum(axis=1)),
                                 n_top=pl.Series(counts.max(axis=1) if counts.size else np.zeros(0, np.int64)))
        return (out.join(lookup, on="_code", how="left", maintain_order="left")
                .select(*UNIT_KEYS, "consensus", "n_votes", "n_top"))
    own = np.zeros_like(counts[u])
    own[np.arange(len(u)), codes(votes["label"], classes)] = 1
    others = counts[u] - own
    out = votes.select(*UNIT_KEYS, "judge", "label").with_columns(
        _code=pl.Series(unique_mode(others)), n_others=pl.Series(others.sum(axis=1)))
    return out.join(lookup, on="_code", how="left", maintain_order="left").select(
        *UNIT_KEYS, "judge", "label", "consensus", "n_others")


def rating_consensus(ratings: Any, *, leave_one_out: bool = False) -> pl.DataFrame:
    """The consensus of numeric ratings: the mean per unit (``prompt_id, unit, consensus, n_votes``), or with
    ``leave_one_out`` per vote the mean of the other judges' ratings (null when nobody else rated).

    >>> r = pl.DataFrame({"prompt_id": [1, 1, 1], "unit": ["a", "a", "a"], "judge": ["h1", "h2", "h3"],
    ...                   "value": [1.0, 2.0, 6.0]})
    >>> rating_consensus(r).rows()
    [(1, 'a', 3.0, 3)]
    >>> rating_consensus(r, leave_one_out=True)["consensus"].to_list()
    [4.0, 3.5, 1.5]
    """
    ratings = frame(ratings, RATING_COLS, "ratings")
    check_unique(ratings, (*UNIT_KEYS, "judge"), "ratings", "a judge may rate a unit once")
    keys = list(UNIT_KEYS)
    if not leave_one_out:
        return (ratings.group_by(keys, maintain_order=True)
                .agg(consensus=pl.col("value").cast(pl.Float64).mean(), n_votes=pl.len()))
    total = pl.col("value").cast(pl.Float64).sum().over(keys)
    n = pl.len().over(keys)
    return ratings.select(*keys, "judge", "value").with_columns(
        consensus=pl.when(n > 1).then((total - pl.col("value")) / (n - 1)).otherwise(None),
        n_others=(n - 1).cast(pl.Int64))
