"""`critlab serve --launch-sglang`: process management of app/sglang_launch.py against a FAKE
`sglang.launch_server` (tests/fake_sglang_server.py: the real launch flags, the stand-in HTTP API, no model).

What is real here: the child processes, their process groups, signals, the log file, the health wait, the
HTTP API key check, and the SGLangEngine talking to the launched server. What is not: SGLang itself (no
GPU, no model), so the failure messages are matched against log lines written the way SGLang and PyTorch
write them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app import lockfile, proctree
from app.sglang_launch import SGLangLauncher, SGLangLaunchError, diagnose, tail
from backend.engines.base import SampleParams
from backend.engines.sglang import SGLangEngine

REPO = Path(__file__).resolve().parent.parent
CHAT = [{"role": "user", "content": "Is Paris the capital of France?"}]

pytestmark = pytest.mark.skipif(not proctree.LINUX, reason="process-tree checks read /proc (Linux)")


@pytest.fixture(scope="module")
def fake_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory that, on PYTHONPATH, makes `python -m sglang.launch_server` (and the router's) the fake."""
    root = tmp_path_factory.mktemp("fake-sglang")
    for package, kind in (("sglang", "server"), ("sglang_router", "router")):
        (root / package).mkdir()
        (root / package / "__init__.py").write_text("")
        (root / package / "launch_server.py").write_text(textwrap.dedent(f"""\
            from tests.fake_sglang_server import main

            if __name__ == "__main__":
                main({kind!r})
            """))
    return root


def _env(fake_dir: Path, pid_file: Path, mode: str = "ok") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "CRITLAB_DB")}
    env.update(PYTHONPATH=f"{fake_dir}{os.pathsep}{REPO}", FAKE_SGLANG_MODE=mode, FAKE_SGLANG_PIDS=str(pid_file))
    return env


def _wait(condition: Callable[[], Any], what: str, limit: float = 30.0) -> Any:
    """Poll until `condition()` is truthy; the limit only keeps a broken run from hanging."""
    deadline = time.monotonic() + limit
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def _pids(pid_file: Path) -> dict[str, Any]:
    return json.loads(pid_file.read_text())


def _launcher(tmp_path: Path, fake_dir: Path, mode: str = "ok", **kw: Any) -> SGLangLauncher:
    kw.setdefault("timeout", 30.0)
    return SGLangLauncher("fake/model", env=_env(fake_dir, tmp_path / "pids.json", mode),
                          log_path=tmp_path / "sglang-{port}.log", grace=kw.pop("grace", 5.0), **kw)


