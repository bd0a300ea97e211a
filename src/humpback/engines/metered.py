"""Token and time accounting around any engine: what a stage asked of its model, counted.

``Metered(engine)`` is the engine with counters: every call adds to its ``usage`` the prompts,
the prompt tokens, the tokens written and the tokens read without generating (the likelihood
reads of logprob, pmi and features rating, and of best-of-n's fit), and the seconds spent in the
engine. Counts come from the engine where it says them (the transformers and vLLM engines count
the ids they ran; a server its ``usage``), else from the model's tokenizer. A stage's worker
(``shards.EngineShards``) meters its engines and writes each shard's usage into the shard's
counters, so a resumed stage still counts what its earlier attempt did.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from typing import Any

from .base import Chat, Completion, SamplingParams, encode_chat

_UNSET = object()


@dataclass
class Usage:
    """What a model was asked to do, added up."""

    prompts: int = 0
    """Prompts generated from or read (each sample of best-of-n is one)."""
    prompt_tokens: int = 0
    """Tokens of the prompts generated from (what a server bills as input)."""
    generated_tokens: int = 0
    """Tokens written (stop tokens left out)."""
    read_tokens: int = 0
    """Tokens read to score them, without generating (likelihood reads)."""
    seconds: float = 0.0
    """Wall time spent inside the engine."""

    def add(self, other: Usage | dict) -> Usage:
        values = other if isinstance(other, dict) else asdict(other)
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + (values.get(f.name) or 0))
        return self

    def minus(self, other: Usage) -> Usage:
        return Usage(**{f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)})

    def to_dict(self) -> dict:
        out = asdict(self)
        out["seconds"] = round(self.seconds, 3)
        return out

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.generated_tokens + self.read_tokens


class Metered:
    """An engine whose calls are counted into ``usage``; every other attribute is the engine's."""

    def __init__(self, engine: Any):
        self.engine = engine
        self.usage = Usage()
        self._counter: Any = _UNSET  # the tokenizer that counts what the engine does not say

    def _tokenizer(self):
        """The engine's tokenizer, once; None where it has none or cannot give one (a server's model
        named without --tokenizer): then the tokens the engine did not count go uncounted."""
        if self._counter is _UNSET:
            try:
                self._counter = getattr(self.engine, "tokenizer", None)
            except Exception:  # noqa: BLE001 - the openai engine's tokenizer raises EngineError when it has none
                self._counter = None
        return self._counter

    def __getattr__(self, name: str):  # name, tokenizer, refusal_reasons, close, ...: the engine's own
        return getattr(self.engine, name)

    @property
    def device(self) -> str:
        """Where the model runs: the transformers engine's device, a server's address, else the backend."""
        return str(getattr(self.engine, "device", None) or getattr(self.engine, "base_url", None) or "")

    def _tokens(self, text: str) -> int:
        tokenizer = self._tokenizer()
        return len(tokenizer(text, add_special_tokens=False)["input_ids"]) if text and tokenizer is not None else 0

    def _prompt_tokens(self, prompt: Chat) -> int:
        tokenizer = self._tokenizer()
        return len(encode_chat(tokenizer, prompt)) if tokenizer is not None else 0

    def complete(self, prompts: list[Chat], params: SamplingParams) -> list[Completion]:
        start = time.perf_counter()
        done = self.engine.complete(prompts, params)
        self.usage.seconds += time.perf_counter() - start
        for prompt, c in zip(prompts, done):
            self.usage.prompts += 1
            if c.text is None:  # refused: nothing ran
                continue
            self.usage.prompt_tokens += c.prompt_tokens if c.prompt_tokens is not None else self._prompt_tokens(prompt)
            self.usage.generated_tokens += (
                c.generated_tokens if c.generated_tokens is not None else self._tokens(c.text)
            )
        return done

    def generate(self, prompts: list[Chat], params: SamplingParams) -> list[str | None]:
        return [c.text for c in self.complete(prompts, params)]

    def choice_logprobs(self, prompts: list[Chat], choices: list[str]) -> list:
        start = time.perf_counter()
        out = self.engine.choice_logprobs(prompts, choices)
        self.usage.seconds += time.perf_counter() - start
        self.usage.prompts += len(prompts)
        # the prompt is read once and each choice after it (a choice is a token or two)
        self.usage.read_tokens += sum(self._prompt_tokens(p) + len(choices) for p in prompts)
        return out

    def sequence_logprobs(self, reads: list[tuple[list[int], int]]) -> list:
        return self._read(self.engine.sequence_logprobs, reads)

    def token_logprobs(self, reads: list[tuple[list[int], int]]) -> list:
        return self._read(self.engine.token_logprobs, reads)

    def _read(self, method, reads: list[tuple[list[int], int]]) -> list:
        start = time.perf_counter()
        out = method(reads)
        self.usage.seconds += time.perf_counter() - start
        self.usage.prompts += len(reads)
        self.usage.read_tokens += sum(len(ids) for ids, _ in reads)
        return out


def metered(engine: Any) -> Metered:
    """The engine, metered (once: an engine already metered is returned as it is)."""
    return engine if isinstance(engine, Metered) else Metered(engine)


def shard_usage(engines: list[Any], before: list[Usage]) -> dict:
    """What the metered engines did since ``before`` (their usage then), added up, with the
    backend and device of the first: the ``_usage`` counter of a shard."""
    total = Usage()
    for engine, then in zip(engines, before):
        total.add(engine.usage.minus(then))
    first = engines[0] if engines else None
    return {
        **total.to_dict(),
        "engine": getattr(first, "name", "") if first is not None else "",
        "device": first.device if first is not None else "",
    }
