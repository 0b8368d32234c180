"""The reliability diagram of the rendered report, as inline SVG built from numbers and escaped text."""

from __future__ import annotations

import html
from typing import Any

from storage.analysis.report.figures import _num


def _reliability_svg(bins: list[dict[str, Any]], title: str) -> str:
    """A reliability diagram (confidence vs accuracy per equal-count bin, the diagonal = perfect calibration)
    as inline SVG; every text from data is escaped."""
    w = h = 260
    pad = 36
    size = w - 2 * pad

    def x(v: float) -> float:
        return pad + v * size

    def y(v: float) -> float:
        return h - pad - v * size
    parts = [(f'<svg width="{w}" height="{h + 16}" viewBox="0 0 {w} {h + 16}" '
              f'role="img" aria-label="{html.escape(title, quote=True)}">'),
             f'<title>{html.escape(title)}</title>',
             f'<rect x="{pad}" y="{pad}" width="{size}" height="{size}" fill="#fafafa" stroke="#999"/>',
             f'<line x1="{x(0)}" y1="{y(0)}" x2="{x(1)}" y2="{y(1)}" stroke="#bbb" stroke-dasharray="4 3"/>']
    for t in (0.0, 0.5, 1.0):
        parts.append(f'<text x="{x(t)}" y="{h - pad + 14}" font-size="10" text-anchor="middle">{t:g}</text>')
        parts.append(f'<text x="{pad - 6}" y="{y(t) + 3}" font-size="10" text-anchor="end">{t:g}</text>')
    parts.append(f'<text x="{w / 2}" y="{h - 6}" font-size="11" text-anchor="middle">confidence (mean prob)</text>')
    parts.append(f'<text x="12" y="{h / 2}" font-size="11" text-anchor="middle" '
                 f'transform="rotate(-90 12 {h / 2})">accuracy (share correct)</text>')
    pts = [(b["confidence"], b["accuracy"]) for b in bins if _num(b.get("confidence")) is not None
           and _num(b.get("accuracy")) is not None]
    if pts:
        path = " ".join(f"{x(c):.1f},{y(a):.1f}" for c, a in pts)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#3367d6" stroke-width="1.5"/>')
        for c, a in pts:
            parts.append(f'<circle cx="{x(c):.1f}" cy="{y(a):.1f}" r="3.5" fill="#3367d6"/>')
    parts.append(f'<text x="{w / 2}" y="{pad - 12}" font-size="11" text-anchor="middle">'
                 f'{html.escape(title)}</text>')
    parts.append("</svg>")
    return "".join(parts)
