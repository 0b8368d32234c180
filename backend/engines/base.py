"""The engine protocol every model backend implements, and the data it returns."""

from __future__ import annotations

from collections.abc import Generator
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from storage.models import ModelIdentity

Chat = list[dict]  # [{"role": "user", "content": "..."}]
LogprobMode = Literal["raw", "temperature_scaled"]
# SGLang samples greedily below this temperature, and then divides the logits by 1 (reference §2.1).
GREEDY_BELOW = 1e-6


class EngineError(RuntimeError):
    """An engine call failed in a way the user can act on (unreachable server, bad request ...)."""


class SampleParams(BaseModel):
    temperature: float = 0.8
    top_p: float = 0.9
    max_tokens: int = 256
    seed: int | None = None  # per-sample seed; engines that cannot honour it say so in info()


class TopToken(BaseModel):
    token_id: int
    text: str | None = None
    logprob: float


class TokenLogprob(BaseModel):
    """One generated (or teacher-forced) token with its logprob and the top-k alternatives."""

    token_id: int
    text: str | None = None
    logprob: float
    top: list[TopToken] = Field(default_factory=list)
    # Exact KL(uniform || p) at this position, when the engine sees the full distribution (embedded engine)
    self_certainty: float | None = None


class Sample(BaseModel):
    text: str
    finish_reason: Literal["stop", "length", "abort", "error"]
    seed: int | None = None
    prompt_tokens: int | None = None
    tokens: list[TokenLogprob] = Field(default_factory=list)
    error: str | None = None  # set when finish_reason is abort/error


class EngineInfo(BaseModel):
    engine: Literal["embedded", "sglang", "scripted"]
    model_id: str
    context_length: int
    self_certainty: Literal["exact", "topk_proxy"]
    # What sampled-token logprobs are in general; `logprob_mode_for` gives the mode at one temperature.
    # Teacher-forced (score_response) and prefill (next_token_probs) logprobs are always raw.
    logprob_mode: LogprobMode
    seeds_honoured: bool | None = None
    model: ModelIdentity | None = None  # set by engines that know it (the embedded one always)


def logprob_mode_for(info: EngineInfo, temperature: float) -> LogprobMode:
    """The mode of the logprobs of tokens sampled at `temperature`. An engine that reports
    softmax(logits / T) (SGLang without SGLANG_RETURN_ORIGINAL_LOGPROB=1) still gives raw ones at T = 1
    (nothing to scale) and below `GREEDY_BELOW` (greedy: SGLang divides by 1).

    >>> info = EngineInfo(engine="sglang", model_id="m", context_length=8, self_certainty="topk_proxy",
    ...                   logprob_mode="temperature_scaled")
    >>> [logprob_mode_for(info, t) for t in (0.0, 0.7, 1.0, 1.3)]
    ['raw', 'temperature_scaled', 'raw', 'temperature_scaled']
    >>> logprob_mode_for(info.model_copy(update={"logprob_mode": "raw"}), 0.7)
    'raw'
    """
    if info.logprob_mode == "raw" or temperature < GREEDY_BELOW or temperature == 1.0:
        return "raw"
    return info.logprob_mode


@runtime_checkable
class Engine(Protocol):
    def info(self) -> EngineInfo: ...

    def sample(self, chats: list[Chat], n: int, params: SampleParams, top_logprobs: int = 5,
               json_schema: dict | None = None, seeds: list[list[int]] | None = None) -> list[list[Sample]]:
        """n samples per chat, in chat-major order; seeds[i][j] is the seed of sample j of chat i."""
        ...

    def next_token_probs(self, chats: list[Chat], assistant_prefix: str,
                         candidates: list[str]) -> list[dict[str, float]]:
        """Per chat: P(next token = candidate) after the assistant turn has begun with `assistant_prefix`
        (prefill only, raw softmax over the full vocabulary; surface variants such as " Yes" are summed
        into "Yes")."""
        ...

    def score_response(self, chat: Chat, text: str, top_logprobs: int = 5) -> list[TokenLogprob]:
        """Teacher-forced logprobs of `text` as the assistant's reply to `chat`."""
        ...

    def count_tokens(self, chat: Chat) -> int:
        """Prompt tokens of `chat` rendered with the generation prompt (for context-budget checks)."""
        ...

    def stream(self, chat: Chat, params: SampleParams) -> Generator[str, None, Sample]:
        """Incremental text pieces of one sample. The generator's return value (`StopIteration.value`) is
        the finished Sample: its finish reason and, where the engine has them, per-token logprobs.
        Closing the generator early cancels the generation."""
        ...

    def close(self) -> None: ...
