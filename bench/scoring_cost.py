"""Cost of checklist self-scoring: prefill-only reads against a model that writes its answers.

10 prompts × 4 samples × the model's own checklist (TICK). critlab reads P(Yes) for every
(response, item) from one prefill per chat, all chats of a prompt in one batch so the shared prefix
is reused. The naive baseline asks the same question and lets the model *write* its answer (greedy,
up to 4 tokens), one request at a time, then parses Yes/No. Both run on the embedded engine in this
process, on the same chats. Printed: both times, the ratio, and each as a fraction of the time it
took to sample the responses.

Usage: python bench/scoring_cost.py [--prompts 10] [--n 4] [--max-tokens 96] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from importlib import resources

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from backend.engines.base import SampleParams  # noqa: E402
from backend.engines.llamacpp import LlamaCppEngine  # noqa: E402
from backend.methods.base import MethodInput, ResponseInput  # noqa: E402
from backend.methods.checklist import ChecklistMethod  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=10)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=2, help="alternating repetitions of both passes (best kept)")
    a = ap.parse_args()
    lines = resources.files("app.data").joinpath("sample_prompts.jsonl").read_text().splitlines()
    prompts = [json.loads(x) for x in lines][: a.prompts]
    chats = [p.get("messages") or [{"role": "user", "content": p["prompt"]}] for p in prompts]
    method = ChecklistMethod()

    with LlamaCppEngine(n_ctx=4096) as eng:
        t = time.perf_counter()
        samples = eng.sample(chats, a.n, SampleParams(temperature=0.8, top_p=0.9, max_tokens=a.max_tokens),
                             seeds=[[i * 10 + j for j in range(a.n)] for i in range(len(chats))])
        sampling_s = time.perf_counter() - t

        t = time.perf_counter()
        checklists = []
        for i, chat in enumerate(chats):
            inp = MethodInput(prompt_id=i, prompt_external_id=str(i), messages=chat, seed=i, responses=[])
            questions, _ = method.write_checklist(inp, eng)
            checklists.append(questions or ["Does the response answer the request?"])
        writing_s = time.perf_counter() - t
        reads = sum(len(q) * a.n for q in checklists)

        def critlab_pass() -> None:
            for i, chat in enumerate(chats):
                inp = MethodInput(prompt_id=i, prompt_external_id=str(i), messages=chat, seed=i,
                                  responses=[ResponseInput(id=j, text=s.text) for j, s in enumerate(samples[i])])
                method.judge_items(inp, eng, checklists[i])

        def naive_pass() -> int:
            parsed = 0
            for i, chat in enumerate(chats):
                question = chat[-1]["content"]
                for s in samples[i]:
                    for item in checklists[i]:
                        c = method.judge_chat(question, s.text, item)
                        out = eng.sample([c], 1, SampleParams(temperature=0.0, max_tokens=4), seeds=[[0]])[0][0]
                        parsed += out.text.strip().lower().startswith(("yes", "no"))
            return parsed

        # Alternate the two passes and keep each one's best time: the machine is shared, and load that
        # hits one pass only would otherwise decide the ratio.
        critlab_times, naive_times = [], []
        for _ in range(a.repeats):
            t = time.perf_counter()
            critlab_pass()
            critlab_times.append(time.perf_counter() - t)
            t = time.perf_counter()
            parsed = naive_pass()
            naive_times.append(time.perf_counter() - t)
        critlab_s, naive_s = min(critlab_times), min(naive_times)

    print(f"{len(chats)} prompts x {a.n} samples (max {a.max_tokens} tokens); {reads} (response, item) reads "
          f"over checklists of {min(map(len, checklists))}-{max(map(len, checklists))} items")
    print(f"sampling the responses:                     {sampling_s:7.2f} s")
    print(f"writing the checklists (once per prompt):   {writing_s:7.2f} s")
    print(f"critlab prefill-only batched P(Yes) reads:  {critlab_s:7.2f} s  ({critlab_s / reads * 1000:.0f} ms/read, "
          f"{critlab_s / sampling_s:.1%} of sampling time)")
    print(f"naive: the model writes Yes/No, one by one: {naive_s:7.2f} s  ({naive_s / reads * 1000:.0f} ms/read, "
          f"{naive_s / sampling_s:.1%} of sampling time; {parsed}/{reads} parseable)")
    print(f"speed-up: {naive_s / critlab_s:.2f}x")


if __name__ == "__main__":
    main()
