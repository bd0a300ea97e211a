"""The one interface every stage generates and rates through, and how an engine is chosen.

An engine turns chat prompts into completions (``generate``) and reads the probability of a few
one-token answers at the end of a prompt (``choice_logprobs``, what logprob rating needs). Stages
see only this interface; ``EngineConfig.engine`` names the backend, one file each beside this one:

- ``transformers`` (transformers.py): in-process, batched, with a shared-prefix KV cache;
- ``vllm`` (vllm.py): vLLM's offline engine with automatic prefix caching;
- ``openai`` (openai.py): any OpenAI-compatible server, with bounded concurrency and retries.

A prompt whose last message is the assistant's is continued from that text (a prefix), as with
vLLM's ``continue_final_message``. A prompt an engine cannot run (a server refuses it) comes back
as None, so the stage can record it as a reject instead of stopping.
"""

from __future__ import annotations

import contextlib
import importlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from ..config import EngineConfig

Chat = list[dict]  # [{"role": ..., "content": ...}, ...]


@dataclass
class SamplingParams:
    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 256
    seed: int | None = None
    follow_up: Callable[[int, str], str | None] | None = None
    """Called when a prompt's completion stops, with the prompt's index and the text so far; a
    string returned is appended to the completion as if the model had written it, and decoding
    goes on for up to ``follow_up_tokens`` more tokens (once per prompt). Curation uses it to hand
    a judge that wrote no Score line a "Score:" to finish, in the same pass. Engines that cannot
    do this (vllm, openai) ignore it; the caller checks the results either way."""
    follow_up_tokens: int = 3

    @classmethod
    def from_config(cls, cfg, seed_offset: int = 0, **overrides) -> SamplingParams:
        """The sampling a stage's config asks for (its temperature, top_p, max_new_tokens and
        random_seed, the seed moved by ``seed_offset``: one shard's draws differ from the next's)."""
        seed = getattr(cfg, "random_seed", None)
        params = cls(
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            max_new_tokens=cfg.max_new_tokens,
            seed=None if seed is None else seed + seed_offset,
        )
        for field, value in overrides.items():
            setattr(params, field, value)
        return params


@dataclass(frozen=True)
class Completion:
    """What an engine wrote for one prompt."""

    text: str | None
    """The assistant's text only; None where the engine refused the prompt."""
    refusal: str | None = None
    """Why it was refused (a server's error), when it was."""
    cut_off: bool = False
    """It stopped at max_new_tokens, not at an end of turn: it may end mid-sentence."""
    prompt_tokens: int | None = None
    """The prompt's tokens as the engine ran them (a server's usage report); None: not said."""
    generated_tokens: int | None = None
    """The tokens the engine wrote (stop tokens left out); None: not said."""


class Engine(Protocol):
    name: str
    tokenizer: Any
    """The model's tokenizer, with its chat template: what the likelihood reads are made of."""
    refusal_reasons: dict[int, str]
    """Prompt index -> why the engine refused it, for the last read call (choice_logprobs,
    token_logprobs; a server's error). Generation says it per prompt (Completion.refusal)."""

    def complete(self, prompts: list[Chat], params: SamplingParams) -> list[Completion]:
        """One Completion per prompt: its text, or why it was refused; whether max_new_tokens cut it."""

    def generate(self, prompts: list[Chat], params: SamplingParams) -> list[str | None]:
        """The texts of complete (None where a prompt was refused)."""

    def choice_logprobs(self, prompts: list[Chat], choices: list[str]) -> list[dict[str, float] | None]:
        """For each prompt, the log-probability of each choice's text written right after it (the
        choice " 4" after a prompt ending "Score:"), teacher-forced over whatever tokens the
        tokenizer makes of it there (see ChoicePlan): the same number whichever way a tokenizer
        splits the text. None where the prompt was refused."""

    def sequence_logprobs(self, reads: list[tuple[list[int], int]]) -> list[float]:
        """For each (token ids, start): log P(ids[start:] | ids[:start]), teacher-forced (what
        choice reads and the likelihood rating modes stand on)."""

    def token_logprobs(self, reads: list[tuple[list[int], int]]) -> list[list[float]]:
        """The same reads, token by token: log P(ids[t] | ids[:t]) for t in start..len(ids)-1."""

    def close(self) -> None:
        """Free the model (and its processes) before the next stage needs the memory."""


def chat_text(tokenizer, prompt: Chat) -> str:
    """The prompt through the model's chat template, ready for the assistant to write (or to
    continue its own message, when the prompt ends with one)."""
    if prompt[-1]["role"] == "assistant":
        return tokenizer.apply_chat_template(prompt, tokenize=False, continue_final_message=True)
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


def encode_chat(tokenizer, prompt: Chat) -> list[int]:
    # The template already holds any special tokens; adding them again would double the BOS.
    return tokenizer(chat_text(tokenizer, prompt), add_special_tokens=False)["input_ids"]


