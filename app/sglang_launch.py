"""`critlab serve --launch-sglang MODEL`: start an SGLang server (or sglang-router with data-parallel
workers) as a child process, wait until it is healthy, and stop it, with its whole process tree, when
critlab exits.

The server listens on a free 127.0.0.1 port and requires a random API key, so other local users'
programs cannot use it through HTTP. The key reaches SGLang in a config file (`--config`, mode 0600 in a
private temporary folder, removed when the server stops), not on the command line, which every local
user can read in the process list; sglang-router (dp > 1) reads no config file, so there it is still
on the command line. Its output goes to a log file with the key masked; the key is never logged or
printed. The child runs with SGLANG_RETURN_ORIGINAL_LOGPROB=1, so sampled-token logprobs are raw
(not temperature-scaled) and comparable across temperatures.

    with SGLangLauncher("Qwen/Qwen2.5-7B-Instruct", tp=2, log_path="/data/sglang-{port}.log") as server:
        engine = SGLangEngine(server.url, api_key=server.api_key, raw_logprobs=True)
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Self

import httpx

from app import proctree
from app.private_files import create_private

SERVER_MODULE = "sglang.launch_server"
ROUTER_MODULE = "sglang_router.launch_server"
MASK = "***"
_TAIL_LINES = 20
# Flags critlab sets itself; a user's --sglang-arg repeating one would silently fight it.
_MANAGED_FLAGS = frozenset({
    "--model-path", "--model", "--host", "--port", "--api-key", "--config", "--tp-size", "--tp", "--tensor-parallel-size",
    "--dp-size", "--dp", "--data-parallel-size", "--router-api-key", "--router-dp-worker-base-port",
    "--router-worker-startup-timeout-secs", "--router-prometheus-host", "--router-prometheus-port"})
# sglang_router.launch_server logs each worker's port as it starts it (the port it probes may differ
# from the base port it was given).
_WORKER_PORT = re.compile(r"Launching DP server process 0 on port (\d+)")



def new_api_key() -> str:
    """A fresh key for the launched server. Hex, not url-safe base64: SGLang's argparse reads a key that
    starts with "-" as an option and the server exits ("--api-key: expected one argument").

    >>> keys = [new_api_key() for _ in range(2000)]
    >>> all(len(k) == 48 and not k.startswith("-") for k in keys) and len(set(keys)) == 2000
    True
    """
    return secrets.token_hex(24)

def write_key_config(key: str) -> Path:
    """A new SGLang config file holding only the API key: mode 0600, in a new folder only this user may
    enter. SGLang (0.5.23, `--config`) turns each YAML key into the flag of that name, so the key is
    `api-key`; its value is quoted (JSON's string is YAML's too), so a key of digits such as "0123…" stays text."""
    folder = Path(tempfile.mkdtemp(prefix="critlab-sglang-"))  # mode 0700
    path = folder / "config.yaml"
    create_private(path, f"api-key: {json.dumps(key)}\n".encode())
    return path


class SGLangLaunchError(RuntimeError):
    """The launched SGLang server failed to start; the message says why and where its log is."""


# ---------------------------------------------------------------------------------------------------------
# Reading a failed start-up from the log

_DIAGNOSES: list[tuple[str, re.Pattern[str], str]] = [
    # SGLang's own check that the weights left room for a KV cache (pool_configurator.py)
    ("kv-cache", re.compile(r"Not enough memory\. Please try to increase --mem-fraction-static"),
     ("the model's weights left no GPU memory for SGLang's KV cache. Give SGLang a larger share of GPU memory "
      "(--sglang-arg='--mem-fraction-static 0.9'), spread the model over more GPUs (--tp 2), or use a smaller "
      "model")),
    ("oom", re.compile(r"CUDA out of memory|OutOfMemoryError|CUDA error: out of memory", re.IGNORECASE),
     ("the GPU ran out of memory (CUDA out of memory). Use a smaller model, more GPUs per copy (--tp 2), or "
      "give SGLang a smaller share of GPU memory so activations fit (--sglang-arg='--mem-fraction-static 0.8')")),
    ("model", re.compile(r"RepositoryNotFoundError|Repository Not Found|GatedRepoError|LocalEntryNotFoundError|"
                         r"HFValidationError|is not a local folder and is not a valid model identifier|"
                         r"does not appear to have a file named config\.json|Can't load the configuration of",
                         re.IGNORECASE),
     ("the model {model!r} was not found: it is neither a local model directory nor a Hugging Face model id "
      "this machine can download (check the spelling; gated or private models need HF_TOKEN or "
      "`huggingface-cli login`; without network access the model must already be in the Hugging Face cache)")),
    # Not SGLang's "Port N is already in use, trying port N+1": that one it recovers from by itself.
    ("port", re.compile(r"Address already in use|\[Errno 98\]|Port is already in use|"
                        r"port \d+ is already in use(?!, trying)|at \d+ is not available", re.IGNORECASE),
     "a port SGLang needs is already in use (another server on this machine?)"),
    ("gpu", re.compile(r"No CUDA GPUs are available|Found no NVIDIA driver|CUDA driver initialization failed",
                       re.IGNORECASE),
     ("no usable GPU: SGLang needs an NVIDIA GPU with a working driver (check nvidia-smi and "
      "CUDA_VISIBLE_DEVICES); without one use the embedded engine (critlab serve without --launch-sglang)")),
    ("missing", re.compile(r"No module named '?(sglang|sglang_router)\b"),
     "SGLang is not installed for {python}: pip install 'critlab[gpu]'"),
]


def diagnose(log_text: str, model: str = "", python: str = sys.executable) -> tuple[str, str, str] | None:
    """(kind, advice, the log line that shows it) for the first known failure in `log_text`, or None.

    The last matching line wins within a kind (a traceback ends with its cause), kinds in the order
    above (an out-of-memory crash often also prints an unrelated warning)."""
    lines = log_text.splitlines()
    for kind, pattern, advice in _DIAGNOSES:
        hits = [line.strip() for line in lines if pattern.search(line)]
        if hits:
            return kind, advice.format(model=model, python=python), hits[-1][:500]
    return None


def tail(path: Path, lines: int = _TAIL_LINES, max_bytes: int = 64 * 1024) -> str:
    """The last `lines` non-blank lines of a log file ('' if unreadable)."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - max_bytes))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    # tqdm progress bars rewrite one line with \r: keep what a terminal would show last
    shown = [line.rsplit("\r", 1)[-1] for line in text.split("\n")]
    return "\n".join([line for line in shown if line.strip()][-lines:])


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _pump(src: IO[bytes], log_path: Path, secret: bytes) -> None:
    """Copy the child's output to the log line by line, masking the API key (SGLang prints its server
    arguments, key included, at start-up)."""
    with log_path.open("ab") as out:
        for line in iter(src.readline, b""):
            out.write(line.replace(secret, MASK.encode()))
            out.flush()
    src.close()


