"""`report_markdown`: the report's blocks as Markdown."""

from __future__ import annotations

import html
from typing import Any

from storage.analysis.report.blocks import _blocks


def _md_cell(s: str) -> str:
    return html.escape(s, quote=False).replace("|", "\\|").replace("\n", " ")


def report_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown (tables; the reliability diagrams as their bin tables). Text from the data is
    HTML-escaped and pipes are escaped, so a judge name cannot break a table or inject markup."""
    out = []
    for kind, val in _blocks(report).blocks:
        if kind == "h":
            out.append("#" * val[0] + " " + _md_cell(val[1]))
        elif kind == "p":
            out.append(_md_cell(val))
        elif kind == "table":
            headers, rows = val
            out.append("| " + " | ".join(_md_cell(h) for h in headers) + " |")
            out.append("|" + "---|" * len(headers))
            out.extend("| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows)
        out.append("")
    return "\n".join(out)
