"""The transformers engine: batching, shared-prefix KV reuse and next-token choice log-probabilities."""

import math

import pytest
from pydantic import ValidationError

from humpback.config import AugmentConfig, CurateConfig
from humpback.engine import SamplingParams, TransformersEngine, encode_chat

SYSTEM = "You rate answers. " * 12  # a shared prefix of well over min_shared_prefix tokens
PROMPTS = [[{"role": "user", "content": "hi " * n}] for n in (1, 30, 5, 12, 2, 50, 8)]
SHARED = [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": "tell me about " + "x " * n}]
          for n in (3, 40, 7, 1, 22, 9, 15)]
CONTINUED = [p + [{"role": "assistant", "content": "Score: "}] for p in SHARED]


@pytest.fixture(scope="module")
def engine(tiny_model):
    return TransformersEngine(tiny_model, dtype="float32", batch_size=3)


@pytest.fixture(scope="module")
def unshared(tiny_model):
    """The same model with prefix sharing off: the reference the shared path must reproduce."""
    return TransformersEngine(tiny_model, dtype="float32", batch_size=3, min_shared_prefix=10**9)


@pytest.mark.parametrize("prompts", [PROMPTS, SHARED, CONTINUED], ids=["no-shared-prefix", "shared", "continued"])
def test_generate_is_the_same_batched_alone_and_with_or_without_prefix_reuse(engine, unshared, prompts):
    params = SamplingParams(temperature=0.0, max_new_tokens=6)
    batched = engine.generate(prompts, params)
    one_by_one = [engine.generate([p], params)[0] for p in prompts]
    reference = unshared.generate(prompts, params)
    assert len(batched) == len(prompts)
    assert batched == one_by_one == reference  # greedy: padding, sorting and the shared prefix change nothing


def test_shared_prefix_is_encoded_once_and_reused(engine):
    engine.generate(SHARED, SamplingParams(temperature=0.0, max_new_tokens=2))
    prefix = list(engine._prefix)
    ids = [encode_chat(engine.tokenizer, p) for p in SHARED]
    assert len(prefix) >= 16 and all(i[:len(prefix)] == prefix for i in ids)
    cache = engine._prefix_cache
    engine.generate(SHARED[:2], SamplingParams(temperature=0.0, max_new_tokens=2))
    assert engine._prefix_cache is cache  # the next call found the same prefix: nothing recomputed


def test_sampling_is_seeded(engine):
    params = SamplingParams(temperature=0.7, top_p=0.9, max_new_tokens=8, seed=3)
    assert engine.generate(SHARED, params) == engine.generate(SHARED, params)


def test_choice_logprobs_match_a_plain_forward_pass(engine):
    import torch

    choices = ["1", "2", "3", "4", "5"]
    got = engine.choice_logprobs(CONTINUED, choices)
    for prompt, result in zip(CONTINUED, got):
        ids = torch.tensor([encode_chat(engine.tokenizer, prompt)])
        with torch.inference_mode():
            logprobs = torch.log_softmax(engine.model(input_ids=ids).logits[0, -1].float(), -1)
        for c in choices:
            expected = torch.logsumexp(logprobs[engine._token_ids_of(c)], 0).item()
            assert result[c] == pytest.approx(expected, abs=1e-4)
        assert sum(math.exp(v) for v in result.values()) < 1


def test_choice_tokens_are_found_by_their_text(engine):
    ids = engine._token_ids_of("4")
    assert ids and all(engine.tokenizer.decode([t]).strip() == "4" for t in ids)


def test_unknown_engine_is_a_clear_error():
    with pytest.raises(ValidationError, match="engine"):
        AugmentConfig(engine="nope")
    assert CurateConfig(engine="vllm").engine == "vllm"
