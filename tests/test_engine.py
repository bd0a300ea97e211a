"""The transformers engine: batching, shared-prefix KV reuse and next-token choice log-probabilities."""

import math
import os
from collections import Counter

import pytest
from pydantic import ValidationError

from humpback.config import AugmentConfig, CurateConfig
from humpback.engines import SamplingParams, encode_chat
from humpback.engines.base import ChoicePlan, chat_text
from humpback.engines.transformers import GrowingLayer, TransformersEngine

SYSTEM = "You rate answers. " * 12  # a shared prefix of well over min_shared_prefix tokens
PROMPTS = [[{"role": "user", "content": "hi " * n}] for n in (1, 30, 5, 12, 2, 50, 8)]
SHARED = [
    [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "tell me about " + "x " * n}]
    for n in (3, 40, 7, 1, 22, 9, 15)
]
CONTINUED = [p + [{"role": "assistant", "content": "Score:"}] for p in SHARED]


@pytest.fixture(scope="module")
def engine(lively_model):
    return TransformersEngine(lively_model, dtype="float32", batch_size=3, prefill_rows=2)


@pytest.fixture(scope="module")
def unshared(lively_model):
    """The same model with prefix sharing off: the reference the shared path must reproduce."""
    return TransformersEngine(lively_model, dtype="float32", batch_size=3, min_shared_prefix=10**9)


@pytest.mark.parametrize("prompts", [PROMPTS, SHARED, CONTINUED], ids=["no-shared-prefix", "shared", "continued"])
def test_generate_is_the_same_batched_alone_and_with_or_without_prefix_reuse(engine, unshared, prompts):
    params = SamplingParams(temperature=0.0, max_new_tokens=6)
    batched = engine.generate(prompts, params)
    one_by_one = [engine.generate([p], params)[0] for p in prompts]
    reference = unshared.generate(prompts, params)
    assert len(batched) == len(prompts)
    assert batched == one_by_one == reference  # greedy: padding, sorting and the shared prefix change nothing


def _hf_generate_ids(engine, prompt, max_new_tokens, eos_token_id=None) -> list[int]:
    """The reference: plain model.generate on one prompt, no padding, no shared cache."""
    import torch

    ids = torch.tensor([encode_chat(engine.tokenizer, prompt)])
    with torch.inference_mode():
        out = engine.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=max_new_tokens,
            pad_token_id=engine.tokenizer.pad_token_id,
            eos_token_id=eos_token_id,
        )
    return out[0, ids.shape[1] :].tolist()


def _hf_generate(engine, prompt, max_new_tokens) -> str:
    return engine.tokenizer.decode(_hf_generate_ids(engine, prompt, max_new_tokens), skip_special_tokens=True).strip()


@pytest.mark.parametrize("prompts", [PROMPTS, SHARED], ids=["no-shared-prefix", "shared"])
def test_greedy_generation_equals_plain_model_generate(engine, prompts):
    got = engine.generate(prompts, SamplingParams(temperature=0.0, max_new_tokens=12))
    assert got == [_hf_generate(engine, p, 12) for p in prompts]
    assert len(set(got)) == len(got) and all(got)  # the model's answers depend on the prompt: a real check


def test_rows_that_stop_early_are_dropped_and_the_rest_go_on(lively_model, monkeypatch):
    """With a stop token that some rows write early and others late or never, the outputs still
    equal model.generate's, so dropping finished rows from the batch (and its cache) is exact."""
    engine = TransformersEngine(lively_model, dtype="float32", batch_size=7)
    params = SamplingParams(temperature=0.0, max_new_tokens=16)
    free = engine.generate_ids([encode_chat(engine.tokenizer, p) for p in SHARED], params)
    counts = Counter(t for row in free for t in set(row[1:12]))
    stop = next(t for t, c in counts.most_common() if 2 <= c < len(SHARED))  # some rows reach it, others do not
    engine.stop_ids = {stop}
    layer_class, dropped = GrowingLayer, []
    keep_rows = layer_class.keep_rows
    monkeypatch.setattr(
        layer_class, "keep_rows", lambda self, rows: dropped.append(len(rows)) or keep_rows(self, rows)
    )
    got = engine.generate_ids([encode_chat(engine.tokenizer, p) for p in SHARED], params)
    expected = [[t for t in _hf_generate_ids(engine, p, 16, eos_token_id=stop) if t != stop] for p in SHARED]
    assert got == expected  # model.generate keeps the stop token; ours leaves it out, as for a real end token
    assert any(len(row) < 16 for row in got) and any(len(row) == 16 for row in got)
    assert dropped, "no row was dropped: the test did not exercise the early stop"


