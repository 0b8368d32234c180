"""One candidate rule for both engines (backend/engines/candidates.py): for the same vocabulary the embedded
llama.cpp engine and the SGLang client sum the same token ids into each answer candidate, for every candidate
set a method reads."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.engines.llamacpp import LlamaCppEngine
from backend.engines.llamacpp_util import default_model_path
from backend.engines.sglang import SGLangEngine
from backend.methods.checklist import ChecklistMethod
from backend.methods.judge_score import DIGITS
from backend.methods.p_true import PTrue, PTrueBrainstorm
from backend.methods.pairwise import CANDIDATES as PAIRWISE

# Every candidate list a method hands to next_token_probs: select_usc reads the digits 0..N-1 for N <= 10.
METHOD_SETS = {
    "p_true": list(PTrue.candidates), "p_true_brainstorm": list(PTrueBrainstorm.candidates),
    "checklist": list(ChecklistMethod.candidates), "pairwise": PAIRWISE, "judge_score": DIGITS,
    **{f"select_usc n={n}": [str(i) for i in range(n)] for n in range(1, 11)},
}


@pytest.fixture(scope="module")
def smollm2_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2's HF tokenizer directory, written from the GGUF the embedded engine loads (no download)."""
    from transformers import AutoTokenizer

    path = default_model_path()
    out = tmp_path_factory.mktemp("smollm2-tokenizer")
    AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path)).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def sglang_smollm2(smollm2_tokenizer_dir: Path) -> Iterator[SGLangEngine]:
    """The SGLang client with SmolLM2's tokenizer as its local tokenizer (the stand-in only answers start-up:
    candidates are resolved by the client's tokenizer alone)."""
    from tests.standin_sglang import start_standin

    url, stop = start_standin()
    engine = SGLangEngine(url, tokenizer_path=str(smollm2_tokenizer_dir),
                          model_id="HuggingFaceTB/SmolLM2-135M-Instruct")
    yield engine
    engine.close()
    stop()


@pytest.mark.model
@pytest.mark.parametrize("method", list(METHOD_SETS))
def test_both_engines_count_the_same_tokens_for_each_candidate(method: str, embedded_engine: LlamaCppEngine,
                                                                sglang_smollm2: SGLangEngine) -> None:
    candidates = METHOD_SETS[method]
    embedded = embedded_engine.candidate_token_ids(candidates)
    assert sglang_smollm2.candidate_token_ids(candidates) == embedded
    assert all(embedded[c] for c in candidates)


@pytest.mark.model
def test_the_rule_on_smollm2(embedded_engine: LlamaCppEngine, sglang_smollm2: SGLangEngine) -> None:
    """What the rule reads on SmolLM2: letters keep their case (no " a", the article), words count every
    one-token case and space form ("NO", " NO"; not "YES", which is two tokens), digits have no space form
    (" 7" is two tokens)."""
    def forms(engine: LlamaCppEngine | SGLangEngine, candidates: list[str]) -> dict[str, set[str]]:
        ids = engine.candidate_token_ids(candidates)
        return {c: {embedded_engine._text_of(t) for t in ts} for c, ts in ids.items()}

    for engine in (embedded_engine, sglang_smollm2):
        assert forms(engine, ["A", "B", "C"]) == {"A": {"A", " A"}, "B": {"B", " B"}, "C": {"C", " C"}}
        assert forms(engine, ["Yes", "No"]) == {"Yes": {"Yes", " Yes", "yes", " yes"},
                                                "No": {"No", " No", "no", " no", "NO", " NO"}}
        assert forms(engine, ["7"]) == {"7": {"7"}}


@pytest.mark.model
def test_a_candidate_without_a_one_token_form_is_an_error_on_both(embedded_engine: LlamaCppEngine,
                                                                   sglang_smollm2: SGLangEngine) -> None:
    from backend.engines.base import EngineError

    for engine in (embedded_engine, sglang_smollm2):
        with pytest.raises(EngineError, match=r"\['Perhaps maybe'\] have no one-token form") as err:
            engine.next_token_probs([[{"role": "user", "content": "Hi"}]], "", ["Yes", "Perhaps maybe"])
        assert "smollm2" in str(err.value).lower()  # the model is named
