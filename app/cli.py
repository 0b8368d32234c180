"""The `critlab` command line.

Every command works on one DuckDB file (`--db`, default ./critlab.duckdb or $CRITLAB_DB). While a
critlab server holds that file, commands are sent to the server's admin API (found through the
lock file beside the database), which runs the same service functions.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import time
from importlib import resources
from pathlib import Path
from typing import Any

import click

from app.cli_engine import EMBEDDED_FLAGS, dump_engine, embedded_model_options, engine_cfg, engine_options
from app.cli_export import add_export_commands
from app.cli_gold import add_gold_commands
from app.cli_people import add_people_commands
from app.cli_target import Local, Remote, _running_server, call, fail, target
from app.services.context import EngineConfig
from app.services.rate import LIVE_TOKEN_CAP, SUBMITS_PER_MINUTE
from backend.methods.registry import DEFAULT_METHODS
from storage.formats import FORMATS, WRITERS

DB_HELP = "DuckDB file (default ./critlab.duckdb, or $CRITLAB_DB)."


def db_option(fn):  # noqa: ANN001, ANN201
    return click.option("--db", "db_path", envvar="CRITLAB_DB", default="critlab.duckdb", show_default=True,
                        help=DB_HELP, type=click.Path(dir_okay=False))(fn)


class Duration(click.ParamType):
    """A length of time with a unit, e.g. 90m, 2h, 1d or 45s: seconds as a float.

    >>> Duration().convert("90m", None, None), Duration().convert("1.5h", None, None)
    (5400.0, 5400.0)
    """

    name = "DURATION"
    UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        text = str(value).strip().lower()
        try:
            seconds = float(text[:-1]) * self.UNITS[text[-1]]
        except (KeyError, ValueError, IndexError):
            self.fail(f"{value!r} is not a duration: give a number and a unit, e.g. 90m, 2h, 1d", param, ctx)
        if seconds < 60:
            self.fail(f"{value!r} is shorter than a minute", param, ctx)
        return seconds


def lineage_options(fn):  # noqa: ANN001, ANN201
    opts = [
        click.option("--parent-model", metavar="ID", default=None,
                     help="The model this run's model was trained from (an id `critlab models` lists): records "
                          "it as the next iteration of that model's family."),
        click.option("--trained-on-export", metavar="ID", type=click.IntRange(1), default=None,
                     help="The export run (id printed by `critlab export`) this run's model was trained on."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def session_options(fn):  # noqa: ANN001, ANN201
    opts = [
        click.option("--session-idle", envvar="CRITLAB_SESSION_IDLE", type=Duration(), default="2h", show_default=True,
                     help="Log a person out after this long without a request from their browser (e.g. 30m, 2h)."),
        click.option("--session-lifetime", envvar="CRITLAB_SESSION_LIFETIME", type=Duration(), default="12h",
                     show_default=True, help="Log a person out this long after they logged in, active or not."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


# -- commands ------------------------------------------------------------------------------------------
# critlab itself never downloads models and sets HF_HUB_OFFLINE=1 unless told otherwise; a server it
# launches must still be able to download its model, so only a value the user set is passed on to it.
_USER_HF_HUB_OFFLINE: str | None = None


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="critlab")
def main() -> None:
    """critlab: LLM self-critique studies in the browser.

    A model samples several responses per prompt; people label them side by side (best pick,
    1-7 ratings); critlab stores every judgment in one DuckDB file and exports preference data.

    \b
    Quick start:
      critlab demo                                   # sample study + embedded model + UI on :7860
      critlab import prompts prompts.jsonl --study s1
      critlab generate --study s1 --n 4
      critlab score --study s1 --methods p_true,checklist
      critlab annotators add alice --study s1        # an annotator who may label s1
      critlab serve                                  # then open http://127.0.0.1:7860
      critlab export dpo --study s1 --out pairs.jsonl
    """
    global _USER_HF_HUB_OFFLINE
    _USER_HF_HUB_OFFLINE = os.environ.get("HF_HUB_OFFLINE")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    # Everything critlab creates is for this user only: the database and its WAL (password hashes),
    # exports, backups, reports, the copies offered for download and Gradio's uploads.
    os.umask(0o077)


@main.group("import")
def import_group() -> None:
    """Import prompts into a study."""


@import_group.command("prompts")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--study", required=True, help="Study name (created if it does not exist).")
@click.option("--guidelines", type=click.Path(exists=True, dir_okay=False),
              help="Markdown file with the labelling guidelines shown beside each item.")
@click.option("--description", default="", help="One-line study description.")
@db_option
def import_prompts(file: str, study: str, guidelines: str | None, description: str, db_path: str) -> None:
    """Import prompts from FILE (JSONL, CSV or Parquet).

    Each record has `prompt` (text) or `messages` (a chat list of {role, content}); optional
    `id`, `reference` and `category`; other fields are kept as metadata. The whole file is
    checked first: any bad record stops the import with FILE:LINE and the field, and nothing is
    imported. Prompts longer than $CRITLAB_MAX_PROMPT_CHARS characters (default 32000) are refused.
    """
    r = call(db_path, "import_prompts", {"study": study, "path": os.path.abspath(file), "description": description,
                                         "guidelines_path": os.path.abspath(guidelines) if guidelines else None})
    click.echo(f"Imported {r['imported']} prompts into study {r['study']!r} ({r['total']} prompts in all).")


@main.command()
@click.option("--study", required=True, help="Study to sample responses for.")
@click.option("--n", default=4, show_default=True, type=click.IntRange(1, 8), help="Responses per prompt.")
@click.option("--temperature", default=0.8, show_default=True, type=click.FloatRange(0, 5))
@click.option("--top-p", default=0.9, show_default=True, type=click.FloatRange(0.0, 1.0, min_open=True))
@click.option("--max-tokens", default=256, show_default=True, type=click.IntRange(1, 32768))
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), help="Seed base (default: random, stored with the run).")
@click.option("--top-logprobs", default=5, show_default=True, type=click.IntRange(0, 20),
              help="Top-k alternatives stored per token for the confidence figures.")
@click.option("--new-run", is_flag=True, help="Start a second generation run with different settings.")
@lineage_options
@engine_options
@db_option
def generate(study: str, n: int, temperature: float, top_p: float, max_tokens: int, seed: int | None,
             top_logprobs: int, new_run: bool, parent_model: str | None, trained_on_export: int | None,
             db_path: str, **kw: Any) -> None:
    """Sample N responses per prompt of a study.

    Every generation belongs to a generation run that stores its settings and seed base. Rerun the
    same command to fill only what is missing (after a crash or a failed server); different
    settings need --new-run, so a study can hold several runs to compare (e.g. two temperatures).
    --parent-model and --trained-on-export record the model as a later iteration of another one
    (checked before the job starts: a known parent, an existing export run, no cycle).
    """
    engine = engine_cfg(kw)
    settings = {"n": n, "temperature": temperature, "top_p": top_p, "max_tokens": max_tokens, "seed": seed,
                "top_logprobs": top_logprobs}
    with target(db_path, engine) as t:
        job = t.op("generate", {"study": study, "settings": settings, "engine": dump_engine(engine),
                                "new_run": new_run, "parent_model": parent_model,
                                "trained_on_export": trained_on_export})
        job = _follow_job(t, job)
    if job["status"] != "done":
        fail(job["error"] or f"job {job['id']} {job['status']}")
    click.echo(f"Job {job['id']} done: {job['done']} / {job['total']} responses.")


def _follow_job(t: Remote | Local, job: dict[str, Any]) -> dict[str, Any]:
    """Show a progress bar until the job ends; returns its final state."""
    last = None
    while True:
        job = t.job(job["id"])
        frac = job["done"] / job["total"] if job["total"] else 1.0
        line = f"[{'#' * int(30 * frac):<30}] {job['done']}/{job['total']} {job['status']}"
        if line != last:
            click.echo("\r" + line, nl=False, err=True)
            last = line
        if job["status"] in ("done", "failed", "cancelled"):
            click.echo("", err=True)
            return job
        time.sleep(0.5)


def _format_help(formats: dict[str, tuple[str, str]]) -> str:
    return "; ".join(f"{name}: {what}" for name, (_, what) in formats.items())


@import_group.command("judgments")
@click.argument("file", type=click.Path(exists=True))  # a folder for --from argilla (Dataset.to_disk)
@click.option("--study", required=True, help="Study name (created if it does not exist).")
@click.option("--from", "fmt", type=click.Choice(list(FORMATS)), default="critlab", show_default=True,
              help=f"The file's format. {_format_help(FORMATS)}.")
@db_option
def import_judgments(file: str, study: str, fmt: str, db_path: str) -> None:
    """Import items with their responses and existing human and model judgments.

    critlab's own format: one item per line, `item_id`, `prompt` or `messages`, `responses`
    [{id, text, model}] and `judgments` (pairwise, likert, best_of_n, correct from people; any method
    id with a score or prob from models). Other tools' formats (--from) are mapped onto the same
    tables; what critlab has no column for is kept in metadata, and the summary counts what was
    mapped, kept aside and ignored. See docs/formats.md. The whole file is checked first; a bad
    record stops the import with FILE:LINE and the field, and nothing is imported.
    """
    r = call(db_path, "import_judgments", {"study": study, "path": os.path.abspath(file), "format": fmt})
    click.echo(r["message"])


@main.command()
@click.option("--study", required=True, help="Study whose responses the model judges.")
@click.option("--methods", default=None, metavar="IDS",
              help=f"Comma-separated method ids, or 'all' for every method (`critlab methods` lists them with "
                   f"their cost). Default: {', '.join(DEFAULT_METHODS)}.")
@lineage_options
@engine_options
@db_option
def score(study: str, methods: str | None, parent_model: str | None, trained_on_export: int | None,
          db_path: str, **kw: Any) -> None:
    """Let the model check, critique and score its own responses.

    Runs self-evaluation methods over every prompt that has responses. By default the methods
    that write no text (token confidence, self-certainty, majority and Borda votes, P(True),
    judge score: stored statistics and one prefill read per response); --methods all adds
    checklists, critiques, rubric scores, pairwise judgments with order swap, USC, brainstormed
    P(True) and aggregation, which generate text or read long prompts and take far longer.
    Idempotent and resumable: what is already stored for the same model, method version and
    responses is skipped, so rerun it after a failure or when new responses arrive.
    --parent-model / --trained-on-export link the judging model to its family as for `generate`.
    """
    from backend.methods.registry import parse_method_list

    try:
        parse_method_list(methods)
    except ValueError as e:
        fail(str(e))
    engine = engine_cfg(kw)
    with target(db_path, engine) as t:
        job = _follow_job(t, t.op("score", {"study": study, "methods": methods, "engine": dump_engine(engine),
                                            "parent_model": parent_model, "trained_on_export": trained_on_export}))
    if job["status"] != "done":
        fail(job["error"] or f"job {job['id']} {job['status']}")
    click.echo(job["message"])


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=7860, show_default=True, type=int)
@engine_options
@click.option("--launch-sglang", "launch_model", metavar="MODEL",
              help="Start an SGLang server for MODEL (Hugging Face id or local directory) on this machine's GPUs, "
                   "use it as the engine, and stop it on exit. Needs pip install 'critlab[gpu]'.")
@click.option("--tp", default=1, show_default=True, type=click.IntRange(1),
              help="With --launch-sglang: GPUs per model copy (tensor parallelism).")
@click.option("--dp", default=1, show_default=True, type=click.IntRange(1),
              help="With --launch-sglang: model copies behind sglang-router (data parallelism; uses tp x dp GPUs).")
@click.option("--sglang-arg", "sglang_args", multiple=True, metavar="ARGS",
              help="With --launch-sglang: more launch_server arguments, split like a shell line; repeatable, "
                   "e.g. --sglang-arg='--mem-fraction-static 0.8'.")
@click.option("--sglang-timeout", default=1800.0, show_default=True, type=click.FloatRange(min=1),
              help="With --launch-sglang: seconds to wait for the server to answer /health (model download and "
                   "loading included).")
@click.option("--submits-per-minute", default=SUBMITS_PER_MINUTE, show_default=True, type=click.IntRange(0),
              help="Labels one person may submit per minute (Label tab, Live, JSON API); more answer 429. "
                   "0: no limit.")
@click.option("--live-token-cap", default=LIVE_TOKEN_CAP, show_default=True, type=click.IntRange(0),
              help="Most tokens one Live generation may ask for (samples x max tokens); larger requests are "
                   "refused. Each person runs one Live generation at a time. 0: no cap.")
@click.option("--forwarded-allow-ips", metavar="IPS", default="",
              help="Behind a reverse proxy: the proxy addresses (comma-separated IPs or networks) whose "
                   "X-Forwarded-For and X-Forwarded-Proto critlab believes. Default: none, so the login rate "
                   "limit counts the address that connects.")
@session_options
@db_option
@click.pass_context
def serve(click_ctx: click.Context, host: str, port: int, db_path: str, launch_model: str | None, tp: int, dp: int,
          sglang_args: tuple[str, ...], sglang_timeout: float, submits_per_minute: int, live_token_cap: int,
          forwarded_allow_ips: str, session_idle: float, session_lifetime: float, **kw: Any) -> None:
    """Serve the web UI and JSON API.

    Log in with an account made by `critlab annotators add`. While the server runs it owns the
    database; other critlab commands on the same --db are sent to it. Sessions end on logging out, on
    a password reset or a disable, after --session-idle without a request and --session-lifetime
    after logging in.

    \b
    Engines:
      critlab serve                                  # embedded SmolLM2-135M on this CPU
      critlab serve --engine sglang --sglang-url http://gpu-box:30000    # a server run elsewhere
      critlab serve --launch-sglang Qwen/Qwen2.5-7B-Instruct --tp 2      # start SGLang here

    With --launch-sglang critlab starts `python -m sglang.launch_server` (with --dp > 1,
    sglang-router with dp workers) on a free 127.0.0.1 port with a random API key, logs it to
    sglang-PORT.log beside the database, waits for it to load, and stops it (and every process it
    started) when critlab exits. See docs/gpu.md.
    """
    web = {"forwarded_allow_ips": forwarded_allow_ips, "submits_per_minute": submits_per_minute,
           "live_token_cap": live_token_cap, "session_idle": session_idle, "session_lifetime": session_lifetime}
    if launch_model is None:
        if tp != 1 or dp != 1 or sglang_args:
            fail("--tp, --dp and --sglang-arg go with --launch-sglang MODEL")
        _serve(db_path, host, port, engine_cfg(kw) or EngineConfig(), **web)
        return
    if click_ctx.get_parameter_source("sglang_url") == click.core.ParameterSource.COMMANDLINE:
        fail("--launch-sglang starts its own server: drop --sglang-url")
    if kw["engine"] == "embedded":
        fail("--launch-sglang uses the sglang engine: drop --engine embedded")
    given = [k for k in EMBEDDED_FLAGS if click_ctx.get_parameter_source(k) == click.core.ParameterSource.COMMANDLINE]
    if given:
        fail(f"--{given[0].replace('_', '-')} is for the embedded engine, not --launch-sglang")
    try:
        extra = [arg for value in sglang_args for arg in shlex.split(value)]
    except ValueError as e:
        fail(f"--sglang-arg: {e}")
    _serve_launched(db_path, host, port, launch_model, tp, dp, extra, sglang_timeout, kw, web)


def _serve_launched(db_path: str, host: str, port: int, model: str, tp: int, dp: int, extra: list[str],
                    timeout: float, kw: dict[str, Any], web: dict[str, Any]) -> None:
    from app.sglang_launch import SGLangLauncher, SGLangLaunchError
    from backend.engines.sglang import API_KEY_ENV

    # What would stop critlab from serving is checked before minutes of model loading, not after.
    running = _running_server(db_path)
    if running:
        fail(f"{db_path} is already served by critlab (PID {running.pid}) at {running.url}")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as e:
            fail(f"cannot listen on {host}:{port} ({e.strerror}); choose another --port")
    env = dict(os.environ)
    if _USER_HF_HUB_OFFLINE is None:
        env.pop("HF_HUB_OFFLINE", None)
    try:
        launcher = SGLangLauncher(model, tp, dp, extra, timeout=timeout, env=env,
                                  log_path=Path(db_path).resolve().parent / "sglang-{port}.log",
                                  announce=lambda msg: click.echo(msg, err=True))
    except ValueError as e:
        fail(str(e))
    _exit_on_termination()
    try:
        with launcher:
            # The engine reads its key from the environment (never from stored settings).
            os.environ[API_KEY_ENV] = launcher.api_key
            engine = EngineConfig(engine="sglang", sglang_url=launcher.url,
                                  sglang_tokenize_url=kw["sglang_tokenize_url"] or launcher.worker_url,
                                  sglang_tokenizer=kw["sglang_tokenizer"], sglang_model_id=kw["sglang_model_id"],
                                  sglang_raw_logprobs=True)
            _serve(db_path, host, port, engine, **web,
                   banner=f"Engine: SGLang serving {model} (tp={tp}, dp={dp}), log {launcher.log_path}")
    except SGLangLaunchError as e:
        fail(str(e))


# How long an idle HTTP connection stays open. uvicorn's 5 s equals httpx's own idle expiry, so a client could
# reuse a connection in the instant the server closed it and get no answer (seen under load with 16 annotators);
# longer than the 60 s idle timeout of common proxies (nginx, AWS load balancers), so they close first.
KEEP_ALIVE_SECONDS = 65


def _exit_on_termination() -> None:
    """SIGTERM / SIGHUP end critlab like Ctrl+C does: by unwinding, so `with` blocks (the launched SGLang
    server) clean up. uvicorn handles them itself while it serves, then re-raises them once it has shut
    down, which lands here too."""
    def leave(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, leave)
    signal.signal(signal.SIGHUP, leave)


def _serve(db_path: str, host: str, port: int, engine: EngineConfig, on_start=None, banner: str = "",  # noqa: ANN001
           forwarded_allow_ips: str = "", submits_per_minute: int = SUBMITS_PER_MINUTE,
           live_token_cap: int = LIVE_TOKEN_CAP, session_idle: float | None = None,
           session_lifetime: float | None = None) -> None:
    import shutil

    import uvicorn

    from app.auth import Sessions, load_or_create_key
    from app.private_files import UntrustedFileError
    from storage.annotators import TEST_ONLY_N_ENV

    running = _running_server(db_path)
    if running:
        fail(f"{db_path} is already served by critlab (PID {running.pid}) at {running.url}")
    try:
        timeouts = {k: v for k, v in (("idle", session_idle), ("lifetime", session_lifetime)) if v is not None}
        sessions = Sessions(load_or_create_key(db_path), **timeouts)
    except (UntrustedFileError, RuntimeError) as e:
        fail(str(e))
    if os.environ.get(TEST_ONLY_N_ENV):
        click.secho(f"Warning: {TEST_ONLY_N_ENV} is set: new password hashes are weaker than they should be. "
                    "It is meant for test suites only.", fg="yellow", err=True)
    gradio_dir = _private_gradio_dir()
    _exit_on_termination()  # SIGTERM unwinds too, so the folder is removed below
    try:
        from app.server import create_app

        ctx = Local(db_path, engine).ctx
        ctx.db.on_fatal = _stop_on_fatal
        url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
        app = create_app(ctx, sessions=sessions, url=url, on_start=(lambda: on_start(ctx)) if on_start else None,
                         submits_per_minute=submits_per_minute, live_token_cap=live_token_cap)
        click.echo(f"critlab serving {os.path.abspath(db_path)} at {url}  (Ctrl+C to stop)")
        if banner:
            click.echo(banner)
        # uvicorn believes X-Forwarded-For from 127.0.0.1 unless told otherwise: then anyone on this machine
        # could pick the address the login rate limit counts. Only the proxies named are believed.
        uvicorn.run(app, host=host, port=port, timeout_graceful_shutdown=2, log_level="warning",
                    timeout_keep_alive=KEEP_ALIVE_SECONDS,
                    proxy_headers=bool(forwarded_allow_ips), forwarded_allow_ips=forwarded_allow_ips or "")
    finally:
        shutil.rmtree(gradio_dir, ignore_errors=True)


def _stop_on_fatal(why: str) -> None:
    """The database is unusable and reopening it did not help (storage/db.py): say why and stop, as on
    SIGTERM (the server shuts down in order and critlab exits with 143), instead of failing every request."""
    click.secho(f"critlab: stopping: {why}", fg="red", err=True)
    os.kill(os.getpid(), signal.SIGTERM)


def _private_gradio_dir() -> str:
    """A new folder only this user can open (mode 0700, a name nobody could have made in advance) for
    Gradio's uploads (downloads have their own, app/services/downloads.py). Gradio's default, <tmp>/gradio, is shared by every user of the
    machine: another could create it first and read or swap the files. Under $GRADIO_TEMP_DIR when set.
    Gradio reads the variable when it is imported, so this runs before app.server imports it."""
    import tempfile

    parent = os.environ.get("GRADIO_TEMP_DIR") or None
    if parent:
        os.makedirs(parent, mode=0o700, exist_ok=True)
    folder = tempfile.mkdtemp(prefix="critlab-gradio-", dir=parent)
    os.environ["GRADIO_TEMP_DIR"] = folder
    return folder


@main.command()
@click.option("--port", default=7860, show_default=True, type=int)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--n", default=4, show_default=True, type=click.IntRange(1, 8), help="Responses per prompt.")
@click.option("--max-tokens", default=256, show_default=True, type=click.IntRange(1, 4096))
@embedded_model_options
@db_option
def demo(port: int, host: str, n: int, max_tokens: int, db_path: str, **kw: Any) -> None:
    """Run the whole loop on this laptop: the bundled 30-prompt sample study, the embedded model
    (the bundled SmolLM2-135M, or --model PATH.gguf), and the UI.

    Creates the database if needed, imports the sample study, (re)sets the `admin` password and
    prints it, serves the UI at http://127.0.0.1:7860 and samples N responses per prompt in the
    background (a progress bar shows in the Studies tab; items become labellable as their
    samples finish). Label a few items, then run `critlab export dpo --study sample --out pairs.jsonl`
    in another terminal.
    """
    from storage import annotators, studies

    local = Local(db_path, None)
    ctx = local.ctx
    try:
        if not any(s.name == "sample" for s in studies.list_studies(ctx.db)):
            data = resources.files("app.data")
            with resources.as_file(data.joinpath("sample_prompts.jsonl")) as prompts_path, \
                    resources.as_file(data.joinpath("sample_guidelines.md")) as guide_path:
                from app.services.ops import run_op

                r = run_op(ctx, "demo", "import_prompts", {
                    "study": "sample", "path": str(prompts_path), "guidelines_path": str(guide_path),
                    "description": "30 varied instructions bundled with critlab"})
            click.echo(f"Imported the sample study ({r['imported']} prompts).")
        password = annotators.generate_password()
        if annotators.get_annotator(ctx.db, "admin") is None:
            annotators.add_annotator(ctx.db, "admin", "admin", password)
        else:
            annotators.set_password(ctx.db, "admin", password)
    finally:
        local.close()

    def start_generation(server_ctx) -> None:  # noqa: ANN001
        from app.services.generation import start_generation as start
        from storage.models import SamplingSettings

        try:
            start(server_ctx, "sample", SamplingSettings(n=n, max_tokens=max_tokens, seed=0), created_by="demo")
        except ValueError as e:  # e.g. a rerun with another --n: serve what exists and say why
            click.secho(f"Not sampling: {e}", fg="yellow", err=True)

    engine = EngineConfig(engine="embedded", **{k: v for k, v in kw.items() if v is not None})
    _serve(db_path, host, port, engine, on_start=start_generation,
           banner=f"Log in as  admin / {password}\nSampling {n} responses per prompt in the background "
                  "(progress: Studies tab).")


@main.group()
def export() -> None:
    """Export labelled data."""


@main.command()
@click.option("--study", required=True)
@click.option("--format", "fmt", type=click.Choice(["json", "md", "html"]), default="md", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), help="Write to this file instead of standard output.")
@click.option("--stage", type=click.Choice(["blind", "revealed"]), default="blind", show_default=True,
              help="Which human labels count: blind (default) or the revised labels after reveal.")
@click.option("--bootstrap", "n_boot", default=1000, show_default=True, type=click.IntRange(0, 100_000),
              help="Bootstrap resamples over prompts for the 95% intervals (0: no intervals).")
@click.option("--seed", default=0, show_default=True, type=int, help="Bootstrap seed.")
@click.option("--by-turn", is_flag=True,
              help="Only MT-Bench agreement per turn, with and without ties, as FastChat's compute_agreement.py "
                   "prints it (prompts imported with --from fastchat carry their turn).")
@click.option("--annotator-models", is_flag=True,
              help="Also fit Dawid-Skene and MACE annotator competence (EM over every categorical vote).")
@click.option("--judges", is_flag=True,
              help="Also put every model judge beside every generator (agreement and mean score per generator, "
                   "the self-judging diagonal marked) and run PRE's peer review of judges (a seeded 30%% exam, "
                   "the passing judges' weighted vote scored on the rest). Re-reads the figures on each subset: "
                   "slower on large studies.")
@click.option("--pre-seed", type=int, default=None,
              help="With --judges: the seed that draws PRE's exam prompts (default: the study id).")
@click.option("--pre-threshold", type=click.FloatRange(0, 1, min_open=True), default=0.5, show_default=True,
              help="With --judges: the exam score (agreement with the humans) a judge needs to vote in PRE.")
@click.option("--response-rankings", is_flag=True,
              help="Also rank the responses of each prompt (one Bradley-Terry fit per prompt and judge) and say "
                   "how each judge's per-prompt ranking agrees with the humans'. Slower on large studies.")
@db_option
def agreement(study: str, fmt: str, out: str | None, stage: str, n_boot: int, seed: int, by_turn: bool,
              annotator_models: bool, judges: bool, pre_seed: int | None, pre_threshold: float,
              response_rankings: bool, db_path: str) -> None:
    """How far the model's self-evaluation agrees with people, and people with each other.

    Human-human and human-model agreement (MT-Bench raw agreement with and without ties, accuracy
    and macro F1 against the human consensus, Cohen's and Fleiss' kappa, Krippendorff's alpha),
    order-swap consistency, rank correlations of scores with ratings, best-of-N accuracy of each
    selector against random and majority, calibration of probabilities against correctness, and
    checklist agreement, with bootstrap 95% intervals over prompts; then judge-corrected estimates
    (PPI++), Bradley-Terry rankings of runs and models, annotator agreement and time on task, length
    bias and self-preference, and the labels needed to halve each interval. The JSON structure is
    documented in docs/formats.md; the HTML is one self-contained page with the plots inline.
    """
    if not judges and (pre_seed is not None or pre_threshold != 0.5):
        fail("--pre-seed and --pre-threshold set PRE's exam, which --judges runs: add --judges")
    if by_turn:
        click.echo(call(db_path, "agreement_by_turn", {"study": study})["text"])
        return
    r = call(db_path, "agreement", {"study": study, "format": fmt, "out": os.path.abspath(out) if out else None,
                                    "stage": stage, "n_boot": n_boot, "seed": seed,
                                    "annotator_models": annotator_models, "judges": judges,
                                    "response_rankings": response_rankings, "pre_seed": pre_seed,
                                    "pre_threshold": pre_threshold})
    if out:
        click.echo(f"Wrote {r['out']} ({r['bytes']:,} bytes).", err=True)
    else:
        click.echo(r["text"])


@export.command("judgments")
@click.option("--study", required=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Output: a .jsonl file (critlab), a .json file (label_studio; its config is written beside it), "
                   "a new folder (argilla).")
@click.option("--to", "fmt", type=click.Choice(list(WRITERS)), default="critlab", show_default=True,
              help=f"The format written. {_format_help(WRITERS)}.")
@db_option
def export_judgments(study: str, out: str, fmt: str, db_path: str) -> None:
    """Write every current human and model judgment of a study in the judgments-file format that
    `critlab import judgments` reads (judge names as stored: not pseudonymised), or in another
    tool's format (--to); the summary counts what that format could not hold."""
    r = call(db_path, "export_judgments", {"study": study, "out": os.path.abspath(out), "format": fmt})
    click.echo(r["message"])


add_export_commands(export, call, db_option)
add_people_commands(main, call, db_option)
add_gold_commands(main, call, db_option)


@main.command("methods")
def methods_cmd() -> None:
    """Print the self-evaluation method table: ids, outputs, costs, sources, and which human
    question and metrics each is compared with."""
    from backend.methods.table import calls_table_markdown, method_table_markdown

    click.echo(method_table_markdown())
    click.echo()
    click.echo(calls_table_markdown())


@main.command("models")
@db_option
def models_cmd(db_path: str) -> None:
    """List the models this database has seen: id, name, quantisation, size and SHA-256 of each
    GGUF, its lineage (iteration N: steps from its family's root, the parent and the export it was
    trained on) and which engine the running server uses (when one holds the database)."""
    with target(db_path) as t:
        r = t.op("models", {})
    if isinstance(t, Remote):
        click.echo(f"Server engine: {r['engine']['describe']}")
        for info in r["loaded"]:
            click.echo(f"  loaded: {info['engine']} {info['model_id']} (context {info['context_length']})")
    if not r["models"]:
        click.echo("No model has produced anything in this database yet.")
    for m in r["models"]:
        size = f"{m['size_bytes'] / 2**20:,.0f} MiB" if m["size_bytes"] else "-"
        facts = [m["engine"], m["quantisation"] or "-", size]
        click.echo(f"{m['model_id']}\n  {m['name']} · {' · '.join(facts)}"
                   + (f"\n  sha256 {m['sha256']}" if m["sha256"] else "")
                   + (f"\n  last loaded from {m['path']}" if m["path"] else "")
                   + ("\n  (the bundled demo model)" if m["bundled"] else "")
                   + _lineage_line(m))


def _lineage_line(m: dict[str, Any]) -> str:
    """'iteration 1 · trained from X on export run #3'; nothing for a root without a recorded export."""
    if m.get("parent_model_id") is None and m.get("trained_on_export_id") is None:
        return ""
    parts = [f"iteration {m['iteration']}"]
    if m["parent_model_id"] is not None:
        parts.append(f"trained from {m['parent_model_id']}")
    if m["trained_on_export_id"] is not None:
        parts.append(f"on export run #{m['trained_on_export_id']}")
    return "\n  " + " · ".join(parts)


@main.command()
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Where to write the copy.")
@click.option("--overwrite", is_flag=True, help="Replace an existing file.")
@db_option
def backup(out: str, overwrite: bool, db_path: str) -> None:
    """Write a consistent copy of the database (through the server when one is running)."""
    r = call(db_path, "backup", {"out": os.path.abspath(out), "overwrite": overwrite})
    click.echo(f"Wrote {r['out']} ({r['bytes']:,} bytes).")


if __name__ == "__main__":
    main()
