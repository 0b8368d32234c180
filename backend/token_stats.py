"""Per-response confidence figures from token logprobs (reference/methods.md §3).

All figures are oriented "higher = more confident" except the entropy (lower = more confident).
"""

from __future__ import annotations

import math

import numpy as np

from backend.engines.base import TokenLogprob
from storage.models import TokenStats


def full_distribution_stats(logits: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Log-softmax of one position's logits, its full entropy and its exact self-certainty KL(U || p).

    SC = -log V - (1/V) * sum_j log p_j  (0 for a uniform distribution, larger when peaked).

    >>> lp, h, sc = full_distribution_stats(np.zeros(4))
    >>> round(h, 6) == round(math.log(4), 6), round(sc, 9)
    (True, 0.0)
    """
    x = logits.astype(np.float64)
    x = x - x.max()
    lp = x - math.log(float(np.exp(x).sum()))
    p = np.exp(lp)
    entropy = float(-(p * lp).sum())
    self_certainty = float(-math.log(lp.size) - lp.mean())
    return lp, entropy, self_certainty


def topk_entropy(top_logprobs: list[float]) -> float:
    """Entropy of the top-k alternatives renormalised to sum to 1.

    >>> round(topk_entropy([math.log(0.25)] * 4), 6) == round(math.log(4), 6)
    True
    """
    lp = np.asarray(top_logprobs, dtype=np.float64)
    lp = lp - np.logaddexp.reduce(lp)
    return float(-(np.exp(lp) * lp).sum())


def topk_self_certainty_proxy(top_logprobs: list[float], vocab_size: int) -> float:
    """Uniform-tail lower bound of KL(U || p) from the top-k logprobs only (methods.md §3, option 2).

    The tail mass r = 1 - sum(top-k p) is spread evenly over the V - k unseen tokens.

    >>> v = 10; exact = full_distribution_stats(np.log(np.full(v, 0.1)))[2]
    >>> abs(topk_self_certainty_proxy([math.log(0.1)] * 3, v) - exact) < 1e-9
    True
    """
    lp = np.asarray(top_logprobs, dtype=np.float64)
    k = lp.size
    log_mass = float(np.logaddexp.reduce(lp))
    log_r = math.log(max(-math.expm1(min(log_mass, 0.0)), 1e-12))
    tail = (vocab_size - k) * (log_r - math.log(vocab_size - k)) if vocab_size > k else 0.0
    return -math.log(vocab_size) - (float(lp.sum()) + tail) / vocab_size


def token_stats(tokens: list[TokenLogprob], *, vocab_size: int | None, logprob_mode: str) -> TokenStats:
    """Summarise a response's tokens; self-certainty is exact when every token carries it.

    >>> t = [TokenLogprob(token_id=1, logprob=math.log(0.5), top=[], self_certainty=2.0)]
    >>> s = token_stats(t, vocab_size=None, logprob_mode="raw")
    >>> round(s.neg_perplexity, 6), s.self_certainty, s.self_certainty_mode
    (-2.0, 2.0, 'exact')
    """
    n = len(tokens)
    if n == 0:
        return TokenStats(token_count=0, logprob_mode=logprob_mode)  # type: ignore[arg-type]
    mean_lp = float(np.mean([t.logprob for t in tokens]))
    ent = float(np.mean([topk_entropy([a.logprob for a in t.top]) for t in tokens])) if all(t.top for t in tokens) \
        else None
    sc_mode = None
    if all(t.self_certainty is not None for t in tokens):
        sc, sc_mode = float(np.mean([t.self_certainty for t in tokens])), "exact"
    elif vocab_size and all(t.top for t in tokens):
        sc = float(np.mean([topk_self_certainty_proxy([a.logprob for a in t.top], vocab_size) for t in tokens]))
        sc_mode = "topk_proxy"
    else:
        sc = None
    return TokenStats(token_count=n, mean_logprob=mean_lp, neg_perplexity=-math.exp(-mean_lp),
                      mean_topk_entropy=ent, self_certainty=sc, self_certainty_mode=sc_mode,
                      logprob_mode=logprob_mode)  # type: ignore[arg-type]
