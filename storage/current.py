"""Which judgment rows are *current*: the one rule, as the SQL every reader of current judgments builds on
(the labelling service through `storage.judgments.current`, the judgments file, the pair exports, the report).

The rule:

- a judgment row is current when nothing has superseded it (`superseded_at IS NULL`);
- `storage.judgments.record` keeps at most one current row per *slot* — (study, judge kind, judge, method,
  stage, target key) — by superseding the old row when a new one arrives. A database written before that
  rule held, or rows stored by hand, may hold more than one, so a reader that must count each target once
  asks for one row per slot: the latest (`created_at`, then `id`);
- a reader that wants one row per target across stages asks for the *blind-preferred* row: per (judge kind,
  judge, method, target key) the blind row if there is one (a verdict given without seeing the other side,
  the one compared with blind human labels), else the latest of the other stages.

`one_per` names which of these a query gets: "row" (every current row), "slot" or "target" (blind
preferred). The prompt is part of every partition: every target key names a prompt or something of one
prompt (a response, a pair, a checklist item), so it changes no group but keeps the window per prompt.

>>> print(current_sql("j.id", "j.study_id = $study"))
SELECT j.id FROM judgment j WHERE j.superseded_at IS NULL AND (j.study_id = $study)
>>> "PARTITION BY j.prompt_id, j.judge_kind, j.judge, j.method, j.target_key, j.stage" in current_sql(
...     "j.id", "TRUE", one_per="slot")
True
"""

from __future__ import annotations

from typing import Literal

OnePer = Literal["row", "slot", "target"]

# The current-row condition, for queries that only count or test current rows (judgment aliased `j`).
CURRENT = "j.superseded_at IS NULL"
_TARGET = "j.prompt_id, j.judge_kind, j.judge, j.method, j.target_key"
_LATEST = "j.created_at DESC, j.id DESC"
_WINDOWS: dict[str, str] = {
    "slot": "PARTITION BY " + _TARGET + ", j.stage ORDER BY " + _LATEST,
    "target": "PARTITION BY " + _TARGET + " ORDER BY (j.stage = 'blind') DESC, " + _LATEST,
}


def current_sql(columns: str, where: str, *, one_per: OnePer = "row", source: str = "judgment j") -> str:
    """`SELECT columns` of the current judgment rows matching `where` (SQL over the table aliased `j`, with
    parameters), one per `one_per` (see the module's rule). No ORDER BY: the caller appends its own.

    `columns`, `where` and `source` are SQL written in the code (never a value from outside; values go in as
    parameters). With one row per slot or target the rows are ranked on the key columns alone and then
    fetched whole: ranking rows of every column inside the window costs DuckDB about three times as much.
    """
    body = f"FROM {source} WHERE {CURRENT} AND ({where})"
    if one_per == "row":
        return f"SELECT {columns} {body}"
    return (f"SELECT {columns} {body} AND j.id IN "
            f"(SELECT j.id {body} QUALIFY row_number() OVER ({_WINDOWS[one_per]}) = 1)")
