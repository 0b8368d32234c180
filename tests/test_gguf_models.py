"""The embedded engine on GGUFs other than the bundled SmolLM2: tiny random-weight files built at test
time (tests/tiny_gguf.py) with a ChatML template, a Llama-3-style template, and none at all."""

from __future__ import annotations

import hashlib
import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from gguf import LlamaFileType

from app.services import scoring
from app.services.context import AppContext
from backend.engines.base import Engine, EngineError, SampleParams
from backend.engines.llamacpp import LlamaCppEngine
from backend.engines.llamacpp_util import (
    BUNDLED_SHA256, DEFAULT_CTX_CAP, default_model_path, file_sha256, is_bundled, quantisation_name,
)
from backend.methods.base import Method, Verdict
from backend.methods.p_true import PTrue
from backend.methods.judge_score import JudgeScore
from backend.methods.registry import get_method, method_ids
from storage import jobs as job_rows
from storage import studies
from storage.db import Database
from storage.models import StudyConfig
from tests import tiny_gguf
from tests.builders import make_prompt, make_responses
from tests.method_harness import method_input
from tests.streaming import drain

CHAT = [{"role": "user", "content": "Is 2 + 2 = 4? Answer Yes or No."}]
PARAMS = SampleParams(temperature=0.9, top_p=0.95, max_tokens=12)
TEMPLATES = {"chatml": tiny_gguf.CHATML_TEMPLATE, "llama3": tiny_gguf.LLAMA3_TEMPLATE}
# The role header each template writes before a message: the proof of which template rendered a prompt.
HEADER = {"chatml": "<|im_start|>", "llama3": "<|start_header_id|>"}
PLAIN_TEMPLATE = ("{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"
                  "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}")


@pytest.fixture(scope="module", params=["chatml", "llama3"])
def tiny(request: pytest.FixtureRequest, tiny_ggufs: dict[str, Path]) -> Iterator[tuple[str, LlamaCppEngine]]:
    eng = LlamaCppEngine(str(tiny_ggufs[request.param]))
    yield request.param, eng
    eng.close()


def _prompt_ids(eng: LlamaCppEngine, chat: list[dict]) -> list[int]:
    return eng._worker.submit(lambda: eng._prompt(chat), 0).result()


def _special_id(eng: LlamaCppEngine, text: str) -> int:
    ids = eng._llm.tokenize(text.encode(), add_bos=False, special=True)
    assert len(ids) == 1, f"{text} is not one token"
    return ids[0]


# ---------------------------------------------------------------- the file's own template and context

def test_the_chat_template_is_the_files_own(tiny: tuple[str, LlamaCppEngine]) -> None:
    flavour, eng = tiny
    model = eng.info().model
    assert model is not None and model.chat_template == TEMPLATES[flavour]
    ids = _prompt_ids(eng, CHAT)
    assert _special_id(eng, HEADER[flavour]) in ids
    other = HEADER["llama3" if flavour == "chatml" else "chatml"]
    assert other not in eng._llm.detokenize(ids, special=True).decode()
    if flavour == "llama3":  # the template writes the BOS the tokenizer asks for: exactly one
        bos = _special_id(eng, "<|begin_of_text|>")
        assert ids[0] == bos and ids.count(bos) == 1


def test_a_tokenizer_asking_for_bos_gets_one_when_the_template_does_not_write_it(
        tiny_ggufs: dict[str, Path]) -> None:
    with LlamaCppEngine(str(tiny_ggufs["llama3"]), chat_template=PLAIN_TEMPLATE) as eng:
        ids = _prompt_ids(eng, CHAT)
        assert ids[0] == _special_id(eng, "<|begin_of_text|>") and ids.count(ids[0]) == 1


def test_chat_template_argument_overrides_the_files(tiny_ggufs: dict[str, Path]) -> None:
    with LlamaCppEngine(str(tiny_ggufs["chatml"]), chat_template=PLAIN_TEMPLATE) as eng:
        assert eng.info().model.chat_template == PLAIN_TEMPLATE
        text = eng._llm.detokenize(_prompt_ids(eng, CHAT), special=True).decode()
        assert text == "user: " + CHAT[0]["content"] + "\nassistant: "


def test_a_model_without_a_template_is_refused_naming_the_file_and_the_flag(tiny_ggufs: dict[str, Path]) -> None:
    with pytest.raises(EngineError, match=r"bare\.gguf has no chat template.*--chat-template FILE\.j2"):
        LlamaCppEngine(str(tiny_ggufs["bare"]))


@pytest.mark.parametrize("template, what", [
    ("{% for m in messages %}{{ m['content'] }", "TemplateSyntaxError"),
    ("{{ raise_exception('only system messages') }}", "only system messages"),
])
def test_a_template_that_cannot_render_fails_at_load(tiny_ggufs: dict[str, Path], template: str, what: str) -> None:
    with pytest.raises(EngineError, match=f"--chat-template cannot render a chat: .*{what}"):
        LlamaCppEngine(str(tiny_ggufs["chatml"]), chat_template=template)


