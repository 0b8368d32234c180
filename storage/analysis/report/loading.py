"""The report's data: one read of the study's current judgments, prompts, responses and checklist items
(`_load`, giving `_Data`), and the filters the sections apply to it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from storage import gold
from storage.analysis.report.figures import METHOD_OF
from storage.current import current_sql
from storage.db import Database


_COLUMNS = """j.id, j.prompt_id, j.judge_kind, j.judge, j.method, j.variant, j.target_key, j.response_id,
       j.response_b_id, j.checklist_item_id, j.shown_order, j.value, j.label, j.prob, j.stage, j.status,
       j.created_at"""
# Current rows on existing prompts (external ids and positions come with `prompts`, joined where shown).
_ON_PROMPTS = "judgment j SEMI JOIN prompt p ON p.id = j.prompt_id"
# The current human rows of every stage, one per slot (the sections pick the stage; the reveal section compares
# them): a database holding two current rows of one slot must not count one person's label twice.
_HUMAN = current_sql(_COLUMNS + ", j.duration_ms", "j.study_id = $study AND j.judge_kind = 'human'", one_per="slot",
                     source=_ON_PROMPTS) + " ORDER BY j.created_at, j.id"
# Current ok model rows, one per (judge, method, target): blind preferred (storage.current). The model frame
# needs neither the target key nor the shown order.
_MODEL = current_sql(_COLUMNS.replace("j.target_key, ", "").replace("j.shown_order, ", "") + ", j.method_version",
                     "j.study_id = $study AND j.judge_kind = 'model' AND j.status = 'ok'",
                     one_per="target", source=_ON_PROMPTS) + " ORDER BY j.created_at, j.id"


@dataclass
class _Data:
    study: Any
    stage: str
    human: pl.DataFrame  # current human rows of the stage
    human_all: pl.DataFrame  # current human rows of every stage (reveal)
    model: pl.DataFrame  # current ok model rows, one per (judge, method, target)
    prompts: pl.DataFrame  # prompt_id, external_id, position, turn (metadata's turn of an imported multi-turn item)
    responses: pl.DataFrame  # response_id, prompt_id, origin, run_id, model_id (response's, else its run's), length
    items: pl.DataFrame  # item_id, question, prompt_id
    counts: dict[str, Any]
    mapping: dict[str, dict[str, str] | None]
    # prompt_id, policy, probability: how each prompt was served to annotators (`_serving`)
    serving: pl.DataFrame = field(default_factory=pl.DataFrame)
    gold: dict[str, Any] = field(default_factory=dict)  # the report's `gold` key (`_gold`)
    cache: dict[str, Any] = field(default_factory=dict)  # frames several sections derive alike
    # The judges section's subsets: build only what the headline's main figure reads (no κ, no ceilings, no
    # per-order rows), since a subset's cell shows that figure alone.
    main_only: bool = False


def _sql(db: Database, query: str, params: dict[str, Any]) -> pl.DataFrame:
    return db.cursor().sql(query, params=params).pl()


MethodInfo = Callable[[str], "dict[str, str] | None"]


def _no_method_info(method: str) -> dict[str, str] | None:
    return None


def _load(db: Database, study_id: int, stage: str, method_info: MethodInfo) -> _Data:
    from storage.studies import get_study

    study = get_study(db, study_id)
    p = {"study": study_id}
    gate = gold.gate(db, study_id, study.config.gold_min_accuracy)
    # The gold gate, read-time: gold items are no study items, and the gated people's labels count nowhere.
    not_gold = ~pl.col("prompt_id").is_in(list(gate.gold_prompts))
    human_all = _sql(db, _HUMAN, p).filter(not_gold)
    gated_out = human_all.filter(pl.col("judge").is_in(gate.names))
    human_all = human_all.filter(~pl.col("judge").is_in(gate.names))
    human = human_all.filter(pl.col("stage") == stage)
    model = _sql(db, _MODEL, p).filter(not_gold)
    humans = set(human_all["judge"].unique().to_list())
    clash = sorted(set(model["judge"].unique().to_list()) & humans)
    if clash:  # a model id equal to an annotator's name: keep them apart in every frame
        model = model.with_columns(judge=pl.when(pl.col("judge").is_in(clash))
                                   .then(pl.col("judge") + " (model)").otherwise(pl.col("judge")))
    prompts = _sql(db, "SELECT id AS prompt_id, external_id, position, "
                       "try_cast(json_extract(metadata, '$.turn') AS BIGINT) AS turn FROM prompt "
                       "WHERE study_id = $study ORDER BY position, id", p).filter(not_gold)
    # length in characters of the response text (what the bias section regresses on)
    responses = _sql(db, "SELECT r.id AS response_id, r.prompt_id, r.origin, r.run_id, "
                         "coalesce(r.model_id, g.model_id) AS model_id, length(r.text)::BIGINT AS length "
                         "FROM response r JOIN prompt p ON p.id = r.prompt_id LEFT JOIN generation_run g ON g.id = r.run_id "
                         "WHERE p.study_id = $study ORDER BY r.id", p).filter(not_gold)
    items = _sql(db, "SELECT ci.id AS item_id, ci.question, c.prompt_id FROM checklist_item ci "
                     "JOIN checklist c ON c.id = ci.checklist_id JOIN prompt p ON p.id = c.prompt_id "
                     "WHERE p.study_id = $study ORDER BY ci.id", p).filter(not_gold)
    by_kind = _sql(db, """SELECT judge_kind, method, stage, status, count(*)::BIGINT AS n,
                                 count(DISTINCT judge)::BIGINT AS n_judges
                          FROM judgment WHERE study_id = $study AND superseded_at IS NULL
                          GROUP BY ALL ORDER BY ALL""", p)
    hum = (human.group_by("judge").agg(n_prompts=pl.col("prompt_id").n_unique().cast(pl.Int64),
                                       n_judgments=pl.len().cast(pl.Int64)).sort("judge"))
    failed = _sql(db, """SELECT judge, count(*)::BIGINT AS n_failed FROM judgment WHERE study_id = $study
                         AND superseded_at IS NULL AND judge_kind = 'model' AND status = 'failed' GROUP BY judge""", p)
    mod = (model.group_by("judge").agg(methods=pl.col("method").unique().sort(), n_judgments=pl.len().cast(pl.Int64))
           .join(failed, on="judge", how="left").with_columns(pl.col("n_failed").fill_null(0)).sort("judge"))
    methods = sorted(set(model["method"].unique().to_list()))
    mapping = {m: method_info(m) for m in {*methods, *(METHOD_OF.get(m, m) for m in methods)}}
    counts = {
        "n_prompts": prompts.height, "n_responses": responses.height,
        "n_prompts_with_human_labels": human["prompt_id"].n_unique(),
        "humans": hum, "models": mod,
        "judgments": by_kind,
        "n_model_failed": int(failed["n_failed"].sum()) if failed.height else 0,
        "n_human_other_stage": human_all.height - human.height,
        "unmapped_methods": [m for m, info in mapping.items() if info is None],
        "renamed_models": [{"judge": c, "as": f"{c} (model)"} for c in clash],
        "mixed_method_versions": _mixed_versions(model),
    }
    return _Data(study=study, stage=stage, human=human, human_all=human_all, model=model, prompts=prompts,
                 responses=responses, items=items, counts=counts, mapping=mapping, serving=_serving(db, study_id, prompts),
                 gold=_gold(db, study_id, gate, gated_out.filter(pl.col("stage") == stage)))


def _gold(db: Database, study_id: int, gate: gold.Gate, gated_out: pl.DataFrame) -> dict[str, Any]:
    """The report's `gold` key: the gold items (left out of every figure), each person's gold accuracy, the
    gate's rule and who it left out with how many of their labels at the stage."""
    n_out = dict(gated_out.group_by("judge").len().iter_rows())
    return {"n_items": len(gate.gold_prompts), "min_accuracy": gate.min_accuracy, "min_answers": gold.MIN_GOLD_ANSWERS,
            "accuracy": [{**a._asdict(), "gated": a.annotator in gate.names} for a in gold.accuracy(db, study_id)],
            "gated": [{**a._asdict(), "n_labels_left_out": n_out.get(a.annotator, 0)} for a in gate.people],
            "n_labels_left_out": gated_out.height}