@dataclass
class ChoicePlan:
    """How the choices after one prompt are read, in the tokens the tokenizer makes of them.

    Each choice's text is appended to the prompt's text and the whole is tokenized; the choice's
    probability is that of the tokens after the prompt's, teacher-forced. Where the choice's first
    characters merge with the prompt's last token (the two tokenizations part before the prompt's
    end, at ``start``), the probability of the prompt's own tokens from there is divided out, so
    the read is still P(choice text | prompt text)."""

    prompt_ids: list[int]
    full_ids: dict[str, list[int]]
    """choice -> the token ids of prompt text + choice text."""
    start: dict[str, int]
    """choice -> where its tokens part from the prompt's (len(prompt_ids) when they extend it)."""

    @classmethod
    def make(cls, tokenizer, prompt: Chat, choices: list[str]) -> ChoicePlan:
        text = chat_text(tokenizer, prompt)
        prompt_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        full_ids, start = {}, {}
        for choice in choices:
            full = tokenizer(text + choice, add_special_tokens=False)["input_ids"]
            k = 0
            while k < min(len(full), len(prompt_ids)) and full[k] == prompt_ids[k]:
                k += 1
            full_ids[choice], start[choice] = full, k
        return cls(prompt_ids, full_ids, start)

    def scored_tokens(self, choice: str) -> list[int]:
        """The tokens read for a choice (after the prompt's tokens, when they extend them)."""
        return self.full_ids[choice][self.start[choice] :]

    @property
    def chain(self) -> list[int] | None:
        """When every choice extends the prompt by the same tokens and then one token of its own
        (" 4" -> ["▁", "4"] in SentencePiece, ["Ġ4"] in GPT-2): those shared tokens. One forward
        pass over prompt + chain then reads every choice. None otherwise."""
        n = len(self.prompt_ids)
        tails = [self.full_ids[c][n:] for c in self.full_ids]
        if any(self.start[c] != n for c in self.full_ids) or any(not t for t in tails):
            return None
        chain = tails[0][:-1]
        return chain if all(t[:-1] == chain for t in tails) else None

    def sequences(self) -> list[tuple[tuple[int, ...], int]]:
        """The (token ids, start) reads the choices need: log P(ids[start:] | ids[:start]) each."""
        needed = []
        for choice, full in self.full_ids.items():
            k = self.start[choice]
            needed.append((tuple(full), k))
            if k < len(self.prompt_ids):
                needed.append((tuple(self.prompt_ids), k))
        return list(dict.fromkeys(needed))

    def combine(self, read: dict[tuple[tuple[int, ...], int], float]) -> dict[str, float]:
        """Each choice's log-probability from the sequence reads ``sequences`` asked for."""
        out = {}
        for choice, full in self.full_ids.items():
            k = self.start[choice]
            value = read[(tuple(full), k)]
            if k < len(self.prompt_ids):
                value -= read[(tuple(self.prompt_ids), k)]
            out[choice] = min(value, 0.0)
        return out


def choice_mass(logprobs: dict[str, float] | None) -> float:
    """The share of the probability that went to the choices (0 for a refused prompt)."""
    return sum(math.exp(v) for v in (logprobs or {}).values() if v > -math.inf)


def logsumexp(values: list[float]) -> float:
    if not values:
        return -math.inf
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


class EngineError(RuntimeError):
    """The engine (a server, most often) cannot go on; the stage stops without being marked
    finished, so a rerun resumes from its last complete shard once the cause is fixed."""


@dataclass
class Refusal:
    """A prompt the engine would not run, and why."""

    reason: str


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """A server's message with anything that looks like a key (and each of ``secrets``) replaced by '***'."""
    from ..redaction import redact as redact_text

    return redact_text(text, secrets)


def check_refusals(engine, results: list, cfg: EngineConfig, where: str) -> None:
    """Stop when more than ``cfg.max_refused_share`` of a call's prompts were refused (None, or a
    Completion without text): an engine that refuses everything is broken, and its refusals must
    not be written down as data."""
    refused = sum(r is None or (isinstance(r, Completion) and r.text is None) for r in results)
    if results and refused and refused / len(results) > cfg.max_refused_share:
        said = {i: r.refusal for i, r in enumerate(results) if isinstance(r, Completion) and r.refusal}
        reasons = said or engine.refusal_reasons
        first = next(iter(reasons.values()), "no reason given")
        engine_name = getattr(engine, "base_url", None) or getattr(engine, "name", "engine")
        raise EngineError(
            f"{where}: {engine_name} refused {refused} of {len(results)} prompts (more than "
            f"max_refused_share={cfg.max_refused_share}); first reason: {first}. The stage stops "
            f"unfinished: fix the server (or the prompts) and rerun to resume"
        )


# engine name -> "module:class", imported on first use (torch and vLLM load only when asked for)
ENGINES = {
    "transformers": "humpback.engines.transformers:TransformersEngine",
    "vllm": "humpback.engines.vllm:VLLMEngine",
    "openai": "humpback.engines.openai:OpenAIEngine",
}


def engine_class(name: str):
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; available: {', '.join(ENGINES)}")
    module, cls = ENGINES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def make_engine(model_path: str, cfg: EngineConfig) -> Engine:
    """The engine cfg names, for model_path (for `openai`: cfg.served_model, or the path)."""
    return engine_class(cfg.engine).from_config(model_path, cfg)


@contextlib.contextmanager
def engine_for(model_path: str, cfg: EngineConfig, engine: Engine | None = None) -> Iterator[Engine]:
    """The engine to use for a block: ``engine`` when the caller gives one (left open: it is
    theirs), else one made from the config and closed after the block."""
    if engine is not None:
        yield engine
        return
    made = make_engine(model_path, cfg)
    try:
        yield made
    finally:
        made.close()
