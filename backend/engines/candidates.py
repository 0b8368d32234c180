"""Which vocabulary tokens count as an answer candidate: the one rule every engine uses for
`next_token_probs`.

A method reads P(next token = candidate) at an answer slot ("Yes"/"No", the option letters "A"/"B"/"C",
the digits "0".."9"). A model may spell the same answer with a leading space or in another case, so the
probability of a candidate is the sum over its *surface forms*:

- The candidate as given and its stripped core, each with and without one leading space ("Yes", " Yes").
- For a core of two or more characters, also lower-case, Capitalised and UPPER-case ("yes", " YES", "NO"):
  at a Yes/No slot "NO" means No.
- A single character keeps its case: the option letters are named in upper case by the prompts, and the
  lower-case letters are common words and word pieces (" a" is the article, "b" starts many words), so
  summing them would add mass that is no answer. Digits have no case, so "7" and " 7".
- Only forms that are exactly one token count. A form that splits ("YES" = "Y" + "ES" on SmolLM2) would
  put the mass of its first piece, the start of many other words, on the candidate. A candidate with no
  one-token form at all is an error, not a silent zero.
- A token id that is a form of two candidates belongs to the one it is closest to: the candidate listed
  earlier in the form order (as given, then the space form, then case variants), ties to the earlier
  candidate. So no token is counted twice.

Pure functions over a caller's `encode` (texts -> token ids, no special tokens), so the embedded llama.cpp
engine and the SGLang client resolve the same ids for the same vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

Encode = Callable[[list[str]], list[list[int]]]


class CandidateError(ValueError):
    """A candidate has no one-token surface form in this vocabulary (or is empty)."""


def surface_forms(candidate: str) -> list[str]:
    """The surface forms of `candidate`, closest first (see the module docstring).

    >>> surface_forms("Yes")
    ['Yes', ' Yes', 'yes', ' yes', 'YES', ' YES']
    >>> surface_forms("A")
    ['A', ' A']
    >>> surface_forms(" no")
    [' no', 'no', 'No', ' No', 'NO', ' NO']
    >>> surface_forms("7")
    ['7', ' 7']
    """
    core = candidate.strip() or candidate
    bases = [candidate, core]
    if len(core) >= 2:
        bases += [core.lower(), core.capitalize(), core.upper()]
    out: list[str] = []
    for base in bases:
        for form in (base, base if base.startswith(" ") else " " + base):
            if form not in out:
                out.append(form)
    return out


def resolve(candidates: Sequence[str], encode: Encode,
            decode: Callable[[int], str] | None = None) -> dict[str, list[int]]:
    """candidate -> the sorted ids of its one-token surface forms; CandidateError when one has none.

    `encode` is called once, with every form of every candidate. With `decode` (token id -> its text), a
    one-token form counts only when its token's text is the form: a tokenizer that drops characters it
    cannot encode would otherwise turn " A" into the space token.

    >>> vocab = {"A": 1, " A": 2, "a": 3, " a": 4, "Yes": 5, " Yes": 6, "yes": 7, "NO": 8, "No": 9, "Y": 10, "ES": 11}
    >>> def encode(texts):  # a toy tokenizer: a text in `vocab` is one token, any other splits in two
    ...     return [[vocab[t]] if t in vocab else [vocab.get(t[:1], 0), vocab.get(t[1:], 0)] for t in texts]
    >>> resolve(["A", "B"], encode)
    Traceback (most recent call last):
    backend.engines.candidates.CandidateError: candidate(s) ['B'] have no one-token form in this vocabulary \
(tried ['B', ' B'])
    >>> resolve(["A", "Yes", "No"], encode)
    {'A': [1, 2], 'Yes': [5, 6, 7], 'No': [8, 9]}
    >>> resolve(["A", "Yes"], encode, decode={v: k for k, v in vocab.items()}.get)
    {'A': [1, 2], 'Yes': [5, 6, 7]}
    >>> resolve(["A"], lambda texts: [[4] for _ in texts], decode={4: " "}.get)  # " A" came back as " "
    Traceback (most recent call last):
    backend.engines.candidates.CandidateError: candidate(s) ['A'] have no one-token form in this vocabulary \
(tried ['A', ' A'])
    >>> resolve(["Yes", "YES"], encode)  # "YES" shares the form "Yes" with the first candidate, which keeps it
    Traceback (most recent call last):
    backend.engines.candidates.CandidateError: candidate(s) ['YES'] have no one-token form in this vocabulary \
(tried ['YES', ' YES', 'yes', ' yes', 'Yes', ' Yes'])
    """
    forms = {c: surface_forms(c) for c in candidates}
    texts = sorted({f for fs in forms.values() for f in fs})
    single = {t: ids[0] for t, ids in zip(texts, encode(texts))
              if len(ids) == 1 and (decode is None or decode(ids[0]) == t)}
    owner: dict[int, tuple[int, int]] = {}  # token id -> (form rank, candidate index) of its closest candidate
    for ci, c in enumerate(candidates):
        for rank, form in enumerate(forms[c]):
            tid = single.get(form)
            if tid is not None and (tid not in owner or (rank, ci) < owner[tid]):
                owner[tid] = (rank, ci)
    out: dict[str, list[int]] = {c: [] for c in candidates}
    for tid, (_, ci) in sorted(owner.items()):
        out[candidates[ci]].append(tid)
    empty = [c for c, ids in out.items() if not ids]
    if empty:
        tried = forms[empty[0]]
        raise CandidateError(f"candidate(s) {empty} have no one-token form in this vocabulary (tried {tried})")
    return out
