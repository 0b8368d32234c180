"""`report_html`: the report's blocks as one self-contained HTML page."""

from __future__ import annotations

import html
from typing import Any

from storage.analysis.report.blocks import _blocks


_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:72rem;color:#222;
padding:0 1rem;line-height:1.4}h1{font-size:1.6rem}h2{font-size:1.3rem;margin-top:2rem;border-bottom:1px solid #ddd}
h3{font-size:1.05rem}table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.85rem}
th,td{border:1px solid #ccc;padding:.2rem .5rem;text-align:left;vertical-align:top}th{background:#f3f3f3}
td{font-variant-numeric:tabular-nums}p{margin:.5rem 0}svg{display:block;margin:.5rem 0}"""


def report_html(report: dict[str, Any]) -> str:
    """The report as one self-contained HTML page: inline CSS, reliability diagrams as inline SVG, confusion
    matrices as tables; no scripts and no external resources. Every text is escaped with html.escape."""
    title = html.escape(f"Agreement report: {report.get('study', {}).get('name', '')}")
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{title}</title>",
           f"<style>{_CSS}</style></head><body>"]
    for kind, val in _blocks(report).blocks:
        if kind == "h":
            out.append(f"<h{val[0]}>{html.escape(val[1])}</h{val[0]}>")
        elif kind == "p":
            out.append(f"<p>{html.escape(val)}</p>")
        elif kind == "table":
            headers, rows = val
            out.append("<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers)
                       + "</tr></thead><tbody>")
            out.extend("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
            out.append("</tbody></table>")
        elif kind == "svg":
            out.append(val)  # built by storage.analysis.report.svg from numbers and escaped text
    out.append("</body></html>")
    return "\n".join(out)
