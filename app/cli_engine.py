"""The command line's engine flags, shared by generate, score, serve and demo, and which engine they name."""

from __future__ import annotations

from typing import Any

import click

from app.cli_target import fail
from app.services.context import EngineConfig

EMBEDDED_FLAGS = ("model", "chat_template", "ctx", "n_gpu_layers")
_SGLANG_FLAGS = ("sglang_url", "sglang_tokenizer", "sglang_tokenize_url", "sglang_model_id", "sglang_raw_logprobs")


def embedded_model_options(fn):  # noqa: ANN001, ANN201
    opts = [
        click.option("--model", envvar="CRITLAB_MODEL", type=click.Path(exists=True, dir_okay=False),
                     help="A local GGUF file for the embedded engine (default: the bundled SmolLM2-135M demo model).",
                     metavar="PATH.gguf"),
        click.option("--chat-template", type=click.Path(exists=True, dir_okay=False), metavar="FILE.j2",
                     help="Jinja chat template to use instead of the one in the GGUF's metadata."),
        click.option("--ctx", type=click.IntRange(16), metavar="TOKENS",
                     help="Context length for the embedded model (default: the GGUF's, at most 8192)."),
        click.option("--n-gpu-layers", type=click.IntRange(-1), metavar="N",
                     help="Layers to offload to the GPU (-1: all) with a CUDA or Metal build of llama-cpp-python."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def engine_options(fn):  # noqa: ANN001, ANN201
    opts = [
        click.option("--engine", type=click.Choice(["embedded", "sglang"]),
                     help="embedded: a GGUF on this machine (the bundled SmolLM2-135M demo model unless --model); "
                          "sglang: an SGLang server or router. Default: the running server's engine when one "
                          "holds the database, else embedded."),
        click.option("--sglang-url", envvar="CRITLAB_SGLANG_URL",
                     help="SGLang server or sglang-router URL. The API key comes from $CRITLAB_SGLANG_API_KEY."),
        click.option("--sglang-tokenizer", type=click.Path(exists=True, file_okay=False),
                     help="Local HF tokenizer directory (needed behind sglang-router, which does not route /tokenize)."),
        click.option("--sglang-tokenize-url", help="A worker URL that serves /tokenize (alternative to --sglang-tokenizer)."),
        click.option("--sglang-model-id",
                     help="Model id to record instead of the one the server reports (sglang-router proxies "
                          "/get_model_info to a worker, so it reports one too)."),
        click.option("--sglang-raw-logprobs", is_flag=True,
                     help="The SGLang server runs with SGLANG_RETURN_ORIGINAL_LOGPROB=1, so sampled-token logprobs "
                          "are raw (not detectable over HTTP; --launch-sglang sets it itself). Without it they are "
                          "recorded as temperature-scaled unless the temperature is 0 or 1."),
    ]
    fn = embedded_model_options(fn)
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def engine_cfg(kw: dict[str, Any]) -> EngineConfig | None:
    """The engine the flags name; None when no engine flag was given (then a running server's own engine
    serves the command, and a command run here uses the bundled embedded model). A URL or a model path from
    the environment alone names no engine; $CRITLAB_MODEL names the embedded one."""
    engine = kw.pop("engine")
    embedded = {k: kw.pop(k) for k in EMBEDDED_FLAGS}
    sglang = {k: kw.pop(k) for k in _SGLANG_FLAGS}
    src = click.get_current_context().get_parameter_source
    named = {k for k in (*EMBEDDED_FLAGS, *_SGLANG_FLAGS) if src(k) == click.core.ParameterSource.COMMANDLINE}
    if engine is None:
        if named & set(EMBEDDED_FLAGS) and named & set(_SGLANG_FLAGS):
            fail("give either the embedded engine's flags (--model, --chat-template, --ctx, --n-gpu-layers) or "
                 "the SGLang ones (--sglang-*), not both")
        if named & set(_SGLANG_FLAGS):
            engine = "sglang"
        elif named or embedded["model"]:
            engine = "embedded"
        else:
            return None
    if engine == "sglang" and named & set(EMBEDDED_FLAGS):
        fail(f"--{sorted(named & set(EMBEDDED_FLAGS))[0].replace('_', '-')} is for the embedded engine, "
             "not --engine sglang")
    if engine == "embedded" and named & set(_SGLANG_FLAGS):
        fail(f"--{sorted(named & set(_SGLANG_FLAGS))[0].replace('_', '-')} is for --engine sglang")
    if engine == "sglang":
        return EngineConfig(engine="sglang", **sglang)
    return EngineConfig(engine="embedded", **{k: v for k, v in embedded.items() if v is not None})


def dump_engine(engine: EngineConfig | None) -> dict[str, Any] | None:
    return engine.model_dump() if engine else None