def _mixed_versions(model: pl.DataFrame) -> list[dict[str, Any]]:
    """(judge, method) pairs whose current rows come from more than one method version (a method re-run
    after its prompts changed, on part of the study): the report pools them, and says so."""
    per = (model.group_by("judge", "method", pl.col("method_version").fill_null("").alias("v"))
           .agg(n=pl.len().cast(pl.Int64)).sort("judge", "method", "v"))
    return [{"judge": judge, "method": method, "versions": [{"method_version": v, "n": n}
                                                            for v, n in zip(g["v"], g["n"])]}
            for (judge, method), g in per.group_by("judge", "method", maintain_order=True) if g.height > 1]


SERVING_POLICIES = ("position", "random", "informative", "disagreement", "gold", "unserved")


def _serving(db: Database, study_id: int, prompts: pl.DataFrame) -> pl.DataFrame:
    """How each labelled prompt came to be labelled: ``prompt_id, policy, probability``, from the serving record
    (storage/serving.py, m025): the policy of its first serving (position | random | informative | disagreement |
    gold) and that pick's probability where the policy defines one; "unserved" for a prompt whose human labels
    never came through the queue (imported, Live, opened by link). Prompts nobody labelled are left out: PPI's
    validity is a property of the labelled ones (the `ppi` section reads nothing else). The probability is kept
    for random picks only: active-inference weights need every item's inclusion probability, which the record
    of a gold draw or a disagreement route does not give, so such a study stays "not established"."""
    return _sql(db, """
        WITH labelled AS (SELECT DISTINCT prompt_id FROM judgment
                          WHERE study_id = $study AND judge_kind = 'human' AND superseded_at IS NULL),
             first AS (SELECT prompt_id, arg_min(policy, served_at) AS policy,
                              arg_min(probability, served_at) AS probability
                       FROM serving WHERE study_id = $study GROUP BY prompt_id)
        SELECT l.prompt_id, coalesce(f.policy, 'unserved') AS policy,
               CASE WHEN f.policy = 'random' THEN f.probability::DOUBLE END AS probability
        FROM labelled l LEFT JOIN first f ON f.prompt_id = l.prompt_id ORDER BY l.prompt_id""",
                {"study": study_id}).join(prompts.select("prompt_id"), on="prompt_id", how="semi")


def _with_external(df: pl.DataFrame, prompts: pl.DataFrame) -> pl.DataFrame:
    return df.join(prompts.select("prompt_id", "external_id"), on="prompt_id", how="left", maintain_order="left")


def _response_level() -> pl.Expr:
    """A response-level aggregate row: one response, no pair, no checklist item, no variant (k-sample methods'
    per-sample rows and pairwise per-order rows are left out)."""
    return (pl.col("variant").is_null() & pl.col("response_id").is_not_null() & pl.col("response_b_id").is_null()
            & pl.col("checklist_item_id").is_null())


def _mapped(d: _Data, key: str, values: Sequence[str]) -> list[str]:
    """Stored method ids whose method class has `key` in `values`."""
    return [m for m, info in d.mapping.items() if info is not None and info[key] in values and m not in METHOD_OF]
