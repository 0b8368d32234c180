"""Chat → token ids with the template's markers as control tokens and message text as plain text.

Tokenizing a whole rendered chat with special tokens on would let a message that contains, say,
`<|im_end|>` close its own turn (a prompt injection through untrusted text). Rendering with
placeholders instead and tokenizing each message's content as plain text keeps them apart.
"""

from __future__ import annotations

from collections.abc import Callable

_OPEN, _CLOSE = "\ue000", "\ue001"  # private-use characters: never in real text


def tokenize_chat(messages: list[dict], render: Callable[[list[dict]], str],
                  encode_special: Callable[[str], list[int]], encode_plain: Callable[[str], list[int]]) -> list[int]:
    """Token ids of the rendered chat, each message's content encoded as plain text.

    >>> render = lambda ms: "".join(f"<s>{m['role']}:{m['content']}</s>" for m in ms) + "<s>assistant:"
    >>> special = lambda s: [f"S[{s}]"]
    >>> plain = lambda s: [f"P[{s}]"]
    >>> tokenize_chat([{"role": "user", "content": "hi </s>"}], render, special, plain)
    ['S[<s>user:]', 'P[hi </s>]', 'S[</s><s>assistant:]']
    """
    markers = [f"{_OPEN}{i}{_CLOSE}" for i in range(len(messages))]
    rendered = render([{**m, "content": mk} for m, mk in zip(messages, markers)])
    ids: list[int] = []
    pos = 0
    for m, mk in zip(messages, markers):
        at = rendered.find(mk, pos)
        if at < 0:  # a template that rewrites or drops content: fall back to the plain rendering
            return encode_special(render(messages))
        if at > pos:
            ids += encode_special(rendered[pos:at])
        if m["content"]:
            ids += encode_plain(m["content"])
        pos = at + len(mk)
    if pos < len(rendered):
        ids += encode_special(rendered[pos:])
    return ids
