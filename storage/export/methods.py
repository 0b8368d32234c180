"""What an export needs to know of the scoring methods and of chat templates, both of which live in backend.

Storage never imports backend, so the app layer (app/services/exports.py `export_methods`) hands these in, the
way `build_report(method_info=...)` gets its method facts. The default knows no method and renders no
template: enough for exports of human labels in the conversational and messages styles.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

Messages = list[dict[str, str]]


class Template(Protocol):
    """A chat template ready to render a prompt (backend.engines.chat_template.ChatTemplate)."""

    source: str  # where it came from, for the dataset card

    def render(self, messages: Messages) -> str: ...


@dataclass(frozen=True)
class ExportMethods:
    # method id -> the column its verdicts score ("score", "label", "response_id", ...)
    score_columns: Mapping[str, str] = field(default_factory=dict)
    # (critique method version or None, question, response) -> the chat the critique method sends its judge
    judge_chat: Callable[[str | None, str, str], Messages] | None = None
    # (stored rationale, verdict label) -> the critique method's reply, as its JSON
    critique_reply: Callable[[str, str | None], str] | None = None
    # a GGUF file, Hugging Face tokenizer directory or Jinja file -> its chat template (ValueError if none)
    load_template: Callable[[str], Template] | None = None
    # (template text, special tokens, source) -> a template: one recorded in the model registry
    template_from_text: Callable[[str, dict[str, str], str], Template] | None = None
    # method id -> the method table's mapping (compared_with, score_column ...; storage.analysis.report.MethodInfo):
    # what `--source pre:METHOD` needs to score the judges' exam as the report does
    method_info: Callable[[str], dict[str, str] | None] | None = None

    def score_column(self, method: str, source: str) -> str:
        """The score column of `method` as named in `source`; ValueError for a method this caller does not know."""
        if method not in self.score_columns:
            known = ", ".join(self.score_columns) or "none (no method facts were passed to the export)"
            raise ValueError(f"unknown method {method!r} in source {source!r}; known: {known}")
        return self.score_columns[method]

    def need(self, what: str) -> None:
        if getattr(self, what) is None:
            raise ValueError(f"this export needs `{what}`, which the caller did not pass (ExportMethods); "
                             "app.services.exports.export_methods() gives them all")


NO_METHODS = ExportMethods()