@pytest.fixture
def reap() -> Iterator[list[int]]:
    """pids a test may leave behind on failure (or on purpose): killed afterwards, so no run leaks them."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if proctree.alive(pid):
            os.kill(pid, signal.SIGKILL)


# --- start, health, engine, key, shutdown --------------------------------------------------------------

def test_launched_server_serves_the_engine_behind_its_key_and_stops_with_its_children(
        tmp_path: Path, fake_dir: Path, reap: list[int]) -> None:
    launcher = _launcher(tmp_path, fake_dir)
    with launcher:
        pids = _pids(tmp_path / "pids.json")
        reap += [pids["server"], pids["grandchild"]]
        assert launcher.pid == pids["server"] and proctree.alive(pids["grandchild"])
        assert launcher.log_path == tmp_path / f"sglang-{launcher.port}.log"
        assert launcher.url == f"http://127.0.0.1:{launcher.port}"

        # The child demands the random key on everything but /health.
        assert httpx.get(f"{launcher.url}/get_model_info").status_code == 401
        assert httpx.get(f"{launcher.url}/get_model_info", headers={"Authorization": "Bearer wrong"}).status_code \
            == 401
        # It got SGLANG_RETURN_ORIGINAL_LOGPROB=1 (the stand-in reports what it read from its environment).
        options = httpx.post(f"{launcher.url}/_standin/config", json={}).json()
        assert options["return_original_logprob"] is True and options["api_key"] == launcher.api_key

        with SGLangEngine(launcher.url, api_key=launcher.api_key, raw_logprobs=True) as engine:
            info = engine.info()
            assert (info.engine, info.model_id, info.logprob_mode) == ("sglang", "fake/model", "raw")
            [[sample]] = engine.sample([CHAT], 1, SampleParams(max_tokens=6, seed=3), top_logprobs=2)
            assert sample.finish_reason in ("stop", "length") and sample.tokens
            [probs] = engine.next_token_probs([CHAT], "", ["Yes", "No"])
            assert set(probs) == {"Yes", "No"} and 0 < sum(probs.values()) <= 1 + 1e-9

        key = launcher.api_key
        log = launcher.log_path.read_text()
        assert "server_args=ServerArgs(" in log and "api_key='***'" in log  # SGLang prints its args: masked
        assert log.startswith("# started by critlab: python -m sglang.launch_server --model-path fake/model ")
        assert f"--config {launcher.config_path} " in log.splitlines()[0]
        assert key not in log and key not in launcher.display_command() and key not in repr(launcher)

    assert launcher.proc is None
    for name in ("server", "grandchild"):
        assert not proctree.alive(pids[name]), f"{name} (pid {pids[name]}) outlived the launcher"
    assert key not in launcher.log_path.read_text()


def test_the_key_is_in_a_private_config_file_not_in_the_process_list(tmp_path: Path, fake_dir: Path,
                                                                      reap: list[int]) -> None:
    """Issue 13: `--api-key KEY` on SGLang's command line showed the key to every local user (`ps`). It is
    now in a 0600 file in a private folder, passed as `--config FILE`, and removed when the server stops."""
    launcher = _launcher(tmp_path, fake_dir)
    with launcher:
        pids = _pids(tmp_path / "pids.json")
        reap += [pids["server"], pids["grandchild"]]
        key = launcher.api_key
        for pid in (pids["server"], pids["grandchild"]):  # what `ps` shows
            assert key.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
        config = launcher.config_path
        assert config is not None and key not in launcher.command()
        assert Path(f"/proc/{pids['server']}/cmdline").read_bytes().split(b"\0")[-5:-3] == [
            b"--config", str(config).encode()]
        assert config.read_text() == f'api-key: "{key}"\n'
        st, folder = config.lstat(), config.parent.lstat()
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.getuid()
        assert stat.S_IMODE(folder.st_mode) == 0o700 and folder.st_uid == os.getuid()
        assert list(config.parent.iterdir()) == [config]  # the key and nothing else
        # The server took the key from the file: it refuses other keys and serves this one.
        headers = {"Authorization": f"Bearer {key}"}
        assert httpx.get(f"{launcher.url}/get_model_info").status_code == 401
        assert httpx.get(f"{launcher.url}/get_model_info", headers=headers).status_code == 200
    assert not config.parent.exists()


def test_sglangs_own_config_parser_reads_the_key() -> None:
    """SGLang's own `--config` merge (sglang/srt/utils/server_args_config_parser.py, loaded by path, so
    SGLang's other dependencies need not be importable here) turns the file into `--api-key KEY`.
    `make check-sglang` runs it against sglang 0.5.23 in .venv-sglang (CRITLAB_SGLANG_PACKAGE names that
    package directory; then it never skips). Otherwise skipped unless SGLang is installed here (it is not a
    test dependency: its pins conflict with the test extras)."""
    import argparse
    import importlib.util

    from app.sglang_launch import new_api_key, write_key_config

    package = os.environ.get("CRITLAB_SGLANG_PACKAGE")
    if not package:
        spec = importlib.util.find_spec("sglang")
        if spec is None or not spec.submodule_search_locations:
            pytest.skip("SGLang is not installed here (make check-sglang runs this against .venv-sglang)")
        package = next(iter(spec.submodule_search_locations))
    source = Path(package) / "srt" / "utils" / "server_args_config_parser.py"
    assert source.is_file(), f"{source} is missing: CRITLAB_SGLANG_PACKAGE must name SGLang's package directory"
    mod_spec = importlib.util.spec_from_file_location("sglang_config_parser", source)
    assert mod_spec is not None and mod_spec.loader is not None
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    parser = argparse.ArgumentParser()
    parser.add_argument("--api-key", type=str, default=None)  # as ServerArgs declares it (fields/serving.py)
    parser.add_argument("--port", type=int, default=30000)
    parser.add_argument("--config", type=str)
    # Unquoted, YAML would read a key of octal digits after a 0 as a number (and pass on other digits).
    for key in (new_api_key(), "01234567" * 6):
        path = write_key_config(key)
        try:
            argv = module.ConfigArgumentMerger(parser).merge_config_with_args(["--port", "1", "--config", str(path)])
            assert vars(parser.parse_args(argv)) == {"api_key": key, "port": 1, "config": None}
        finally:
            shutil.rmtree(path.parent)


def test_router_with_data_parallel_workers_in_their_own_process_groups(
        tmp_path: Path, fake_dir: Path, reap: list[int]) -> None:
    launcher = _launcher(tmp_path, fake_dir, dp=2, tp=2, grace=1.0)
    assert launcher.module == "sglang_router.launch_server"
    with launcher:
        pids = _pids(tmp_path / "pids.json")
        reap += [pids["server"], pids["grandchild"], pids["worker"]]
        assert launcher.worker_url == f"http://127.0.0.1:{launcher.worker_base_port}"
        # The router does not route /tokenize (404 in the stand-in's router mode); the worker does.
        assert httpx.post(f"{launcher.url}/tokenize", json={"prompt": "x"},
                          headers={"Authorization": f"Bearer {launcher.api_key}"}).status_code == 404
        with SGLangEngine(launcher.url, api_key=launcher.api_key, tokenize_url=launcher.worker_url) as engine:
            # behind the router: one request per sample (its typed body refuses a list of sampling_params)
            [samples] = engine.sample([CHAT], 2, SampleParams(max_tokens=4, seed=1), top_logprobs=0)
            assert [s.seed for s in samples] == [1, 2]
            assert all(s.finish_reason in ("stop", "length") for s in samples)
        assert os.getpgid(pids["worker"]) != os.getpgid(pids["server"])
    # The fake router, unlike the real one, leaves its worker running: the tree snapshot still gets it.
    for name in ("server", "grandchild", "worker"):
        assert not proctree.alive(pids[name]), f"{name} (pid {pids[name]}) outlived the launcher"


def test_a_server_that_ignores_sigterm_is_killed(tmp_path: Path, fake_dir: Path, reap: list[int]) -> None:
    with _launcher(tmp_path, fake_dir, mode="ignore-sigterm", grace=0.5):
        pids = _pids(tmp_path / "pids.json")
        reap += [pids["server"], pids["grandchild"]]
    assert not proctree.alive(pids["server"]) and not proctree.alive(pids["grandchild"])


# --- failures: one readable message naming the log ------------------------------------------------------

@pytest.mark.parametrize(("mode", "expected"), [
    ("oom", "the GPU ran out of memory (CUDA out of memory)"),
    ("missing-model", "the model 'fake/model' was not found"),
])
def test_a_crash_during_start_up_is_explained_from_the_log(tmp_path: Path, fake_dir: Path, mode: str,
                                                           expected: str) -> None:
    launcher = _launcher(tmp_path, fake_dir, mode=mode)
    with pytest.raises(SGLangLaunchError) as err:
        launcher.start()
    message = str(err.value)
    assert expected in message and "exited with code 1" in message
    assert f"Full log: {tmp_path}/sglang-" in message and launcher.log_path.is_file()
    assert launcher.proc is None


def test_a_port_taken_meanwhile_is_retried_then_reported(tmp_path: Path, fake_dir: Path) -> None:
    announced: list[str] = []
    launcher = _launcher(tmp_path, fake_dir, mode="port-in-use", attempts=2, announce=announced.append)
    with pytest.raises(SGLangLaunchError, match=r"(?s)a port SGLang needs is already in use.*Errno 98"):
        launcher.start()
    assert sum(line.startswith("Starting SGLang") for line in announced) == 2  # two tries, then the error
    assert sum("retrying on another port" in line for line in announced) == 1


def test_an_unrecognised_crash_shows_the_last_log_lines(tmp_path: Path, fake_dir: Path) -> None:
    launcher = _launcher(tmp_path, fake_dir, extra_args=["--no-such-flag"])
    with pytest.raises(SGLangLaunchError) as err:
        launcher.start()
    message = str(err.value)
    assert "exited with code 2" in message and "Last lines of its log" in message
    assert "unrecognized arguments: --no-such-flag" in message and str(launcher.log_path) in message


def test_a_server_that_never_becomes_healthy_times_out_and_is_stopped(tmp_path: Path, fake_dir: Path,
                                                                      reap: list[int]) -> None:
    launcher = _launcher(tmp_path, fake_dir, mode="never-healthy", timeout=1.5)
    with pytest.raises(SGLangLaunchError) as err:
        launcher.start()
    pids = _pids(tmp_path / "pids.json")
    reap += [pids["server"], pids["grandchild"]]
    message = str(err.value)
    assert "did not become healthy within 1.5 s" in message and "raise --sglang-timeout" in message
    assert str(launcher.log_path) in message
    assert not proctree.alive(pids["server"]) and not proctree.alive(pids["grandchild"])


def test_arguments_critlab_manages_are_refused() -> None:
    with pytest.raises(ValueError, match="critlab sets --port itself"):
        SGLangLauncher("m", extra_args=["--port=8000"])
    with pytest.raises(ValueError, match="--tp and --dp must be at least 1"):
        SGLangLauncher("m", tp=0)
    assert SGLangLauncher("m", dp=2).module == "sglang_router.launch_server"
    assert SGLangLauncher("m").module == "sglang.launch_server"


def test_diagnose_and_tail(tmp_path: Path) -> None:
    kv = diagnose("RuntimeError: Not enough memory. Please try to increase --mem-fraction-static.")
    assert kv[0] == "kv-cache" and "--mem-fraction-static 0.9" in kv[1]
    assert diagnose("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")[0] == "oom"
    # SGLang recovers from this one by itself: not a reason for a failed start
    assert diagnose("INFO Port 30000 is already in use, trying port 30001") is None
    assert diagnose("RuntimeError: nccl_port at 30005 is not available")[0] == "port"
    assert diagnose("ValueError: 'x/y' is not a local folder and is not a valid model identifier", "x/y")[0] \
        == "model"
    assert diagnose("ModuleNotFoundError: No module named 'sglang'")[0] == "missing"
    assert diagnose("RuntimeError: No CUDA GPUs are available")[0] == "gpu"
    assert diagnose("INFO: everything is fine") is None
    log = tmp_path / "x.log"
    log.write_bytes(b"a\n\nLoading  10%\rLoading 100%\nb\n")
    assert tail(log, 2) == "Loading 100%\nb"  # a progress bar shows as its last state


# --- critlab dies: the kernel stops the server -----------------------------------------------------------

def test_the_server_is_stopped_when_critlab_is_killed(tmp_path: Path, fake_dir: Path, reap: list[int]) -> None:
    env = _env(fake_dir, tmp_path / "pids.json")
    env["PYTHONPATH"] = f"{REPO}"  # the parent finds app; it hands the fake's path to the child through env=
    script = textwrap.dedent(f"""\
        import json, sys, time
        from app.sglang_launch import SGLangLauncher
        launcher = SGLangLauncher("fake/model", env=json.loads(sys.argv[1]), log_path={str(tmp_path)!r} + "/s-{{port}}.log")
        launcher.start()
        print("ready", flush=True)
        time.sleep(300)
        """)
    child_env = _env(fake_dir, tmp_path / "pids.json")
    parent = subprocess.Popen([sys.executable, "-c", script, json.dumps(child_env)], env=env, cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    reap.append(parent.pid)
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == "ready"
        pids = _pids(tmp_path / "pids.json")
        reap += [pids["server"], pids["grandchild"]]
        parent.kill()  # no cleanup code runs: only PR_SET_PDEATHSIG
        parent.wait()
        _wait(lambda: not proctree.alive(pids["server"]), "the server to die with its parent")
    finally:
        parent.kill()
        parent.wait()


# --- the CLI: SIGTERM / Ctrl+C leave no orphan -------------------------------------------------------------

_CLI_WITH_DEFAULT_SIGINT = ("import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
                            "runpy.run_module('app.cli', run_name='__main__', alter_sys=True)")


def test_critlab_serve_launch_sglang_stops_everything_on_sigterm_and_ctrl_c(
        tmp_path: Path, fake_dir: Path, reap: list[int]) -> None:
    # Both signals at once: two critlab processes start in parallel (each takes seconds to import the UI).
    from app.sglang_launch import free_port

    runs: dict[signal.Signals, tuple[Path, subprocess.Popen[str]]] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        home = tmp_path / sig.name
        home.mkdir()
        # Ctrl+C as in a terminal: SIGINT raising KeyboardInterrupt, even where this test run inherited it
        # ignored (a non-interactive shell starts background jobs so, and Python keeps that).
        cmd = [sys.executable, "-c", _CLI_WITH_DEFAULT_SIGINT, "serve", "--launch-sglang", "fake/model", "--db",
               str(home / "critlab.duckdb"), "--port", str(free_port()), "--sglang-timeout", "60",
               "--sglang-arg=--mem-fraction-static 0.8"]
        runs[sig] = home, subprocess.Popen(cmd, env=_env(fake_dir, home / "pids.json"), cwd=REPO, text=True,
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        reap.append(runs[sig][1].pid)
    outputs: dict[signal.Signals, str] = {}
    pids: dict[signal.Signals, dict[str, Any]] = {}
    try:
        for sig, (home, critlab) in runs.items():
            db = str(home / "critlab.duckdb")
            _wait(lambda: lockfile.read_lock(db) or critlab.poll() is not None, "critlab to serve", 90)  # noqa: B023
            assert critlab.poll() is None, critlab.communicate()
            pids[sig] = _pids(home / "pids.json")
            reap.extend([pids[sig]["server"], pids[sig]["grandchild"]])
            critlab.send_signal(sig)
        for sig, (_, critlab) in runs.items():
            outputs[sig] = critlab.communicate(timeout=60)[1]
    finally:
        for _, critlab in runs.values():
            critlab.kill()
    for sig, (home, critlab) in runs.items():
        errs = outputs[sig]
        assert "SGLang is ready" in errs and "Stopping SGLang" in errs, errs
        assert "--mem-fraction-static 0.8" in errs and "--api-key" not in errs
        config = Path(errs.split(" --config ", 1)[1].split()[0])  # the key's file: gone with the server
        assert config.name == "config.yaml" and not config.parent.exists()
        # critlab set HF_HUB_OFFLINE=1 for itself; the server must still be able to download its model.
        assert pids[sig]["hf_hub_offline"] is None
        assert lockfile.read_lock(str(home / "critlab.duckdb")) is None  # critlab itself shut down in order
        for name in ("server", "grandchild"):
            assert not proctree.alive(pids[sig][name]), f"{name} outlived critlab ({sig.name})"
        assert "api_key='***'" in next(home.glob("sglang-*.log")).read_text()
    assert runs[signal.SIGTERM][1].returncode == 128 + signal.SIGTERM
