"""Preference-data exports that trainers load as is (TRL / `datasets`), with provenance and agreement filters.

`critlab export dpo|rm|kto|sft|judge` and the Export tab call `export_dataset` / `preview_dataset` through
app/services/exports.py, which passes the method facts and chat templates (`ExportMethods`) from backend.
docs/formats.md ("Preference data exports") describes every kind, column, policy and the dataset card.
"""

from storage.export.methods import NO_METHODS, ExportMethods
from storage.export.options import ExportOptions, Source
from storage.export.plan import plan_export
from storage.export.run import ExportResult, PreviewResult, export_dataset, preview_dataset
from storage.export.schema import KINDS, META_TYPE, STYLES, row_schema

__all__ = [
           "KINDS",
           "META_TYPE",
           "STYLES",
           "NO_METHODS",
           "ExportMethods",
           "ExportOptions",
           "ExportResult",
           "PreviewResult",
           "Source",
           "export_dataset",
           "plan_export",
           "preview_dataset",
           "row_schema",
]
