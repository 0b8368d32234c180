"""Check the request bodies critlab's tests sent to SGLang stand-ins with SGLang's OWN request code.

Runs inside `.venv-sglang` (sglang==0.5.23, which cannot share critlab's test environment); `make check-sglang`
runs the SGLang-facing tests with CRITLAB_SGLANG_BODY_LOG set (tests/standin_body_log.py writes one JSON line per
body a stand-in received) and then this script on that file:

    .venv-sglang/bin/python scripts/check_sglang_bodies.py BODIES.jsonl --vocab-size N

Each `/generate` body goes through what SGLang 0.5.23's HTTP server does with it before a model is involved:
the contract check of `/generate` (`api_contract.generate_contract_error`: types, unknown `sampling_params`
keys), FastAPI's parse of the body into `GenerateReqInput` (a pydantic parse of the dataclass: unknown top-level
keys are dropped), `normalize_batch_and_arguments()`, the split into per-item requests (`obj[i]`), the
tokenizer manager's `token_ids_logprob` check, and per item `SamplingParams(**sp)`, `.normalize(None)` and
`.verify(vocab_size)`. `/tokenize` and `/detokenize` bodies go through their pydantic request models.

A body the stand-in answered with 400/422 was refused on purpose (a test of an error path): SGLang refusing it
too is agreement, not a failure. Any other body SGLang refuses fails the check (exit 1) with its log line, path,
the field and SGLang's message. Top-level keys that are not `GenerateReqInput` fields (the router's `model`,
...) are listed: constructing the dataclass directly with them raises TypeError, while the HTTP server's parse
ignores them.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import sys
import types
import warnings
from collections.abc import Callable
from typing import Any

SGLANG_VERSION = "0.5.23"
REFUSED_ON_PURPOSE = (400, 422)
TOKENIZE_PATHS = ("/tokenize", "/v1/tokenize")
DETOKENIZE_PATHS = ("/detokenize", "/v1/detokenize")


@dataclasses.dataclass
class Problem:
    stage: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"[{self.stage}] {self.field or '(body)'}: {self.message}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Checker:
    def __init__(self, vocab_size: int) -> None:
        # SGLang's modules warn at import about GPU-only quantisation kernels; nothing here uses them.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pydantic
            from sglang.srt.entrypoints.api_contract import generate_contract_error
            from sglang.srt.entrypoints.openai.protocol import DetokenizeRequest, TokenizeRequest
            from sglang.srt.managers.io_struct import GenerateReqInput
            from sglang.srt.managers.tokenizer_manager import TokenizerManager
            from sglang.srt.sampling.sampling_params import SamplingParams
        self.vocab_size = vocab_size
        self.contract_error: Callable[[Any], str | None] = generate_contract_error
        self.req_class = GenerateReqInput
        self.req_fields = {f.name for f in dataclasses.fields(GenerateReqInput)}
        self.req_adapter = pydantic.TypeAdapter(GenerateReqInput)  # what FastAPI parses the body with
        self.validation_error = pydantic.ValidationError
        self.sampling_class = SamplingParams
        # The tokenizer manager's own check, run with the one attribute it reads.
        manager = types.SimpleNamespace(model_config=types.SimpleNamespace(vocab_size=vocab_size))
        self.check_token_ids_logprob = lambda item: TokenizerManager._validate_token_ids_logprob(manager, item)
        self.tokenize_request = TokenizeRequest
        self.detokenize_request = DetokenizeRequest

    def unknown_top_level(self, body: dict[str, Any]) -> tuple[list[str], str | None]:
        """Keys GenerateReqInput has no field for, and the TypeError a direct construction raises."""
        unknown = sorted(set(body) - self.req_fields)
        try:
            self.req_class(**body)
        except TypeError as exc:
            return unknown, _first_line(exc)
        except Exception:  # noqa: BLE001 - other failures are the parse's to report
            pass
        return unknown, None

    def generate(self, body: Any) -> list[Problem]:
        problems: list[Problem] = []
        error = self.contract_error(body)
        if error is not None:
            problems.append(Problem("api_contract.generate_contract_error", _contract_field(error), error))
        if not isinstance(body, dict):
            return problems or [Problem("body", "", "not a JSON object")]
        try:
            obj = self.req_adapter.validate_python(body)
        except ValueError as exc:
            return problems + self._pydantic("GenerateReqInput parse (as FastAPI does)", exc)
        try:
            obj.normalize_batch_and_arguments()
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            return problems + [Problem("GenerateReqInput.normalize_batch_and_arguments", "", _first_line(exc))]
        items = [obj] if obj.is_single else [obj[i] for i in range(obj.batch_size)]
        for i, item in enumerate(items):
            where = "" if obj.is_single else f"[item {i}] "
            try:
                self.check_token_ids_logprob(item)
            except ValueError as exc:
                problems.append(Problem("TokenizerManager._validate_token_ids_logprob",
                                        f"{where}token_ids_logprob", _first_line(exc)))
            sp = item.sampling_params
            stage = "SamplingParams(**sampling_params)"
            try:
                params = self.sampling_class(**sp)
                stage = "SamplingParams.normalize(None)"
                params.normalize(None)
                stage = f"SamplingParams.verify({self.vocab_size})"
                params.verify(self.vocab_size)
            except (ValueError, TypeError) as exc:
                problems.append(Problem(stage, f"{where}sampling_params", _first_line(exc)))
        return problems

    def _pydantic(self, stage: str, exc: Exception) -> list[Problem]:
        if isinstance(exc, self.validation_error):
            return [Problem(stage, ".".join(map(str, e["loc"])), e["msg"]) for e in exc.errors()]
        return [Problem(stage, "", _first_line(exc))]

    def tokenize(self, body: Any) -> list[Problem]:
        try:
            request = self.tokenize_request.model_validate(body)
        except ValueError as exc:  # pydantic's ValidationError is one
            return self._pydantic("TokenizeRequest", exc)
        if request.messages is not None:
            try:
                request.to_chat_completion_request()  # what /tokenize renders `messages` through
            except ValueError as exc:
                return self._pydantic("TokenizeRequest.to_chat_completion_request", exc)
        extra = sorted((request.model_extra or {}).keys())
        # TokenizeRequest allows extra keys and passes them to the chat request, which ignores unknown ones.
        return [Problem("TokenizeRequest", k, "not a field of TokenizeRequest (ignored by SGLang)") for k in extra]

    def detokenize(self, body: Any) -> list[Problem]:
        try:
            self.detokenize_request.model_validate(body)
        except ValueError as exc:
            return self._pydantic("DetokenizeRequest", exc)
        return []


def _contract_field(error: str) -> str:
    """The field a contract error names (`unknown field `x`` or a `path: message` prefix), if any."""
    if error.startswith("unknown field `"):
        return error.split("`")[1]
    head = error.split(":", 1)[0]
    return head if head and " " not in head else ""


def run(log_path: str, vocab_size: int, expect_router: bool = False, out: Any = sys.stdout) -> int:
    import sglang

    if sglang.__version__ != SGLANG_VERSION:
        print(f"error: sglang {sglang.__version__} is installed; this check pins {SGLANG_VERSION}", file=out)
        return 2
    checker = Checker(vocab_size)
    failures: list[str] = []
    per_path: collections.Counter[str] = collections.Counter()
    per_source: collections.Counter[str] = collections.Counter()
    fields: dict[str, set[str]] = collections.defaultdict(set)  # source -> top-level keys seen in /generate
    common: dict[str, set[str]] = {}  # source -> top-level keys in every /generate body it sent
    unknown: dict[str, tuple[set[str], str | None]] = {}  # source -> (keys, TypeError text)
    agreed, standin_only, unchecked = 0, [], collections.Counter()
    with open(log_path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            path, source, status, body = entry["path"], entry["source"], entry["status"], entry["body"]
        except (ValueError, KeyError, TypeError) as exc:
            failures.append(f"line {n}: not a body-log entry ({exc})")
            continue
        per_path[path] += 1
        per_source[source] += 1
        if path == "/generate":
            if isinstance(body, dict):
                fields[source].update(body)
                common[source] = common[source] & set(body) if source in common else set(body)
                keys, type_error = checker.unknown_top_level(body)
                if keys:
                    seen, first = unknown.get(source, (set(), None))
                    unknown[source] = (seen | set(keys), first or type_error)
            problems = checker.generate(body)
        elif path in TOKENIZE_PATHS:
            problems = checker.tokenize(body)
        elif path in DETOKENIZE_PATHS:
            problems = checker.detokenize(body)
        else:
            unchecked[path] += 1
            continue
        refused = status in REFUSED_ON_PURPOSE
        if problems and refused:
            agreed += 1
        elif problems:
            failures += [f"line {n} {path} (from {source}, stand-in answered {status}): {p}" for p in problems]
        elif refused:
            standin_only.append(f"line {n} {path} (from {source}, stand-in answered {status})")

    print(f"SGLang {sglang.__version__}: checked {sum(per_path.values()) - sum(unchecked.values())} request "
          f"bodies from {log_path} (vocab size {vocab_size})", file=out)
    print("  per path:   " + ", ".join(f"{p} {c}" for p, c in sorted(per_path.items())), file=out)
    print("  per sender: " + ", ".join(f"{s} {c}" for s, c in sorted(per_source.items())) +
          f"  (via a router: {per_source['router'] + per_source['standin-router']})", file=out)
    for source in sorted(fields):
        print(f"  /generate top-level fields from {source}: {', '.join(sorted(fields[source]))}", file=out)
    direct = set().union(*(fields[s] for s in fields if s not in ("router", "standin-router")))
    for source in ("router", "standin-router"):
        if source in fields and direct:  # in every body it forwarded, in none sent directly: the router's own
            print(f"  fields the {source} added (in all its bodies, in no direct one): "
                  f"{', '.join(sorted(common[source] - direct))}", file=out)
    for source, (keys, type_error) in sorted(unknown.items()):
        print(f"  NOT GenerateReqInput fields, from {source}: {', '.join(sorted(keys))} -- "
              f"GenerateReqInput(**body) raises TypeError ({type_error}); SGLang's /generate parse (FastAPI/"
              "pydantic) and its contract check ignore unknown top-level keys, so the server accepts them",
              file=out)
    print(f"  refused by the stand-in and by SGLang alike: {agreed}", file=out)
    if standin_only:
        print(f"  refused by the stand-in only ({len(standin_only)}; checks that need the server's state, such "
              "as the context length, are not made here):", file=out)
        for s in standin_only[:20]:
            print(f"    {s}", file=out)
    if unchecked:
        print("  not checked (no SGLang request class here): " +
              ", ".join(f"{p} {c}" for p, c in sorted(unchecked.items())), file=out)
    if not sum(per_path.values()):
        failures.append(f"{log_path} holds no request body: was CRITLAB_SGLANG_BODY_LOG set for the test run?")
    if expect_router and not per_source["router"]:
        failures.append("no body came through the real sglang-router (tests/test_sglang_router.py did not run?)")
    if failures:
        print(f"FAILED ({len(failures)}):", file=out)
        for f_ in failures:
            print(f"  {f_}", file=out)
        return 1
    print("OK: SGLang accepts every body the stand-in accepted.", file=out)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check recorded SGLang request bodies with SGLang's own code "
                                                 "(run with .venv-sglang/bin/python; see docs/gpu.md).")
    parser.add_argument("log", help="the JSON-lines body log (CRITLAB_SGLANG_BODY_LOG of the test run)")
    parser.add_argument("--vocab-size", type=int, required=True,
                        help="vocabulary size for SamplingParams.verify (the stand-in's toy model)")
    parser.add_argument("--expect-router", action="store_true",
                        help="fail unless some bodies came through the real sglang-router")
    args = parser.parse_args(argv)
    return run(args.log, args.vocab_size, args.expect_router)


if __name__ == "__main__":
    sys.exit(main())
