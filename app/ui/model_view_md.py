"""Render a card's model view (app.services.model_view.CardView) as safe Markdown/HTML."""

from __future__ import annotations

import html

from app.render import to_safe_html
from app.services.model_view import CardView

OUTCOME = {"won": "won", "lost": "lost", "tie": "tie"}


def render_view(view: CardView, positions: dict[int, int]) -> str:
    """`positions` maps response ids to the card numbers this annotator sees."""
    if view.empty:
        return "*Nothing scored yet: run `critlab score` or the Score button in the Studies tab.*"
    parts = []
    if view.picked_by:
        parts.append(f"**★ Picked by {', '.join(view.picked_by)}**")
    if view.badges:
        # One <p> line: an HTML block, so Gradio's Markdown does not turn ![..](..) in an error text into an image.
        parts.append("<p>" + " ".join(
            f'<span class="badge{" badge-failed" if b.failed else ""}" title="{html.escape(b.method)}">'
            f'{html.escape(b.name)}: '
            f"{html.escape(' '.join(b.text.split()))}</span>" for b in view.badges) + "</p>")
    if view.checklist:
        rows = "\n".join(
            f"<li>{'✅' if c.answer == 'YES' else '❌'} {to_safe_html(c.question).removeprefix('<p>').removesuffix('</p>')}"
            f"{f' <small>(P(YES) {c.p_yes:.2f})</small>' if c.p_yes is not None else ''}</li>"
            for c in view.checklist)
        parts.append(f"<p><strong>Checklist</strong></p>\n<ul>\n{rows}\n</ul>")
    for text in view.critiques:
        parts.append("<p><strong>Critique</strong></p>\n" + to_safe_html(text))
    for p in view.principles:
        shown = "" if p.score is None else f", {p.score:.0f} / 10"
        parts.append(f"<p><strong>Principles + critique</strong> <small>(sample {html.escape(p.sample)}{shown})"
                     "</small></p>\n" + to_safe_html(p.text.replace("\n", "  \n")))  # principles, then critique
    if view.pairwise:
        items = "\n".join(
            f"<li>vs Response {positions.get(p.other_id, '?')}: {OUTCOME[p.outcome]}"
            f"{' (both orders agree)' if p.swap_consistent else ' (orders disagree)' if p.swap_consistent is False else ''}"
            "</li>" for p in sorted(view.pairwise, key=lambda p: positions.get(p.other_id, 99)))
        parts.append(f"<p><strong>Pairwise self-judgment</strong></p>\n<ul>\n{items}\n</ul>")
    return "\n\n".join(parts)
