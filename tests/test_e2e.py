"""End to end with the real embedded model (SmolLM2-135M-Instruct), on a small budget."""

import pytest

from humpback import GenerateConfig, RunConfig, generate, run
from humpback.shards import read_jsonl, read_stage

pytestmark = pytest.mark.e2e


def test_embedded_model_runs_the_whole_loop(tmp_path, embedded_model):
    cfg = RunConfig(seed="demo", corpus="demo", out=tmp_path / "run", max_seed_examples=8)
    cfg.augment.max_segments = 4
    cfg.augment.max_new_tokens = 48
    cfg.curate.max_new_tokens = 64
    for train in (cfg.backward, cfg.forward):
        train.max_steps = 2
    stats = run(cfg, quiet=True)

    candidates = list(read_stage(cfg.out / "candidates"))
    assert len(candidates) == 4
    # the real model writes real instructions: words, not empty strings or token soup
    assert all(len(c["instruction"].split()) >= 3 for c in candidates)
    for i in ("1", "2"):
        it = stats["iterations"][i]
        assert it["ratings"] == 4 and sum(it["histogram"].values()) == 4
    ratings = list(read_stage(cfg.out / "iter2" / "ratings"))
    assert all(r["judge_output"] for r in ratings)
    assert len(list(read_jsonl(cfg.out / "final" / "train.jsonl"))) == 8 + stats["iterations"]["2"]["A_5"]

    answers = generate(
        ["What is the capital of France?"],
        str(cfg.out / "models" / "m2"),
        GenerateConfig(max_new_tokens=24, temperature=0.0),
    )
    assert "Paris" in answers[0]
