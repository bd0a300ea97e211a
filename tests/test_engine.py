
import pytest

from humpback.engine import SamplingParams, TransformersEngine, make_engine


@pytest.fixture(scope="module")
def engine(tiny_model):
    return TransformersEngine(tiny_model, batch_size=3)


PROMPTS = [[{"role": "user", "content": "hi " * n}] for n in (1, 30, 5, 12, 2, 50, 8)]


def test_generate_keeps_prompt_order_across_length_sorted_batches(engine):
    params = SamplingParams(temperature=0.0, max_new_tokens=6)
    batched = engine.generate(PROMPTS, params)
    one_by_one = [engine.generate([p], params)[0] for p in PROMPTS]
    assert len(batched) == len(PROMPTS)
    assert batched == one_by_one  # greedy: left padding and sorting must not change any answer


def test_sampling_is_seeded(engine):
    params = SamplingParams(temperature=0.7, top_p=0.9, max_new_tokens=8, seed=3)
    assert engine.generate(PROMPTS, params) == engine.generate(PROMPTS, params)


def test_score_matches_unbatched_and_prefers_likely_text(engine):
    prompts = PROMPTS[:4]
    conts = ["a", "hello there", "x y z", "Score: 5"]
    batched = engine.score(prompts, conts)
    single = [engine.score([p], [c])[0] for p, c in zip(prompts, conts)]
    assert all(s < 0 for s in batched)
    assert batched == pytest.approx(single, rel=1e-4, abs=1e-4)
    assert engine.score(prompts[:1], ["hello hello"])[0] < engine.score(prompts[:1], ["hello"])[0]


def test_unknown_engine_is_a_clear_error(tiny_model):
    with pytest.raises(ValueError, match="unknown engine 'nope'"):
        make_engine("nope", tiny_model)