def test_context_defaults_to_the_trained_length_capped_and_never_exceeds_it(tiny_ggufs: dict[str, Path]) -> None:
    path = str(tiny_ggufs["chatml"])
    assert tiny_gguf.TRAINED_CTX > DEFAULT_CTX_CAP
    with LlamaCppEngine(path) as eng:
        assert eng.info().context_length == eng.info().model.context_length == DEFAULT_CTX_CAP
        assert eng._llm.n_ctx() == DEFAULT_CTX_CAP
    with LlamaCppEngine(path, n_ctx=tiny_gguf.TRAINED_CTX) as eng:
        assert eng.info().context_length == eng._llm.n_ctx() == tiny_gguf.TRAINED_CTX
    with LlamaCppEngine(path, n_ctx=1024) as eng:
        assert eng.info().context_length == eng._llm.n_ctx() == 1024
    with pytest.raises(EngineError, match=r"16385 tokens was asked for, but chatml\.gguf was trained with 16384"):
        LlamaCppEngine(path, n_ctx=tiny_gguf.TRAINED_CTX + 1)


# ---------------------------------------------------------------- identity

def test_identity_names_the_file_by_content(tiny_ggufs: dict[str, Path], tmp_path: Path) -> None:
    path = tiny_ggufs["chatml"]
    data = path.read_bytes()
    with LlamaCppEngine(str(path)) as eng:
        info = eng.info()
    m = info.model
    assert m is not None and info.model_id == m.model_id
    assert (m.engine, m.name, m.quantisation, m.size_bytes, m.sha256, m.path, m.bundled) == \
        ("embedded", "Tiny Chatml Test", "F32", len(data), hashlib.sha256(data).hexdigest(), str(path), False)
    assert m.model_id == f"Tiny-Chatml-Test-F32@{m.sha256[:12]}"

    copy = tmp_path / "elsewhere" / "renamed.gguf"
    copy.parent.mkdir()
    shutil.copyfile(path, copy)
    with LlamaCppEngine(str(copy)) as eng:
        assert eng.info().model_id == m.model_id and eng.info().model.path == str(copy)
    # Same metadata name, different weights: a different file, so a different judge id.
    twin = tiny_gguf.build(tmp_path / "twin.gguf", "chatml", name="Tiny Chatml Test", seed=1)
    with LlamaCppEngine(str(twin)) as eng:
        assert eng.info().model.name == m.name and eng.info().model_id != m.model_id
    with LlamaCppEngine(str(tiny_ggufs["llama3"])) as eng:
        assert eng.info().model_id != m.model_id


def test_a_cached_sha256_is_used_as_given(tiny_ggufs: dict[str, Path]) -> None:
    with LlamaCppEngine(str(tiny_ggufs["chatml"]), sha256="ab" * 32) as eng:
        assert eng.info().model.sha256 == "ab" * 32 and eng.info().model_id.endswith("@abababababab")


def test_the_bundled_model_is_known_by_path_or_by_content(tiny_ggufs: dict[str, Path], tmp_path: Path) -> None:
    assert is_bundled(default_model_path(), "0" * 64)
    assert is_bundled(str(tmp_path / "a-copy.gguf"), BUNDLED_SHA256)
    assert not is_bundled(str(tiny_ggufs["chatml"]), "0" * 64)


