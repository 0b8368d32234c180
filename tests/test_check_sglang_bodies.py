"""scripts/check_sglang_bodies.py finds what SGLang 0.5.23 refuses. It runs inside .venv-sglang (SGLang's pins
conflict with the test extras), so this runs under `make check-sglang`, which names that interpreter in
CRITLAB_SGLANG_PYTHON; elsewhere it is skipped, like the other checks that need SGLang itself."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

SGLANG_PYTHON = os.environ.get("CRITLAB_SGLANG_PYTHON")
SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "check_sglang_bodies.py"

OK = {"input_ids": [1, 2, 3], "sampling_params": {"max_new_tokens": 2, "sampling_seed": 5}, "return_logprob": True}
ROUTER_FIELDS = {"model": None, "log_metrics": True, "return_hidden_states": False, "background": False,
                 "no_logs": False, "return_bytes": False, "return_entropy": False}


def _run(tmp_path: Path, entries: list[dict]) -> subprocess.CompletedProcess[str]:
    if not SGLANG_PYTHON:
        pytest.skip("needs SGLang 0.5.23's interpreter (make check-sglang sets CRITLAB_SGLANG_PYTHON)")
    log = tmp_path / "bodies.jsonl"
    log.write_text("".join(json.dumps(e) + "\n" for e in entries))
    return subprocess.run([SGLANG_PYTHON, str(SCRIPT), str(log), "--vocab-size", "100"], capture_output=True,
                          text=True, timeout=600)


def test_the_checker_reports_what_sglang_refuses(tmp_path: Path) -> None:
    def gen(body: dict, status: int = 200, source: str = "critlab") -> dict:
        return {"path": "/generate", "source": source, "status": status, "body": body}

    bad_top_p = {**OK, "sampling_params": {"max_new_tokens": 2, "top_p": 0}}
    entries = [
        gen(OK),                                                                              # line 1: fine
        gen(bad_top_p),                                                                       # 2: verify()
        gen({**OK, "sampling_params": {"max_new_tokens": 2, "max_tokens": 2}}),              # 3: contract
        gen(bad_top_p, status=400),                                                           # 4: refused on purpose
        gen({**OK, **ROUTER_FIELDS}, source="router"),                                        # 5: fine
        gen({**OK, "token_ids_logprob": [7, 100]}),                                           # 6: out of vocab
        gen({"input_ids": [[1, 2], [1, 3]], "sampling_params": [{"n": 2}, {"n": 1}]}),        # 7: normalisation
        {"path": "/tokenize", "source": "critlab", "status": 200, "body": {"add_special_tokens": False}},  # 8
        {"path": "/tokenize", "source": "critlab", "status": 200,                             # 9: fine
         "body": {"messages": [{"role": "user", "content": "hi"}], "add_generation_prompt": True}},
    ]
    run = _run(tmp_path, entries)
    assert run.returncode == 1, run.stdout + run.stderr
    failed = run.stdout.split("FAILED", 1)[1]
    assert "line 2 /generate" in failed and "top_p must be in (0, 1], got 0" in failed
    assert "line 3 /generate" in failed and "unknown field `max_tokens`" in failed
    assert "line 6 /generate" in failed and "out-of-vocabulary token id 100" in failed
    assert "line 7 /generate" in failed and "parallel_sample_num should be the same" in failed
    assert "line 8 /tokenize" in failed and "Exactly one of 'prompt' or 'messages'" in failed
    for fine in ("line 1 ", "line 4 ", "line 5 ", "line 9 "):
        assert fine not in failed
    assert "refused by the stand-in and by SGLang alike: 1" in run.stdout
    assert "NOT GenerateReqInput fields, from router: model -- GenerateReqInput(**body) raises TypeError" in run.stdout
    assert "fields the router added (in all its bodies, in no direct one): background, log_metrics, model, " \
           "no_logs, return_bytes, return_entropy, return_hidden_states" in run.stdout


def test_an_empty_log_fails(tmp_path: Path) -> None:
    run = _run(tmp_path, [])
    assert run.returncode == 1 and "holds no request body" in run.stdout, run.stdout + run.stderr
