"""Cost of self-scoring on the embedded engine: every target ratio of issue 14 §4 from one run.

`--prompts` sample prompts × `--n` sampled responses. Printed, each with the load average at the time:

(a) checklist items read prefill-only (P(Yes) from one prefill per chat, `next_token_probs`) against
    a naive baseline that lets the model *write* its answer: greedy, max_tokens=8, one request at a
    time, the same chats. Target: naive / prefill-only >= 5.
(b) the same prefill-only reads against the bound "prefill each unique token once": the reads'
    prompts as token lists, their unique tokens counted as the nodes of a prefix tree (a token counts
    once however many reads share the prefix up to it), and those tokens prefilled in full chunks of
    the engine's batch size from an empty cache, logits at each chunk's end only. Target: <= 1.5.
(c) every method that only reads (no `sample` call: checklist items with the written checklist,
    p_true, judge_score, pairwise, selectors, stored token statistics) together, against the time it
    took to sample the responses. Target: <= 1.
(d) tokens per second inside `sample` of each generating method (checklist writing, critique, rubric,
    gsa; generation capped at --gen-tokens, one sample per response), prompt prefill included, against
    plain sampling's (the better of the response sampling and a repeat of it after the methods).
    Target: >= 0.67 each.

Prefill-only passes and the naive baseline alternate `--repeats` times, best kept (the machine is
shared; load that hits one pass only would otherwise decide the ratio).

Usage: python bench/scoring_cost.py [--prompts 3] [--n 3] [--max-tokens 64] [--gen-tokens 64] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from backend.engines.base import Sample, SampleParams  # noqa: E402
from backend.engines.llamacpp import LlamaCppEngine  # noqa: E402
from backend.methods.base import ChecklistItemInput, Method, MethodInput, ResponseInput  # noqa: E402
from backend.methods.checklist import ChecklistMethod  # noqa: E402
from backend.methods.registry import get_method, method_ids  # noqa: E402
from backend.token_stats import token_stats  # noqa: E402

GENERATING = ("checklist", "critique", "rubric", "gsa")


def load() -> str:
    return "load %.1f" % os.getloadavg()[0]


class Metered:
    """The engine, with the time spent in each call kind and the tokens `sample` generated."""

    def __init__(self, engine: LlamaCppEngine) -> None:
        self._engine = engine
        self.seconds: dict[str, float] = {}
        self.generated = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._engine, name)
        if name not in ("sample", "next_token_probs", "score_response", "count_tokens"):
            return attr

        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            out = attr(*args, **kwargs)
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t
            if name == "sample":
                self.generated += sum(len(s.tokens) for row in out for s in row)
            return out
        return timed


def unique_tokens(seqs: list[list[int]]) -> list[list[int]]:
    """Per sequence, its tokens that no earlier sequence has at the same prefix (prefix-tree nodes).

    >>> unique_tokens([[1, 2, 3], [1, 2, 4], [1, 5], [1, 2, 3]])
    [[1, 2, 3], [4], [5], []]
    """
    root: dict[int, dict] = {}
    out = []
    for seq in seqs:
        node, new = root, []
        for tok in seq:
            if tok not in node:
                node[tok] = {}
                new.append(tok)
            node = node[tok]
        out.append(new)
    return out


def best_of(repeats: int, *passes: Callable[[], object]) -> list[float]:
    """Run the passes alternately `repeats` times; each one's best time."""
    best = [float("inf")] * len(passes)
    for _ in range(repeats):
        for i, p in enumerate(passes):
            t = time.perf_counter()
            p()
            best[i] = min(best[i], time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=3)
    ap.add_argument("--n", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=64, help="length cap of the sampled responses")
    ap.add_argument("--gen-tokens", type=int, default=64, help="length cap of the generating methods")
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    lines = resources.files("app.data").joinpath("sample_prompts.jsonl").read_text().splitlines()
    prompts = [json.loads(x) for x in lines][: a.prompts]
    chats = [p.get("messages") or [{"role": "user", "content": p["prompt"]}] for p in prompts]
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; {len(chats)} prompts x n={a.n}, responses "
          f"<= {a.max_tokens} tokens, generating methods <= {a.gen_tokens} tokens; {load()}")

    with LlamaCppEngine(n_ctx=4096) as eng:
        t = time.perf_counter()
        eng.sample(chats[:1], 1, SampleParams(max_tokens=4), seeds=[[0]])
        eng.next_token_probs(chats[:1], "", ["Yes"])
        print(f"warm-up (first sample + first read): {time.perf_counter() - t:.2f} s")

        t = time.perf_counter()
        samples = eng.sample(chats, a.n, SampleParams(temperature=0.8, top_p=0.9, max_tokens=a.max_tokens),
                             seeds=[[i * 10 + j for j in range(a.n)] for i in range(len(chats))])
        sampling_s = time.perf_counter() - t
        sampled = sum(len(s.tokens) for row in samples for s in row)
        plain_tps = sampled / sampling_s
        print(f"sampling the responses: {sampling_s:.2f} s, {sampled} tokens, {plain_tps:.1f} tok/s; {load()}")
        info = eng.info()

        def inputs(checklists: list[list[str]] | None = None) -> list[MethodInput]:
            out = []
            for i, (chat, row) in enumerate(zip(chats, samples)):
                rs = [ResponseInput(id=j, text=s.text, **_stats(s, info.logprob_mode).model_dump())
                      for j, s in enumerate(row)]
                items = [ChecklistItemInput(id=k, question=q) for k, q in enumerate(checklists[i])] if checklists \
                    else []
                out.append(MethodInput(prompt_id=i, prompt_external_id=str(i), messages=chat, seed=i,
                                       responses=rs, checklist=items))
            return out

        # (d) generating methods, between two plain sampling passes (the better rate is the reference)
        checklists: list[list[str]] = []
        rates: dict[str, float] = {}
        for mid in GENERATING:
            method = _capped(get_method(mid), a.gen_tokens)
            meter = Metered(eng)
            for inp in inputs():
                result = method.run(inp, meter)  # type: ignore[arg-type]
                if mid == "checklist":
                    checklists.append(result.checklist or ["Does the response answer the request?"])
            s = meter.seconds.get("sample", 0.0)
            rates[mid] = meter.generated / s if s else 0.0
            print(f"{mid} generating: {meter.generated} tokens in {s:.2f} s; {load()}")
        t = time.perf_counter()
        again = eng.sample(chats, a.n, SampleParams(temperature=0.8, top_p=0.9, max_tokens=a.max_tokens),
                           seeds=[[i * 10 + j for j in range(a.n)] for i in range(len(chats))])
        again_tps = sum(len(s.tokens) for row in again for s in row) / (time.perf_counter() - t)
        plain_tps = max(plain_tps, again_tps)
        print(f"\n(d) generating methods, tok/s inside sample() vs plain sampling's {plain_tps:.1f} (the better of "
              f"the passes before and after them: {sampled / sampling_s:.1f}, {again_tps:.1f}; target >= 0.67)")
        for mid, tps in rates.items():
            print(f"  {mid:<10} {tps:5.1f} tok/s = {tps / plain_tps:.2f}x plain")

        # (c) every method that only reads
        print(f"\n(c) methods that only read, against sampling the responses ({sampling_s:.2f} s; target <= 1x)")
        read_total = 0.0
        for mid in method_ids():
            if mid in GENERATING and mid != "checklist":
                continue
            meter = Metered(eng)
            t = time.perf_counter()
            for inp in inputs(checklists):
                get_method(mid).run(inp, meter)  # type: ignore[arg-type]
            s = time.perf_counter() - t
            if meter.generated or meter.seconds.get("sample"):
                print(f"  {mid:<18} generated text: not a read-only method, left out")
                continue
            read_total += s
            label = "checklist (items)" if mid == "checklist" else mid
            print(f"  {label:<18} {s:6.2f} s")
        print(f"  together: {read_total:.2f} s = {read_total / sampling_s:.2f}x sampling; {load()}")

        # (a) and (b): the checklist items, prefill-only against naive and against the bound
        method = ChecklistMethod()
        judge_inputs = inputs(checklists)
        chats_read = [method.judge_chat(inp.question, r.text, q)
                      for inp, qs in zip(judge_inputs, checklists) for r in inp.responses for q in qs]
        seqs = eng._worker.submit(lambda: [eng._prompt(c) + eng._tokenize(method.answer_prefix)
                                           for c in chats_read], 0).result()
        fresh = unique_tokens(seqs)
        stream = [tok for new in fresh for tok in new]

        def prefill_only() -> None:
            for inp, qs in zip(judge_inputs, checklists):
                method.judge_items(inp, eng, qs)

        def naive() -> None:
            for c in chats_read:
                eng.sample([c], 1, SampleParams(temperature=0.0, max_tokens=8), top_logprobs=5, seeds=[[0]])

        def bound() -> None:
            def run() -> None:
                for lo in range(0, len(stream), eng._chunk):
                    eng._kv.clear()
                    eng._ctx.kv_cache_clear()
                    chunk = stream[lo:lo + eng._chunk]
                    eng._feed(chunk, len(chunk) - 1)
            eng._worker.submit(run, 0).result()

        critlab_s, naive_s, bound_s = best_of(a.repeats, prefill_only, naive, bound)
        reads = len(chats_read)
        print(f"\n{reads} checklist reads over {sum(map(len, seqs))} prompt tokens, {len(stream)} unique; {load()}")
        print(f"  prefill-only reads:          {critlab_s:6.2f} s ({critlab_s / reads * 1000:.0f} ms/read)")
        print(f"  naive, greedy max_tokens=8:  {naive_s:6.2f} s ({naive_s / reads * 1000:.0f} ms/read)")
        print(f"  bound, unique tokens once:   {bound_s:6.2f} s ({bound_s / max(len(stream), 1) * 1000:.1f} ms/token)")
        print(f"(a) naive / prefill-only = {naive_s / critlab_s:.2f}x (target >= 5)")
        print(f"(b) prefill-only / bound = {critlab_s / bound_s:.2f}x (target <= 1.5)")
        tuner = getattr(eng, "_tuner", None)
        if tuner is not None:
            print("decode ms per token (+2) by thread count: " + "; ".join(
                f"{kind}: " + ", ".join(f"{t} -> {r * 1000:.1f}" for t, r in sorted(rates.items()))
                for kind, rates in tuner.rates().items()))


def _stats(s: Sample, logprob_mode: str) -> Any:
    return token_stats(s.tokens, vocab_size=None, logprob_mode=logprob_mode)


def _capped(method: Method, tokens: int) -> Method:
    """The method with its generation length capped and one sample per response (the rate, not the
    length or the count, is measured)."""
    for attr in ("max_tokens", "max_new_tokens"):
        if hasattr(method, attr):
            setattr(method, attr, min(getattr(method, attr), tokens))
    if hasattr(method, "samples"):
        method.samples = 1  # type: ignore[attr-defined]
    return method


if __name__ == "__main__":
    main()
