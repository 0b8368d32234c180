"""The agreement report of a study: every metric of `storage.analysis` fed from the database, as one stable
JSON structure (``"format": "critlab.agreement/3"``, documented in docs/formats.md, "Agreement report (JSON)"),
plus Markdown and self-contained HTML renderings of the same numbers.

Public API: `build_report(db, study_id, stage=..., n_boot=..., seed=...)`, `report_markdown(report)`,
`report_html(report)`, re-exported here from the package's modules: `loading` (the one read of the
database), `intervals` (bootstrap intervals), `shared` and `votes` (what several sections use), one
`*_section` module per section, `headline`, `build` (`build_report`), and the renderers `blocks`, `svg`,
`render_md` and `render_html`.

Conventions (see docs/formats.md for the full key list):

- Every figure is a dict ``{"metric", "judges", "value", "n", "ci", ...}``: the metric's name, the two judges (or
  judge groups) it compares, the value (null when undefined, e.g. κ with one label used), the number of units
  it rests on and the 95% percentile bootstrap interval over prompts (``[low, high]`` or null).
- Humans are compared with the consensus of the OTHER humans (leave-one-out), models with the consensus of
  all humans; the consensus is the plurality label when it is a unique mode (ratings: the mean); units
  without one are counted and left out.
- Only current rows count (``superseded_at IS NULL``); human rows of the chosen `stage` (blind by default,
  so labels given where the model's view was visible never count as blind); model rows with status ok
  (failed ones are counted), the aggregate row (variant NULL) of k-sample methods, and for pairwise the
  per-order rows (variant ``order:<first>-<second>``) combined by `combine_orders`, never the stored
  combined row.
- Which human question a model method is compared with comes from the method classes
  (`get_method(id).compared_with`, ``metric_family``, ``score_column``), passed in as `method_info` by the
  app layer (storage does not import the methods).
- A section without data is ``{"available": false, "reason": "..."}``; a section that fails to compute says
  so the same way (the reason names the error) instead of failing the whole report.
"""

from storage.analysis.report.build import build_report
from storage.analysis.report.figures import FORMAT, METHOD_OF, STAGES
from storage.analysis.report.intervals import interval_text
from storage.analysis.report.loading import MethodInfo
from storage.analysis.report.pairwise_section import fleiss_overlap
from storage.analysis.report.ppi_section import target_text
from storage.analysis.report.render_html import report_html
from storage.analysis.report.render_md import report_markdown

__all__ = ["FORMAT", "METHOD_OF", "STAGES", "MethodInfo", "build_report", "fleiss_overlap", "interval_text",
           "report_html", "report_markdown", "target_text"]
