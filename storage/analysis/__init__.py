"""Agreement and calibration metrics for critlab's report: pure functions on polars frames (no database).

Frame schemas (polars DataFrames; anything ``pl.DataFrame()`` accepts is converted):

- **votes** (categorical verdicts): ``prompt_id, unit, judge, label`` — one row per vote, at most one vote
  per (prompt_id, unit, judge). ``unit`` names what was judged within the prompt; for pairwise verdicts
  ``"<lower id>-<higher id>"`` with labels ``first`` (lower id wins) / ``second`` / ``tie`` in the unit's
  own order (`pairwise_votes`, `pair_unit`).
- **order votes** (a model judged per shown order): votes plus ``shown`` = ``"ab"`` (lower id shown first)
  or ``"ba"``; `combine_orders` turns them into votes.
- **ratings**: ``prompt_id, unit, judge, value`` (numeric).
- **scores**: ``prompt_id``, a model score column and a human score column, one row per response.
- **picks**: human ``prompt_id, judge, response_id``; selector ``prompt_id, selector, response_id``;
  candidates ``prompt_id, response_id``.
- **calibration**: ``prob`` in [0, 1] and a 0/1 (or bool) ``label`` per item.
- **checklist answers**: ``prompt_id, response_id, item_id, judge, label`` (YES/NO); validity
  ``prompt_id, item_id, judge, valid`` (bool).

Bootstrap confidence intervals resample prompts (`bootstrap_ci`, `bootstrap_ci_from_sums`; many at once over
shared draws: `BootstrapBatch`).
"""

from storage.analysis._frames import PAIR_CLASSES
from storage.analysis.agreement import (
    classification_metrics,
    cohen_kappa,
    confusion_matrix,
    fleiss_kappa,
    fleiss_kappa_counts,
    judge_vs_consensus,
    krippendorff_alpha,
    krippendorff_alpha_counts,
    mtbench_agreement,
    mtbench_agreement_table,
    pairwise_kappa,
    rating_agreement,
)
from storage.analysis.bootstrap import (
    BootstrapBatch,
    bootstrap_ci,
    bootstrap_ci_from_sums,
)
from storage.analysis.calibration import (
    auroc,
    auroc_weighted,
    brier,
    calibration_report,
    ece,
    ece_weighted,
    reliability_bins,
    rms_calibration_error,
)
from storage.analysis.checklist import YES_NO, checklist_agreement, criterion_validity
from storage.analysis.consensus import consensus, rating_consensus
from storage.analysis.pairwise import (
    combine_orders,
    order_swap,
    order_variants,
    pair_unit,
    pairwise_votes,
)
from storage.analysis.scores import (
    best_of_n_accuracy,
    kendall_tau_b,
    rank_correlations,
    rank_correlations_per_prompt,
    spearman,
)

__all__ = [
    "PAIR_CLASSES", "YES_NO", "BootstrapBatch", "auroc", "auroc_weighted", "best_of_n_accuracy", "bootstrap_ci",
    "bootstrap_ci_from_sums", "brier", "calibration_report", "checklist_agreement", "classification_metrics",
    "cohen_kappa", "combine_orders", "confusion_matrix", "consensus", "criterion_validity", "ece", "ece_weighted",
    "fleiss_kappa", "fleiss_kappa_counts", "judge_vs_consensus", "kendall_tau_b", "krippendorff_alpha",
    "krippendorff_alpha_counts", "mtbench_agreement", "mtbench_agreement_table", "order_swap", "order_variants",
    "pair_unit", "pairwise_kappa", "pairwise_votes", "rank_correlations", "rank_correlations_per_prompt",
    "rating_agreement", "rating_consensus", "reliability_bins", "rms_calibration_error", "spearman",
]
