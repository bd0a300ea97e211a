"""Shared fixtures: a tiny random-weight model with the real tokenizer, built in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FIXTURES = Path(__file__).parent / "fixtures"


def shared_data(rel: str) -> Path:
    path = SHARED / rel
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared real-data folder is only beside the developers' checkout")
    return path


@pytest.fixture(scope="session")
def embedded_model() -> str:
    """The embedded SmolLM2-135M-Instruct, converted once into the user cache."""
    from humpback.models import resolve_model

    return resolve_model("smollm2-135m")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, embedded_model) -> str:
    """A 2-layer random-weight Llama with SmolLM2's real tokenizer and chat template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-model")
    tokenizer = AutoTokenizer.from_pretrained(embedded_model)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


class ScriptedEngine:
    """An Engine that answers from a function of the prompt: for testing stage logic exactly."""

    name = "scripted"

    def __init__(self, answer):
        self.answer = answer
        self.calls = 0

    def generate(self, prompts, params):
        self.calls += 1
        return [self.answer(p) for p in prompts]

    def score(self, prompts, continuations):
        return [0.0 for _ in prompts]