def test_grouped_attention_equals_eager_attention():
    import torch
    from transformers.models.llama.modeling_llama import eager_attention_forward

    from humpback.engines.transformers import _grouped_attention

    class Module:  # what the attention functions read from the layer
        num_key_value_groups, training = 3, False

    torch.manual_seed(0)
    query, key, value = torch.randn(2, 6, 4, 8), torch.randn(2, 2, 9, 8), torch.randn(2, 2, 9, 8)
    mask = torch.zeros(2, 1, 4, 9)
    mask[0, :, :, :3] = torch.finfo(torch.float32).min  # row 0 has three padding columns
    expected, _ = eager_attention_forward(Module(), query, key, value, mask, scaling=0.35)
    got, _ = _grouped_attention(Module(), query, key, value, mask, scaling=0.35)
    torch.testing.assert_close(got, expected)


def test_nucleus_sampling_draws_only_from_the_nucleus():
    import torch

    from humpback.engines.transformers import _sample

    torch.manual_seed(0)
    params = SamplingParams(temperature=1.0, top_p=0.9)
    peaked = torch.full((1, 5000), -20.0)
    peaked[0, :4] = torch.tensor([3.0, 2.0, 1.0, 0.5])  # the nucleus lies in the shortlist
    flat = torch.linspace(0.0, -1.0, 5000)[None]  # ~4,400 tokens needed: the full-sort path
    for logits in (peaked, flat):
        probs = torch.softmax(logits[0], -1)
        ranked = probs.argsort(descending=True)
        before = probs[ranked].cumsum(0) - probs[ranked]
        nucleus = set(ranked[before < 0.9].tolist())
        drawn = {_sample(logits, params).item() for _ in range(300)}
        assert drawn <= nucleus and len(drawn) > 1
    assert _sample(peaked, SamplingParams(temperature=0.0)).item() == 0


def test_shared_prefix_is_encoded_once_and_reused(engine):
    engine.generate(SHARED, SamplingParams(temperature=0.0, max_new_tokens=2))
    prefix = list(engine._prefix)
    ids = [encode_chat(engine.tokenizer, p) for p in SHARED]
    assert len(prefix) >= 16 and all(i[: len(prefix)] == prefix for i in ids)
    cache = engine._prefix_cache
    engine.generate(SHARED[:2], SamplingParams(temperature=0.0, max_new_tokens=2))
    assert engine._prefix_cache is cache  # the next call found the same prefix: nothing recomputed


def test_sampling_is_seeded(engine):
    params = SamplingParams(temperature=0.7, top_p=0.9, max_new_tokens=8, seed=3)
    assert engine.generate(SHARED, params) == engine.generate(SHARED, params)


