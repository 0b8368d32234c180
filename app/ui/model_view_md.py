"""Render a card's model view (app.services.model_view.CardView) as safe Markdown/HTML."""

from __future__ import annotations

import html

from app.render import to_safe_html
from app.services.model_view import CardView

OUTCOME = {"won": "won", "lost": "lost", "tie": "tie"}


def _judge_parts(view: CardView, judge: str, positions: dict[int, int]) -> list[str]:
    parts = []
    badges = [b for b in view.badges if b.judge == judge]
    if badges:
        # One <p> line: an HTML block, so Gradio's Markdown does not turn ![..](..) in an error text into an image.
        parts.append("<p>" + " ".join(
            f'<span class="badge{" badge-failed" if b.failed else ""}" title="{html.escape(b.method)}">'
            f'{html.escape(b.name)}: '
            f"{html.escape(' '.join(b.text.split()))}</span>" for b in badges) + "</p>")
    checklist = [c for c in view.checklist if c.judge == judge]
    if checklist:
        rows = "\n".join(
            f"<li>{'✅' if c.answer == 'YES' else '❌'} {to_safe_html(c.question).removeprefix('<p>').removesuffix('</p>')}"
            f"{f' <small>(P(YES) {c.p_yes:.2f})</small>' if c.p_yes is not None else ''}</li>"
            for c in checklist)
        parts.append(f"<p><strong>Checklist</strong></p>\n<ul>\n{rows}\n</ul>")
    for c in view.critiques:
        if c.judge == judge:
            parts.append("<p><strong>Critique</strong></p>\n" + to_safe_html(c.text))
    for p in view.principles:
        if p.judge == judge:
            shown = "" if p.score is None else f", {p.score:.0f} / 10"
            parts.append(f"<p><strong>Principles + critique</strong> <small>(sample {html.escape(p.sample)}{shown})"
                         "</small></p>\n" + to_safe_html(p.text.replace("\n", "  \n")))  # principles, then critique
    pairwise = [p for p in view.pairwise if p.judge == judge]
    if pairwise:
        items = "\n".join(
            f"<li>vs Response {positions.get(p.other_id, '?')}: {OUTCOME[p.outcome]}"
            f"{' (both orders agree)' if p.swap_consistent else ' (orders disagree)' if p.swap_consistent is False else ''}"
            "</li>" for p in sorted(pairwise, key=lambda p: positions.get(p.other_id, 99)))
        parts.append(f"<p><strong>Pairwise verdicts</strong></p>\n<ul>\n{items}\n</ul>")
    return parts


def render_view(view: CardView, positions: dict[int, int]) -> str:
    """`positions` maps response ids to the card numbers this annotator sees. Each judge model's verdicts
    come under its model id, so two models scoring with the same method are never merged."""
    if view.empty:
        return "*Nothing scored yet: run `critlab score` or the Score button in the Studies tab.*"
    parts = []
    if view.picked_by:
        parts.append(f"**★ Picked by {', '.join(view.picked_by)}**")
    for judge in view.judges:
        parts.append(f'<p class="judge-name"><strong>{html.escape(judge or "model")}</strong></p>')
        parts.extend(_judge_parts(view, judge, positions))
    return "\n\n".join(parts)