# ---------------------------------------------------------------------------------------------------------
# The launcher

class SGLangLauncher:
    """An SGLang server (dp == 1: `python -m sglang.launch_server`) or sglang-router with `dp` workers
    (`python -m sglang_router.launch_server`), started by `start()` / `with`, stopped by `stop()`.

    `log_path` may contain `{port}`. `timeout`: seconds to wait for health, model download and loading
    included. `env`: the child's base environment (default: this process's). `announce` receives
    progress lines for a person (start, ready, stopping). `attempts`: starts to try when the port picked
    was taken by someone else in the meantime."""

    def __init__(self, model: str, tp: int = 1, dp: int = 1, extra_args: Sequence[str] = (),
                 log_path: str | Path = "sglang-{port}.log", timeout: float = 1800.0, python: str = sys.executable,
                 module: str | None = None, *, env: Mapping[str, str] | None = None, grace: float = 10.0,
                 announce: Callable[[str], None] | None = None, attempts: int = 3) -> None:
        if not model.strip():
            raise ValueError("--launch-sglang needs a model: a Hugging Face id or a local model directory")
        if tp < 1 or dp < 1:
            raise ValueError(f"--tp and --dp must be at least 1 (got --tp {tp} --dp {dp})")
        for arg in extra_args:
            flag = arg.split("=", 1)[0]
            if flag in _MANAGED_FLAGS:
                raise ValueError(f"--sglang-arg {arg}: critlab sets {flag} itself (the model is the "
                                 "--launch-sglang value; use --tp / --dp for parallelism)")
        self.model, self.tp, self.dp = model, tp, dp
        self.extra_args = list(extra_args)
        self.module = module or (ROUTER_MODULE if dp > 1 else SERVER_MODULE)
        self.python = python
        self.timeout = timeout
        self.grace = grace
        self.attempts = max(1, attempts)
        self._log_template = str(log_path)
        self._env = dict(os.environ if env is None else env)
        self._announce = announce or (lambda _msg: None)
        self._api_key = ""
        self.port = 0
        self.worker_base_port = 0
        self._metrics_port = 0
        self._worker_port = 0
        self.log_path: Path | None = None
        self.config_path: Path | None = None  # the key's file (dp == 1), while the server runs
        self.proc: subprocess.Popen[bytes] | None = None
        self._pump: threading.Thread | None = None

    def __repr__(self) -> str:  # no key
        return f"SGLangLauncher(model={self.model!r}, tp={self.tp}, dp={self.dp}, url={self.url!r})"

    # --- what callers use ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_key(self) -> str:
        return self._api_key

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def worker_url(self) -> str | None:
        """With dp > 1, the first worker's URL: the router does not route /tokenize, and answers
        /get_server_info and /v1/models itself (no context length, no server args)."""
        if self.dp == 1:
            return None
        if not self._worker_port and self.log_path:
            try:
                with self.log_path.open("rb") as f:
                    found = _WORKER_PORT.search(f.read(1 << 20).decode(errors="replace"))
            except OSError:
                found = None
            self._worker_port = int(found.group(1)) if found else 0
        return f"http://127.0.0.1:{self._worker_port or self.worker_base_port}"

    def command(self) -> list[str]:
        """The child's command line (with dp > 1 it holds the API key: never log it, use display_command())."""
        cmd = [self.python, "-m", self.module, "--model-path", self.model, "--host", "127.0.0.1",
               "--port", str(self.port)]
        if self.dp == 1:
            cmd += ["--config", str(self.config_path)]
        else:
            # sglang_router.launch_server parses its arguments without reading --config (sglang-router
            # 0.3.2): a config file would leave the workers without a key.
            cmd += ["--api-key", self._api_key]
        cmd += ["--tp-size", str(self.tp)]
        if self.dp > 1:
            # Worker flags are plain, router flags carry --router- (reference §6.3). The router's own key
            # is what clients must send; the workers' key is what the router sends them.
            # Its metrics default to 0.0.0.0:29000: keep them local, on a port no other launch holds.
            cmd += ["--dp-size", str(self.dp), "--router-api-key", self._api_key,
                    "--router-dp-worker-base-port", str(self.worker_base_port),
                    "--router-worker-startup-timeout-secs", str(max(1, int(self.timeout))),
                    "--router-prometheus-host", "127.0.0.1", "--router-prometheus-port", str(self._metrics_port)]
        return cmd + self.extra_args

    def display_command(self) -> str:
        shown = [MASK if self._api_key and a == self._api_key else a for a in self.command()]
        return shlex.join(["python", *shown[1:]])

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- start / stop -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the server and wait until it answers /health; on any failure (or Ctrl+C) it is stopped
        again and SGLangLaunchError says why."""
        for attempt in range(1, self.attempts + 1):
            try:
                self._spawn()
                self._wait_healthy()
                self._announce(f"SGLang is ready at {self.url} (PID {self.pid}).")
                return
            except _PortTaken as exc:
                self.stop()
                if attempt == self.attempts:
                    raise SGLangLaunchError(str(exc)) from None
                self._announce("A port SGLang needed was taken meanwhile; retrying on another port.")
            except BaseException:
                self.stop()
                raise

    def stop(self) -> None:
        """Stop the server and every process it started (idempotent)."""
        proc, self.proc = self.proc, None
        if proc is None:
            self._remove_config()  # written before a start that failed
            return
        if proc.poll() is None:
            self._announce(f"Stopping SGLang (PID {proc.pid}) ...")
        proctree.terminate_tree(proc, self.grace)
        self._remove_config()
        if self._pump is not None:
            self._pump.join(timeout=2)  # the log is complete once every writer has exited

    def _remove_config(self) -> None:
        path, self.config_path = self.config_path, None
        if path is not None:
            shutil.rmtree(path.parent, ignore_errors=True)

    def _spawn(self) -> None:
        self._api_key = new_api_key()
        self._remove_config()  # an earlier attempt's
        if self.dp == 1:
            self.config_path = write_key_config(self._api_key)
        self.port = free_port()
        self.worker_base_port = free_port() if self.dp > 1 else 0
        self._metrics_port = free_port() if self.dp > 1 else 0
        self._worker_port = 0
        self.log_path = Path(self._log_template.format(port=self.port)).expanduser().resolve()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.write_text(f"# started by critlab: {self.display_command()}\n")
        env = dict(self._env)
        env.pop("CRITLAB_SGLANG_API_KEY", None)  # critlab's own client key is no business of the server
        env.update(SGLANG_RETURN_ORIGINAL_LOGPROB="1", PYTHONUNBUFFERED="1")
        try:
            self.proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                env=env, start_new_session=True, close_fds=True,
                # Safe despite threads: it only makes two system calls (prctl, getppid), takes no lock.
                preexec_fn=proctree.die_with_parent())  # noqa: PLW1509
        except OSError as exc:
            raise SGLangLaunchError(f"cannot run {self.python}: {exc}") from exc
        assert self.proc.stdout is not None
        self._pump = threading.Thread(target=_pump, args=(self.proc.stdout, self.log_path, self._api_key.encode()),
                                      name=f"sglang-log-{self.port}", daemon=True)
        self._pump.start()
        self._announce(f"Starting SGLang (PID {self.proc.pid}): {self.display_command()}\n"
                       f"  log: {self.log_path}\n"
                       f"  waiting up to {self.timeout:g} s for it to load the model ...")

    def _health_urls(self) -> list[str]:
        # The co-launched router serves before its workers are up; the first worker is also the one the
        # engine tokenizes on, so it must be healthy too.
        urls = [f"{self.url}/health"]
        worker = self.worker_url
        return urls + [f"{worker}/health"] if worker else urls

    def _wait_healthy(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.timeout
        headers = {"Authorization": f"Bearer {self._api_key}"}
        with httpx.Client(headers=headers) as client:
            while True:
                code = self.proc.poll()
                if code is not None:
                    raise self._exit_error(code)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._timeout_error()
                # /health takes about 1 s on a real server (a 1-token probe) and answers 503 while loading
                if all(_healthy(client, u, min(30.0, max(1.0, left))) for u in self._health_urls()):
                    return
                time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))

    # --- errors -------------------------------------------------------------------------------------

    def _log_end(self) -> tuple[str, tuple[str, str, str] | None]:
        """The last log lines to show, and what they say went wrong (searched further back: SGLang's
        processes print more tracebacks while they shut down after the one that matters)."""
        if self._pump is not None:
            self._pump.join(timeout=2)  # let the last lines (the traceback) reach the file
        if self.log_path is None:
            return "", None
        return tail(self.log_path), diagnose(tail(self.log_path, 500, 256 * 1024), self.model, self.python)

    def _exit_error(self, code: int) -> Exception:
        text, found = self._log_end()
        what = f"the SGLang server for {self.model!r} exited with code {code} while starting"
        if found and found[0] == "port":
            return _PortTaken(f"{what}: {found[1]}.\n  {found[2]}\nFull log: {self.log_path}")
        if found:
            return SGLangLaunchError(f"{what}: {found[1]}.\n  {found[2]}\nFull log: {self.log_path}")
        return SGLangLaunchError(f"{what}. Last lines of its log:\n{_indent(text)}\nFull log: {self.log_path}")

    def _timeout_error(self) -> SGLangLaunchError:
        text, found = self._log_end()
        hint = f" It logged: {found[1]}.\n  {found[2]}\n" if found else \
            f" Last lines of its log:\n{_indent(text)}\n"
        return SGLangLaunchError(
            f"the SGLang server for {self.model!r} did not become healthy within {self.timeout:g} s "
            f"({self.url}/health).{hint}Full log: {self.log_path}\nIf it was still downloading or loading the "
            "model, raise --sglang-timeout.")


class _PortTaken(SGLangLaunchError):
    pass


def _healthy(client: httpx.Client, url: str, timeout: float) -> bool:
    try:
        return client.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines()) or "  (the log is empty)"