def _teacher_forced(engine, prompt, choice) -> float:
    """The reference: log P(choice text | prompt text) from one plain forward pass over the whole
    text, summing the log-probabilities of the tokens after the prompt's own."""
    import torch

    text = chat_text(engine.tokenizer, prompt)
    prompt_ids = engine.tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = engine.tokenizer(text + choice, add_special_tokens=False)["input_ids"]
    assert ids[: len(prompt_ids)] == prompt_ids  # the choice extends the prompt's tokens (SmolLM2's BPE)
    with torch.inference_mode():
        logprobs = torch.log_softmax(engine.model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
    return sum(logprobs[t - 1, ids[t]].item() for t in range(len(prompt_ids), len(ids)))


@pytest.mark.parametrize(
    "choices",
    [
        [" 1", " 2", " 3", " 4", " 5"],  # one token each after the prompt
        [" yes", " no", " maybe so", "\n\n5"],
    ],
)  # several tokens: read one by one
def test_choice_logprobs_are_each_choices_teacher_forced_probability(engine, choices):
    got = engine.choice_logprobs(CONTINUED, choices)
    for prompt, result in zip(CONTINUED, got):
        for c in choices:
            assert result[c] == pytest.approx(_teacher_forced(engine, prompt, c), abs=1e-4)
        assert sum(math.exp(v) for v in result.values()) < 1


def test_a_choice_that_merges_with_the_prompt_is_read_as_text(engine):
    """A prompt ending in a space that the choice's first token swallows ("ĠA" after "Verdict: "):
    the read divides out the prompt's own last token, so it is P(choice text | prompt text)."""
    import torch

    prompt = SHARED[0] + [{"role": "assistant", "content": "Verdict: "}]
    plan = ChoicePlan.make(engine.tokenizer, prompt, ["A"])
    got = engine.choice_logprobs([prompt], ["A"])[0]["A"]
    full, k = plan.full_ids["A"], plan.start["A"]
    assert k < len(plan.prompt_ids)  # the case under test: the tokenizations part before the prompt's end
    with torch.inference_mode():

        def lp(ids):
            return torch.log_softmax(engine.model(input_ids=torch.tensor([ids])).logits[0].float(), -1)

        whole, alone = lp(full), lp(plan.prompt_ids)
    expected = sum(whole[t - 1, full[t]].item() for t in range(k, len(full))) - sum(
        alone[t - 1, plan.prompt_ids[t]].item() for t in range(k, len(plan.prompt_ids))
    )
    assert got == pytest.approx(min(expected, 0.0), abs=1e-4)


def test_unknown_engine_is_a_clear_error():
    with pytest.raises(ValidationError, match="engine"):
        AugmentConfig(engine="nope")
    assert CurateConfig(engine="vllm").engine == "vllm"


def test_follow_up_text_is_fed_as_if_written_and_decoding_goes_on(engine):
    """A follow-up appends text to a stopped completion and decodes a few tokens more: the same
    tokens model.generate writes when given the prompt, the completion and that text."""
    import torch

    encoded = [encode_chat(engine.tokenizer, p) for p in SHARED[:4]]
    plain = engine.generate_ids(encoded, SamplingParams(temperature=0.0, max_new_tokens=6))
    params = SamplingParams(
        temperature=0.0, max_new_tokens=6, follow_up_tokens=3, follow_up=lambda i, text: "\nScore:" if i == 1 else None
    )
    got = engine.generate_ids(encoded, params)
    forced = engine.tokenizer("\nScore:", add_special_tokens=False)["input_ids"]
    assert got[0] == plain[0] and got[2:] == plain[2:]  # the others are untouched
    assert got[1][:6] == plain[1] and got[1][6 : 6 + len(forced)] == forced and len(got[1]) == 6 + len(forced) + 3
    ids = torch.tensor([encoded[1] + plain[1] + forced])
    with torch.inference_mode():
        reference = engine.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=3,
            pad_token_id=engine.tokenizer.pad_token_id,
        )
    assert got[1][6 + len(forced) :] == reference[0, ids.shape[1] :].tolist()


def test_judges_get_their_score_line_in_the_same_pass(lively_model):
    from humpback.config import CurateConfig
    from humpback.rubric import load_template, rate_generate

    engine = TransformersEngine(lively_model, dtype="float32", batch_size=4)
    calls = []  # every generation pass: complete, and generate (what a second pass would use)
    complete, generate = engine.complete, engine.generate
    engine.complete = lambda prompts, params: calls.append(len(prompts)) or complete(prompts, params)
    engine.generate = lambda prompts, params: calls.append(len(prompts)) or generate(prompts, params)
    candidates = [{"id": str(i), "instruction": f"Say {i}.", "output": f"{i}!"} for i in range(3)]
    fields = rate_generate(candidates, engine, CurateConfig(max_new_tokens=8), load_template(None, "generate"), 0)
    assert calls == [3]  # no second pass
    for f in fields:
        assert f["score_line_prompted"] and f["judge_output"].splitlines()[-1].startswith("Score:")


