"""SGLang client throughput and CPU cost against the stand-in server with a fixed latency.

The SGLang stand-in (tests/standin_sglang.py, not SGLang, no model) runs in a separate process with a
fixed 200 ms delay on every /generate request and no limit on concurrency, so an ideal client that keeps
`concurrency` requests in flight finishes concurrency / 0.2 s requests per second. The workload is what the
scoring service issues for P(True): the real method run on one prompt with 4 responses (its context check
tokenizes the 4 chats, then one prefill-only `next_token_probs` call reads A/B at "The proposed answer
is: ("), i.e. one /generate request with 4 items and `max_new_tokens: 0`. `--requests` such runs are made
from `concurrency` caller threads through one SGLangEngine (its default concurrency unless --concurrency),
with a local tokenizer (the stand-in's toy vocabulary as a Hugging Face tokenizer directory), so the chat
template and tokenization count as client work; their share is measured apart and printed too.

Baseline, in the same process and with the same concurrency: a plain httpx loop posting the very same
request bodies (captured from the stand-in's request log, so already tokenized) and decoding the JSON.

Printed per run: wall time, requests/s, the fraction of the ideal, client CPU per request
(time.process_time of this process; the server is another process), the most requests the server saw
in flight, and the load average (the machine is shared). Then critlab / baseline ratios.

Usage: python bench/sglang_client.py [--requests 2000] [--concurrency N] [--latency 0.2] [--repeats 2]
                                      [--profile FILE]   (python -m pstats FILE to read it)
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the stand-in lives in tests/, which is not an installed package

from backend.engines.sglang import SGLangEngine
from backend.methods.base import MethodInput, ResponseInput
from backend.methods.p_true import PTrue
from tests.standin_sglang import write_hf_tokenizer_dir

RESPONSES = 4


@dataclass
class Run:
    name: str
    requests: int
    wall_s: float
    cpu_s: float
    max_inflight: int
    load: tuple[float, float, float]

    def line(self, concurrency: int, latency: float) -> str:
        rate = self.requests / self.wall_s
        ideal = concurrency / latency
        return (f"{self.name:<22} {self.requests:>6} {self.wall_s:>7.2f} {rate:>8.1f} {rate / ideal:>7.3f} "
                f"{1000 * self.cpu_s / self.requests:>9.3f} {self.max_inflight:>9} "
                f"{'/'.join(f'{x:.2f}' for x in self.load):>16}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_standin(latency: float) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tests.standin_sglang", "--port", str(port),
                             "--delay", str(latency)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("the stand-in did not start")
        time.sleep(0.1)


def _inputs(count: int, offset: int, context_length: int) -> list[MethodInput]:
    """`count` distinct prompts with RESPONSES responses each, questions from the bundled sample study."""
    lines = resources.files("app.data").joinpath("sample_prompts.jsonl").read_text().splitlines()
    questions = [json.loads(x) for x in lines if x.strip()]
    out = []
    for i in range(offset, offset + count):
        q = questions[i % len(questions)]
        messages = q.get("messages") or [{"role": "user", "content": q["prompt"]}]
        messages = [*messages[:-1], {**messages[-1], "content": f"({i}) {messages[-1]['content']}"}]
        out.append(MethodInput(
            prompt_id=i, prompt_external_id=str(i), messages=messages, seed=i, context_length=context_length,
            responses=[ResponseInput(id=j, text=f"Answer {j} to {i}: " + "the answer is good because it is "
                                     "correct " * 4) for j in range(RESPONSES)]))
    return out


def _timed(name: str, url: str, control: httpx.Client, work: Callable[[], Any], requests: int) -> Run:
    control.post(f"{url}/_standin/reset").raise_for_status()
    load = os.getloadavg()
    cpu, wall = time.process_time(), time.perf_counter()
    work()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    stats = control.get(f"{url}/_standin/stats").json()
    if stats["generate_requests"] != requests:
        print(f"  ! {name}: the server saw {stats['generate_requests']} /generate requests, not {requests}")
    return Run(name, requests, wall, cpu, stats["max_inflight"], load)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=None, help="default: SGLangEngine's own default")
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--repeats", type=int, default=2, help="alternating critlab / baseline runs")
    ap.add_argument("--profile", default=None, help="write a cProfile of one critlab run to this file")
    a = ap.parse_args()

    proc, url = _start_standin(a.latency)
    control = httpx.Client(timeout=60)
    try:
        tok = write_hf_tokenizer_dir(Path(tempfile.mkdtemp()) / "tokenizer")
        kw = {"concurrency": a.concurrency} if a.concurrency else {}
        engine = SGLangEngine(url, tokenizer_path=str(tok), **kw)
        conc = engine.concurrency
        ctx_len = engine.info().context_length
        inputs = _inputs(a.requests, 0, ctx_len)
        method = PTrue()

        def critlab(initializer: Callable[[], None] | None = None) -> None:
            engine._chat_cache.clear()  # every run tokenizes its chats afresh, as scoring new responses does
            with ThreadPoolExecutor(conc, thread_name_prefix="caller", initializer=initializer) as pool:
                results = list(pool.map(lambda inp: method.run(inp, engine), inputs))
            bad = sum(1 for r in results for v in r.verdicts if v.status != "ok")
            if len(results) != a.requests or bad:
                print(f"  ! critlab: {len(results)} results, {bad} failed verdicts")

        with ThreadPoolExecutor(conc) as pool:  # connections, template, candidate ids: not part of the figure
            list(pool.map(lambda inp: method.run(inp, engine), _inputs(2 * conc, a.requests, ctx_len)))

        # The share of the chat template and the (toy) tokenizer, measured apart on fresh chats.
        chats = [chat for inp in _inputs(200, 10 * a.requests, ctx_len) for _, chat, _ in method.prompts(inp)]
        t = time.process_time()
        for chat in chats:
            engine.count_tokens(chat)
        tokenize_ms = 1000 * (time.process_time() - t) / (len(chats) / RESPONSES)

        # The baseline posts exactly what critlab sent (captured once, outside the timing).
        control.post(f"{url}/_standin/reset").raise_for_status()
        critlab()
        bodies = [r["json"] for r in control.get(f"{url}/_standin/requests", params={"path": "/generate"}).json()]
        base_client = httpx.Client(timeout=120, limits=httpx.Limits(max_connections=conc + 4,
                                                                    max_keepalive_connections=conc + 4))

        def baseline() -> None:
            def post(body: dict[str, Any]) -> Any:
                resp = base_client.post(f"{url}/generate", json=body)
                resp.raise_for_status()
                return resp.json()

            with ThreadPoolExecutor(conc, thread_name_prefix="baseline") as pool:
                results = list(pool.map(post, bodies))
            if len(results) != len(bodies):
                print(f"  ! baseline: {len(results)} results")

        list(ThreadPoolExecutor(conc).map(lambda b: base_client.post(f"{url}/generate", json=b), bodies[:conc]))

        print(f"SGLang client vs the stand-in: {a.requests} prefill-only P(True) requests ({RESPONSES} items each), "
              f"{a.latency * 1000:.0f} ms server latency, concurrency {conc}, ideal {conc / a.latency:.1f} req/s")
        print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, httpx {httpx.__version__}, "
              f"mean body {sum(len(json.dumps(b)) for b in bodies) / len(bodies) / 1024:.1f} KiB, "
              f"{sum(len(x) for b in bodies for x in b['input_ids']) / len(bodies) / RESPONSES:.0f} tokens per item")
        print(f"{'run':<22} {'reqs':>6} {'wall s':>7} {'req/s':>8} {'ideal':>7} {'CPU ms/req':>9} "
              f"{'inflight':>9} {'load 1/5/15 min':>16}")
        runs: dict[str, list[Run]] = {"critlab": [], "baseline": []}
        for i in range(a.repeats):
            for name, work, n in (("critlab", critlab, a.requests), ("baseline", baseline, len(bodies))):
                run = _timed(f"{name} #{i + 1}", url, control, work, n)
                runs[name].append(run)
                print(run.line(conc, a.latency), flush=True)
        best = {k: min(v, key=lambda r: r.wall_s) for k, v in runs.items()}
        cpu = {k: min(r.cpu_s / r.requests for r in v) for k, v in runs.items()}
        c, b = best["critlab"], best["baseline"]
        print(f"best critlab: {c.requests / c.wall_s / (conc / a.latency):.3f} of ideal; "
              f"throughput critlab / baseline = {(c.requests / c.wall_s) / (b.requests / b.wall_s):.3f}; "
              f"CPU per request critlab / baseline = {cpu['critlab'] / cpu['baseline']:.2f} "
              f"({1000 * cpu['critlab']:.2f} vs {1000 * cpu['baseline']:.2f} ms)")
        print(f"of critlab's CPU per request, chat template + tokenization (toy tokenizer, measured apart): "
              f"{tokenize_ms:.2f} ms")
        print(f"load average after: {'/'.join(f'{x:.2f}' for x in os.getloadavg())}")

        if a.profile:  # CPU time (thread_time) of every caller thread, merged
            profilers: list[cProfile.Profile] = []

            def profiled() -> None:
                profilers.append(cProfile.Profile(time.thread_time))
                profilers[-1].enable()

            control.post(f"{url}/_standin/reset").raise_for_status()
            critlab(profiled)
            pstats.Stats(*profilers).dump_stats(a.profile)
            print(f"CPU profile of one critlab run (caller threads) written to {a.profile}")
        engine.close()
        base_client.close()
    finally:
        control.close()
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