def test_file_sha256_matches_hashlib_and_reports_progress(tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    data = bytes(range(256)) * (7 * 4096 + 13)  # ~7 MiB, not a whole number of chunks
    path.write_bytes(data)
    calls: list[tuple[int, int]] = []
    assert file_sha256(path, lambda done, total: calls.append((done, total))) == hashlib.sha256(data).hexdigest()
    assert calls[-1] == (len(data), len(data)) and len(calls) > 2
    dones = [d for d, _ in calls]
    assert dones == sorted(set(dones)) and all(t == len(data) for _, t in calls)
    assert all(b - a >= len(data) // 100 for a, b in zip(dones, dones[1:-1]))  # at most every 1%
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()


def test_quantisation_names_follow_llama_cpps_file_types() -> None:
    for ft in LlamaFileType:
        if ft is not LlamaFileType.GUESSED:
            assert quantisation_name(str(int(ft))) == ft.name.removeprefix("MOSTLY_").removeprefix("ALL_")


# ---------------------------------------------------------------- engine calls

def test_sample_n_with_seeds(tiny: tuple[str, LlamaCppEngine]) -> None:
    _, eng = tiny
    out = eng.sample([CHAT], 3, PARAMS, top_logprobs=3, seeds=[[5, 6, 5]])[0]
    assert [s.seed for s in out] == [5, 6, 5]
    assert out[0].text == out[2].text and [t.token_id for t in out[0].tokens] == [t.token_id for t in out[2].tokens]
    for s in out:
        assert s.finish_reason in ("stop", "length") and s.prompt_tokens == eng.count_tokens(CHAT)
        assert len(s.tokens) <= PARAMS.max_tokens
        assert all(t.logprob <= 0 and math.isfinite(t.logprob) and len(t.top) == 3 for t in s.tokens)


def test_next_token_probs_reads_every_candidate(tiny: tuple[str, LlamaCppEngine]) -> None:
    _, eng = tiny
    for prefix, candidates in (("Answer:", ["Yes", "No"]), ("[[", ["A", "B", "C"]),
                               ("Score: ", [str(d) for d in range(10)])):
        (probs,) = eng.next_token_probs([CHAT], prefix, candidates)
        assert set(probs) == set(candidates)
        assert all(0 < p <= 1 for p in probs.values()) and sum(probs.values()) <= 1 + 1e-9


def test_teacher_forced_scoring_and_streaming(tiny: tuple[str, LlamaCppEngine]) -> None:
    _, eng = tiny
    scored = eng.score_response(CHAT, "Yes, 4.", top_logprobs=2)
    assert "".join(t.text or "" for t in scored) == "Yes, 4."
    assert all(t.logprob <= 0 and t.self_certainty is not None for t in scored)
    pieces, sample = drain(eng.stream(CHAT, PARAMS.model_copy(update={"seed": 3})))
    assert "".join(pieces) == sample.text and sample.finish_reason in ("stop", "length")
    assert sample.text == eng.sample([CHAT], 1, PARAMS, seeds=[[3]])[0][0].text


# ---------------------------------------------------------------- every method

def _check_verdict(v: Verdict, method: Method, ids: set[int]) -> None:
    assert v.method == method.id
    if v.status == "failed":
        assert v.error and "no token that begins" not in v.error and "chat template" not in v.error
        return
    assert v.error is None
    assert any(x is not None for x in (v.value, v.label, v.prob, v.dist, v.response_id))
    for x in (v.value, v.prob, *(v.dist or {}).values()):
        assert x is None or math.isfinite(x)
    assert v.prob is None or 0 <= v.prob <= 1
    assert v.response_id is None or v.response_id in ids


@pytest.mark.parametrize("method_id", method_ids())
def test_every_method_runs_on_the_tiny_model(tiny: tuple[str, LlamaCppEngine], method_id: str) -> None:
    _, eng = tiny
    method = get_method(method_id)
    inp = method_input(["4", "The answer is 5."], reference="4", answer_extraction="last_number",
                       context_length=eng.info().context_length)
    result = method.run(inp, eng)
    assert result.verdicts
    for v in result.verdicts:
        _check_verdict(v, method, {r.id for r in inp.responses})
    if method.layer == "decoding" or method_id in ("p_true", "judge_score", "pairwise", "select_usc",
                                                   "follow_up_likelihood", "selfcheck_prompt"):
        # Reads only (no parsing of generated text): every candidate is in the vocabulary, so all succeed.
        assert all(v.status == "ok" for v in result.verdicts), [v.error for v in result.verdicts]


# ---------------------------------------------------------------- a vocabulary without the answers

@pytest.fixture(scope="module")
def bare(tiny_ggufs: dict[str, Path]) -> Iterator[LlamaCppEngine]:
    eng = LlamaCppEngine(str(tiny_ggufs["bare"]), chat_template=PLAIN_TEMPLATE)
    yield eng
    eng.close()


def test_missing_candidates_are_a_clear_error_not_a_zero(bare: LlamaCppEngine) -> None:
    assert bare.info().model.chat_template == PLAIN_TEMPLATE
    with pytest.raises(EngineError, match=r"Tiny Bare Test \(bare\.gguf\): answer candidate\(s\) "
                                          r"\['Yes', 'No'\] have no one-token form"):
        bare.next_token_probs([CHAT], "Answer:", ["Yes", "No", "the"])
    assert bare.next_token_probs([CHAT], "Answer:", ["the"])[0]["the"] > 0  # what it has still reads


@pytest.mark.parametrize("method", [PTrue(), JudgeScore()], ids=lambda m: m.id)
def test_a_method_needing_missing_candidates_fails_clearly(bare: LlamaCppEngine, method: Method) -> None:
    with pytest.raises(EngineError, match="have no one-token form in this vocabulary"):
        method.run(method_input(["4"], context_length=bare.info().context_length), bare)


def test_a_scoring_job_on_such_a_model_fails_naming_the_missing_candidates(bare: LlamaCppEngine,
                                                                          db: Database) -> None:
    ctx = AppContext(db=db, engine_factory=lambda cfg: bare)
    study = studies.create_study(db, "m", config=StudyConfig())
    make_responses(db, make_prompt(db, study.id, "q1", "What is 2 + 2?"), ["4", "5"])
    job = scoring.start_scoring(ctx, "m", "p_true", background=False)
    job = job_rows.get_job(db, job.id)
    assert job.status == "failed" and "answer candidate(s) ['A', 'B'] have no one-token form" in job.error


def test_tiny_files_are_small(tiny_ggufs: dict[str, Path]) -> None:
    assert all(p.stat().st_size < 600_000 for p in tiny_ggufs.values())


def test_engine_protocol(tiny: tuple[str, LlamaCppEngine]) -> None:
    assert isinstance(tiny[1], Engine)