def test_sequence_logprobs_match_one_plain_forward_pass_each(engine):
    """Batched reads of different lengths and starts (the likelihood signals) equal each sequence
    read alone by a plain forward pass."""
    import torch

    texts = [
        chat_text(engine.tokenizer, p + [{"role": "assistant", "content": a}])
        for p, a in zip(SHARED, ["Blue, mostly.", "It depends on the weather and the light.", "No."])
    ]
    reads = []
    for i, text in enumerate(texts):
        ids = engine.tokenizer(text, add_special_tokens=False)["input_ids"]
        reads.append((ids, len(ids) - 3 - 2 * i))
    got = engine.sequence_logprobs(reads)
    for (ids, start), value in zip(reads, got):
        with torch.inference_mode():
            logprobs = torch.log_softmax(engine.model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
        assert value == pytest.approx(sum(logprobs[t - 1, ids[t]].item() for t in range(start, len(ids))), abs=1e-3)


def test_repeated_prompts_share_one_prefill_and_decode_as_if_alone(engine):
    """Best-of-n augmentation gives each segment n times: its tokens are prefilled once, copied to
    the other rows, and every row still decodes exactly what it would alone."""
    first, second = [{"role": "user", "content": "apple " * 20}], [{"role": "user", "content": "river " * 30}]
    prompts = [first] * 3 + [second] * 3  # two prompts, three samples each, in one batch of 6
    wide = TransformersEngine(engine.model_path, dtype="float32", batch_size=6, prefill_rows=1)
    prefilled = []
    hook = wide.model.register_forward_pre_hook(
        lambda module, args, kwargs: (
            prefilled.append(kwargs["input_ids"].shape) if kwargs["input_ids"].shape[1] > 1 else None
        ),
        with_kwargs=True,
    )
    try:
        got = wide.generate(prompts, SamplingParams(temperature=0.0, max_new_tokens=8))
    finally:
        hook.remove()
    shared_prefix = 1 if wide._prefix else 0  # the template's system line, read once for every row
    assert len(prefilled) == 2 + shared_prefix and all(rows == 1 for rows, _ in prefilled)  # once per distinct prompt
    alone = [_hf_generate(wide, p, 8) for p in (first, second)]
    assert got == [alone[0]] * 3 + [alone[1]] * 3 and alone[0] != alone[1]
    sampled = wide.generate(prompts, SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=8, seed=1))
    assert len(set(sampled[:3])) > 1  # the copies are sampled independently


def test_auto_dtype_is_bfloat16_only_where_the_hardware_computes_it(monkeypatch):
    from humpback import models

    monkeypatch.setattr(models, "bf16_is_fast", lambda device=None: False)
    assert models.resolve_dtype("auto") == "float32" and models.resolve_dtype("bfloat16") == "bfloat16"
    monkeypatch.setattr(models, "bf16_is_fast", lambda device=None: True)
    assert models.resolve_dtype("auto") == "bfloat16" and models.resolve_dtype("float32") == "float32"


def test_vllm_threads_use_every_core_only_on_small_cpu_machines(monkeypatch):
    """vLLM's default binding leaves a core to its scheduler: on 2 cores that halved its reads."""
    from humpback.engines.vllm import cpu_thread_binding

    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    with cpu_thread_binding(on_gpu=False):
        assert os.environ["VLLM_CPU_OMP_THREADS_BIND"] == "nobind"
    assert "VLLM_CPU_OMP_THREADS_BIND" not in os.environ  # the caller's environment as it was
    with cpu_thread_binding(on_gpu=True):
        assert "VLLM_CPU_OMP_THREADS_BIND" not in os.environ
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    with cpu_thread_binding(on_gpu=False):
        assert "VLLM_CPU_OMP_THREADS_BIND" not in os.environ  # vLLM's binding where a core is little
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "0-1")
    with cpu_thread_binding(on_gpu=False):
        assert os.environ["VLLM_CPU_OMP_THREADS_BIND"] == "0-1"  # the user's choice stands
    assert os.environ["VLLM_CPU_OMP_THREADS_BIND"] == "0-1"
