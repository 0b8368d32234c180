"""A FAKE `python -m sglang.launch_server` / `python -m sglang_router.launch_server` for
tests/test_sglang_launch.py. It parses the real launch flags (strictly: an unknown flag fails as it would
with SGLang) and serves the stand-in HTTP API of tests/standin_sglang.py. It is NOT SGLang and runs no model.

The tests write `sglang/launch_server.py` and `sglang_router/launch_server.py` into a temporary directory
on the child's PYTHONPATH; each calls `main("server")` or `main("router")`.

Environment:
  FAKE_SGLANG_MODE  ok (default) | oom | missing-model | port-in-use | never-healthy | ignore-sigterm
  FAKE_SGLANG_PIDS  a file to write {"server": pid, "grandchild": pid[, "worker": pid], "hf_hub_offline": ...}
                    to before it serves

Like SGLang the server reads `--config FILE.yaml` (the router parses the flag and ignores it, as
sglang_router does). Like SGLang it prints its parsed arguments, API key included (`server_args=ServerArgs(...)`), so the tests
can check that critlab masks the key in the log. Like SGLang it starts helper processes (here one sleeping
grandchild); the router starts its worker in a process group of its own, as sglang_router does (setpgrp).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import uvicorn

from tests.standin_sglang import make_app


def _parser(router: bool) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sglang_router.launch_server" if router else "sglang.launch_server")
    p.add_argument("--model-path", "--model", dest="model_path", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=30000)
    p.add_argument("--api-key")
    p.add_argument("--tp-size", "--tp", "--tensor-parallel-size", dest="tp_size", type=int, default=1)
    p.add_argument("--dp-size", "--dp", "--data-parallel-size", dest="dp_size", type=int, default=1)
    p.add_argument("--mem-fraction-static", type=float)
    p.add_argument("--context-length", type=int)
    p.add_argument("--served-model-name")
    p.add_argument("--enable-deterministic-inference", action="store_true")
    p.add_argument("--config")  # both parse it; only the server reads the file (see _merge_config)
    if router:
        p.add_argument("--router-api-key")
        p.add_argument("--router-dp-worker-base-port", type=int, default=31000)
        p.add_argument("--router-policy", default="cache_aware")
        p.add_argument("--router-worker-startup-timeout-secs", type=int, default=600)
        p.add_argument("--router-prometheus-host", default="0.0.0.0")
        p.add_argument("--router-prometheus-port", type=int, default=29000)
    return p


def _serve(port: int, host: str, **options: Any) -> None:
    app = make_app(**options)
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, http="h11", lifespan="off", log_level="warning",
                                  timeout_graceful_shutdown=1)).run()


def _options(args: argparse.Namespace, api_key: str | None, router: bool = False, **extra: Any) -> dict[str, Any]:
    return dict(api_key=api_key, router=router, model_id=args.served_model_name or args.model_path,
                deterministic=args.enable_deterministic_inference,
                return_original_logprob=os.environ.get("SGLANG_RETURN_ORIGINAL_LOGPROB") == "1",
                context_length=args.context_length or 4096, **extra)


def _sleeper(new_group: bool = False) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=new_group)


def _write_pids(pids: dict[str, Any]) -> None:
    path = os.environ.get("FAKE_SGLANG_PIDS")
    if path:
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump(pids, f)
        os.replace(tmp, path)  # readers never see half a file


def worker(port: int, api_key: str) -> None:
    """A data-parallel worker: a plain (non-router) stand-in server."""
    _serve(port, "127.0.0.1", api_key=api_key)


def _merge_config(argv: list[str]) -> list[str]:
    """What sglang.launch_server does with `--config FILE.yaml` (0.5.23, ConfigArgumentMerger): each YAML
    key becomes the flag of that name (`api-key: K` -> `--api-key K`), placed before the command line's
    own arguments, which therefore win. sglang_router.launch_server does not call it."""
    import yaml

    if "--config" not in argv:
        return argv
    i = argv.index("--config")
    with open(argv[i + 1]) as f:
        config = yaml.safe_load(f) or {}
    extra = [item for key, value in config.items() for item in (f"--{key}", str(value))]
    return extra + argv[:i] + argv[i + 2:]


def main(kind: str) -> None:
    router = kind == "router"
    argv = sys.argv[1:] if router else _merge_config(sys.argv[1:])
    args = _parser(router).parse_args(argv)
    print(f"server_args=ServerArgs(model_path={args.model_path!r}, host={args.host!r}, port={args.port}, "
          f"api_key={args.api_key!r}, tp_size={args.tp_size}, dp_size={args.dp_size})", flush=True)
    mode = os.environ.get("FAKE_SGLANG_MODE", "ok")
    if mode == "oom":
        print("Loading weights ...\nTraceback (most recent call last):\n  File \"model_runner.py\", line 1, in load\n"
              "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity "
              "of 23.64 GiB of which 1.02 GiB is free.", file=sys.stderr, flush=True)
        # SGLang's other processes then report their own shutdown, burying the cause under more lines
        for i in range(40):
            print(f"[2026-11-27 12:00:{i:02d}] Received sigquit from a child process. It usually means the child "
                  "failed.", file=sys.stderr, flush=True)
        sys.exit(1)
    if mode == "missing-model":
        print("huggingface_hub.errors.RepositoryNotFoundError: 404 Client Error. Repository Not Found for url: "
              f"https://huggingface.co/api/models/{args.model_path}/revision/main.", file=sys.stderr, flush=True)
        sys.exit(1)
    if mode == "port-in-use":
        print("OSError: [Errno 98] Address already in use", file=sys.stderr, flush=True)
        sys.exit(1)
    if mode == "ignore-sigterm":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    grandchild = _sleeper()
    pids: dict[str, Any] = {"server": os.getpid(), "grandchild": grandchild.pid,
                            "hf_hub_offline": os.environ.get("HF_HUB_OFFLINE")}
    options = _options(args, args.router_api_key if router else args.api_key, router=router,
                       health_503_times=10**9 if mode == "never-healthy" else 0)
    if router:
        port = args.router_dp_worker_base_port
        print(f"[Router (Python)] Launching DP server process 0 on port {port}", file=sys.stderr, flush=True)
        code = f"from tests.fake_sglang_server import worker; worker({port}, {args.api_key!r})"
        pids["worker"] = subprocess.Popen([sys.executable, "-c", code], start_new_session=True).pid
    _write_pids(pids)
    _serve(args.port, args.host, **options)
    if mode == "ignore-sigterm":
        time.sleep(300)
