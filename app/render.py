"""Untrusted text (prompts, model output) to safe HTML for display.

Model output is untrusted: raw HTML in it is shown as text, images are replaced by their alt
text (so no remote image is ever fetched), and only http(s)/mailto links survive. The result is
sanitised once more with an allow-list (nh3) before Gradio's own sanitiser sees it. Stored text is
never changed; this runs only when rendering.
"""

from __future__ import annotations

import html
import string

import nh3
from markdown_it import MarkdownIt

_TAGS = {"p", "br", "hr", "em", "strong", "del", "s", "code", "pre", "blockquote", "ul", "ol", "li",
         "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "a", "span"}
_ATTRS = {"a": {"href", "title"}, "th": {"style"}, "td": {"style"}, "ol": {"start"}, "span": {"class"}}


def _image_as_text(self, tokens, idx, options, env) -> str:  # noqa: ANN001 (markdown-it renderer rule)
    alt = "".join(t.content for t in (tokens[idx].children or []))
    return f'<span class="img-removed">[image removed{": " + html.escape(alt) if alt else ""}]</span>'


_md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")
_md.enable("strikethrough")
_md.add_render_rule("image", _image_as_text)


def to_safe_html(text: str) -> str:
    """Render untrusted Markdown to HTML with no scripts, no images and no dangerous links.

    >>> to_safe_html('<img src=x onerror=alert(1)> **hi**')
    '<p>&lt;img src=x onerror=alert(1)&gt; <strong>hi</strong></p>'
    >>> to_safe_html('![t](http://evil/x.png)')
    '<p><span class="img-removed">[image removed: t]</span></p>'
    >>> to_safe_html('[x](javascript:alert(1))')
    '<p>[x](javascript:alert(1))</p>'
    """
    rendered = _md.render(text)
    clean = nh3.clean(rendered, tags=_TAGS, attributes=_ATTRS, url_schemes={"http", "https", "mailto"},
                      link_rel="noopener noreferrer nofollow", strip_comments=True)
    # Gradio's Markdown treats the HTML as Markdown HTML blocks, and a blank line ends such a block;
    # keep blank lines inside code blocks from splitting it.
    return clean.strip().replace("\n\n", "\n&#8203;\n")


def chat_to_safe_html(messages: list[dict]) -> str:
    """A prompt's messages as safe HTML, each under its role."""
    parts = []
    for m in messages:
        parts.append(f'<p><strong>{html.escape(m["role"].capitalize())}</strong></p>\n{to_safe_html(m["content"])}')
    return "\n<hr>\n".join(parts)


def earlier_turns_html(messages: list[dict]) -> str:
    """The turns before a response's own (a multi-turn answer) as a boxed, quieter block above it, then a
    heading over the response itself, so a reader does not take the model's turn-1 reply for the answer to
    rate; '' when there are none. The box's height is capped (style.css .earlier-turns) so a long turn 1
    does not push the answer out of the card's scroll area."""
    if not messages:
        return ""
    turn = sum(1 for m in messages if m.get("role") == "user") + 1
    rows = [f'<p><strong>{html.escape(str(m["role"]).capitalize())}</strong></p>\n{to_safe_html(m["content"])}'
            for m in messages]
    return ('<blockquote class="earlier-turns">\n<p class="earlier-title">Earlier in this conversation</p>\n'
            + "\n".join(rows) + "\n</blockquote>\n"
            + f'<p class="this-turn"><strong>This response (turn {turn})</strong></p>\n')


def md_literal(text: str) -> str:
    r"""Untrusted one-line text (a prompt id from an imported file) inside Markdown, shown as typed:
    Gradio's Markdown keeps <img> and renders ![..](..), so every ASCII punctuation mark is escaped.

    >>> print(md_literal("![x](http://t/p.png) <b>"))
    \!\[x\]\(http\:\/\/t\/p\.png\) \<b\>
    """
    return "".join("\\" + c if c in string.punctuation else c for c in " ".join(text.split()))
