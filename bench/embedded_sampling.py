"""Sampling speed of the embedded engine, against llama-cpp-python's own paths in the same process.

critlab samples through its own low-level loop so that every token carries its raw logprob, the
top-k alternatives and the exact self-certainty (a full-vocabulary pass). Baselines:
  A. `create_chat_completion(logprobs=True, top_logprobs=5)` on a `logits_all=True` model: the
     library's built-in way to get the same per-token logprobs;
  B. `create_chat_completion` with no logprobs at all: the speed ceiling for plain text.

Usage: python bench/embedded_sampling.py [--prompts 4] [--n 4] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from backend.engines.base import SampleParams  # noqa: E402
from backend.engines.llamacpp import LlamaCppEngine  # noqa: E402
from backend.engines.llamacpp_util import default_model_path, load_llama  # noqa: E402

PROMPTS = ["Write a haiku about morning coffee.", "Explain what a prime number is.",
           "Give three tips for a job interview.", "Describe the water cycle in two sentences.",
           "Name a yellow fruit and describe it.", "What is the capital of France? Explain briefly."]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=64)
    a = ap.parse_args()
    chats = [[{"role": "user", "content": p}] for p in PROMPTS[: a.prompts]]
    params = SampleParams(temperature=0.8, top_p=0.9, max_tokens=a.max_tokens)

    with LlamaCppEngine(n_ctx=2048) as eng:
        eng.sample(chats[:1], 1, params, seeds=[[0]])  # warm-up
        t = time.perf_counter()
        out = eng.sample(chats, a.n, params, top_logprobs=5, seeds=[[i * 100 + j for j in range(a.n)] for i in
                                                                     range(len(chats))])
        critlab_s = time.perf_counter() - t
        critlab_tok = sum(len(s.tokens) for row in out for s in row)

    def baseline(logprobs: bool) -> tuple[float, int]:
        llm = load_llama(default_model_path(), 2048, logits_all=logprobs)
        tokens, t0 = 0, time.perf_counter()
        for i, chat in enumerate(chats):
            for j in range(a.n):
                r = llm.create_chat_completion(messages=chat, temperature=0.8, top_p=0.9, max_tokens=a.max_tokens,
                                               seed=i * 100 + j, logprobs=logprobs or None,
                                               top_logprobs=5 if logprobs else None)
                tokens += r["usage"]["completion_tokens"]
        elapsed = time.perf_counter() - t0
        llm.close()
        return elapsed, tokens

    lp_s, lp_tok = baseline(True)
    plain_s, plain_tok = baseline(False)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; {len(chats)} prompts x n={a.n}, "
          f"max_tokens={a.max_tokens}")
    rows = [("critlab sample (logprobs, top-5, exact self-certainty)", critlab_s, critlab_tok),
            ("A: llama-cpp-python built-in logprobs (logits_all)", lp_s, lp_tok),
            ("B: llama-cpp-python, no logprobs", plain_s, plain_tok)]
    for name, s, tok in rows:
        print(f"{name:<58} {tok:5d} tokens {s:7.2f} s {tok / s:7.1f} tok/s")
    print(f"critlab vs A (same per-token data): {(critlab_tok / critlab_s) / (lp_tok / lp_s):.2f}x tok/s")
    print(f"critlab vs B (plain text ceiling):  {(critlab_tok / critlab_s) / (plain_tok / plain_s):.2f}x tok/s")


if __name__ == "__main__":
    main()
