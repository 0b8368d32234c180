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


def _scores_svg(rows: list[dict[str, Any]], title: str) -> str:
    """Bradley–Terry scores with their intervals, one row per generator (best first): a dot at the score, a
    bar over [low, high], zero marked; names and the title are escaped."""
    pts = [r for r in rows if _num(r.get("score")) is not None]
    label_w, plot_w, row_h, top = 170, 300, 22, 34
    w, h = label_w + plot_w + 20, top + row_h * max(1, len(pts)) + 30
    vals = [v for r in pts for v in (_num(r.get("low")), _num(r.get("high")), _num(r.get("score"))) if v is not None]
    lo, hi = (min(vals + [0.0]), max(vals + [0.0])) if vals else (-1.0, 1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 1, hi + 1

    def x(v: float) -> float:
        return label_w + (v - lo) / (hi - lo) * plot_w
    parts = [(f'<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" '
              f'aria-label="{html.escape(title, quote=True)}">'), f'<title>{html.escape(title)}</title>',
             f'<text x="{w / 2}" y="16" font-size="11" text-anchor="middle">{html.escape(title)}</text>',
             f'<line x1="{x(0):.1f}" y1="{top - 6}" x2="{x(0):.1f}" y2="{h - 26}" stroke="#bbb" '
             f'stroke-dasharray="4 3"/>']
    for i, r in enumerate(pts):
        y = top + i * row_h + row_h / 2
        name = str(r.get("item"))
        short = name if len(name) <= 26 else name[:25] + "…"
        parts.append(f'<text x="{label_w - 8}" y="{y + 4:.1f}" font-size="11" text-anchor="end">'
                     f'{html.escape(short)}</text>')
        low, high = _num(r.get("low")), _num(r.get("high"))
        if low is not None and high is not None:
            parts.append(f'<line x1="{x(low):.1f}" y1="{y:.1f}" x2="{x(high):.1f}" y2="{y:.1f}" stroke="#3367d6" '
                         f'stroke-width="2"/>')
        parts.append(f'<circle cx="{x(float(r["score"])):.1f}" cy="{y:.1f}" r="4" fill="#3367d6"/>')
    for t in (lo, 0.0, hi):
        parts.append(f'<text x="{x(t):.1f}" y="{h - 12}" font-size="10" text-anchor="middle">{t:.2f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _curve_svg(curves: list[tuple[str, list[dict[str, Any]]]], title: str) -> str:
    """Length-bias curves: P(prefers A) against the relative length difference x, one line (and its pointwise
    band) per judge; the legend's names are escaped."""
    colors = ["#3367d6", "#d93025", "#188038", "#f29900", "#a142f4", "#12a4af"]
    w, h, pad = 480, 280, 40
    sx, sy = w - 2 * pad - 170, h - 2 * pad

    def x(v: float) -> float:
        return pad + (v + 1) / 2 * sx

    def y(v: float) -> float:
        return h - pad - v * sy
    parts = [(f'<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" '
              f'aria-label="{html.escape(title, quote=True)}">'), f'<title>{html.escape(title)}</title>',
             f'<rect x="{pad}" y="{pad}" width="{sx}" height="{sy}" fill="#fafafa" stroke="#999"/>',
             f'<line x1="{x(-1)}" y1="{y(0.5)}" x2="{x(1)}" y2="{y(0.5)}" stroke="#bbb" stroke-dasharray="4 3"/>',
             f'<text x="{pad + sx / 2}" y="{pad - 14}" font-size="11" text-anchor="middle">{html.escape(title)}</text>',
             f'<text x="{pad + sx / 2}" y="{h - 8}" font-size="11" text-anchor="middle">'
             f'(len A − len B) / (len A + len B)</text>',
             f'<text x="12" y="{h / 2}" font-size="11" text-anchor="middle" transform="rotate(-90 12 {h / 2})">'
             f'P(prefers A)</text>']
    for t in (-1.0, 0.0, 1.0):
        parts.append(f'<text x="{x(t)}" y="{h - pad + 14}" font-size="10" text-anchor="middle">{t:g}</text>')
    for t in (0.0, 0.5, 1.0):
        parts.append(f'<text x="{pad - 6}" y="{y(t) + 3}" font-size="10" text-anchor="end">{t:g}</text>')
    for k, (name, pts) in enumerate(curves):
        c = colors[k % len(colors)]
        ok = [p for p in pts if all(_num(p.get(f)) is not None for f in ("x", "p", "low", "high"))]
        if not ok:
            continue
        band = ([f"{x(p['x']):.1f},{y(p['high']):.1f}" for p in ok]
                + [f"{x(p['x']):.1f},{y(p['low']):.1f}" for p in reversed(ok)])
        parts.append(f'<polygon points="{" ".join(band)}" fill="{c}" fill-opacity="0.12" stroke="none"/>')
        line = " ".join(f"{x(p['x']):.1f},{y(p['p']):.1f}" for p in ok)
        parts.append(f'<polyline points="{line}" fill="none" stroke="{c}" stroke-width="1.8"/>')
        ly = pad + 12 + 16 * k
        short = name if len(name) <= 28 else name[:27] + "…"
        parts.append(f'<line x1="{pad + sx + 8}" y1="{ly - 4}" x2="{pad + sx + 22}" y2="{ly - 4}" stroke="{c}" '
                     f'stroke-width="2"/><text x="{pad + sx + 26}" y="{ly}" font-size="10">{html.escape(short)}</text>')
    parts.append("</svg>")
    return "".join(parts)
