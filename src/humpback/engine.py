"""Generation engines: the one interface every stage generates and scores through.

An engine turns chat prompts into completions (``generate``) and gives the log-probability of
given continuations (``score``). Stages only see this interface, so a faster engine (vLLM, a
server) is one more entry in ENGINES, not a change to a stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from tqdm.auto import tqdm

Chat = list[dict]  # [{"role": ..., "content": ...}, ...]


@dataclass
class SamplingParams:
    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 256
    seed: int | None = None


class Engine(Protocol):
    name: str

    def generate(self, prompts: list[Chat], params: SamplingParams) -> list[str]:
        """One completion per prompt, the assistant's reply only. A prompt whose last message is
        the assistant's is continued from that text (a prefix), as vLLM's continue_final_message."""

    def score(self, prompts: list[Chat], continuations: list[str]) -> list[float]:
        """Sum of the log-probabilities of each continuation after its prompt."""


def chat_text(tokenizer, prompt: Chat) -> str:
    """The prompt through the model's chat template, ready for the assistant to write (or to
    continue its own message, when the prompt ends with one)."""
    if prompt[-1]["role"] == "assistant":
        return tokenizer.apply_chat_template(prompt, tokenize=False, continue_final_message=True)
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


class TransformersEngine:
    """Batched generation with transformers: prompts sorted by length, left padding."""

    name = "transformers"

    def __init__(self, model_path: str, dtype: str = "float32", batch_size: int = 8, device: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM

        from .models import load_tokenizer, torch_dtype

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = load_tokenizer(model_path, padding_side="left")
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch_dtype(dtype)).to(self.device)
        self.model.eval()
        self.batch_size = batch_size
        self.model_path = model_path

    def _encode(self, prompts: list[Chat]) -> list[list[int]]:
        texts = [chat_text(self.tokenizer, p) for p in prompts]
        return [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]

    def generate(self, prompts: list[Chat], params: SamplingParams) -> list[str]:
        import torch

        encoded = self._encode(prompts)
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # less padding per batch
        outputs: list[str] = [""] * len(encoded)
        if params.seed is not None:
            torch.manual_seed(params.seed)
        sample = params.temperature > 0
        bar = tqdm(total=len(encoded), desc="generate", unit="prompt", leave=False)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            batch = self.tokenizer.pad({"input_ids": [encoded[i] for i in idx]}, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                out = self.model.generate(
                    **batch,
                    max_new_tokens=params.max_new_tokens,
                    do_sample=sample,
                    temperature=params.temperature if sample else None,
                    top_p=params.top_p if sample else None,
                    top_k=None,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
            new_tokens = out[:, batch["input_ids"].shape[1]:]
            for i, row in zip(idx, new_tokens):
                outputs[i] = self.tokenizer.decode(row, skip_special_tokens=True).strip()
            bar.update(len(idx))
        bar.close()
        return outputs

    def score(self, prompts: list[Chat], continuations: list[str]) -> list[float]:
        import torch

        prompt_ids = self._encode(prompts)
        scores: list[float] = []
        for start in range(0, len(prompts), self.batch_size):
            rows, spans = [], []
            for p, c in zip(prompt_ids[start:start + self.batch_size], continuations[start:start + self.batch_size]):
                cont = self.tokenizer(c, add_special_tokens=False)["input_ids"]
                rows.append(p + cont)
                spans.append((len(p), len(p) + len(cont)))
            self.tokenizer.padding_side = "right"
            batch = self.tokenizer.pad({"input_ids": rows}, return_tensors="pt").to(self.device)
            self.tokenizer.padding_side = "left"
            with torch.inference_mode():
                logprobs = torch.log_softmax(self.model(**batch).logits.float(), dim=-1)
            for row, (lo, hi) in enumerate(spans):
                targets = batch["input_ids"][row, lo:hi]
                scores.append(logprobs[row, lo - 1:hi - 1].gather(-1, targets[:, None]).sum().item())
        return scores


ENGINES = {"transformers": TransformersEngine}


def make_engine(name: str, model_path: str, **kwargs) -> Engine:
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; available: {', '.join(ENGINES)}")
    return ENGINES[name](model_path, **kwargs)
