"""Ablations of a finished run: the arms' data, the intervals, the scaling fit, and a resumable run."""

from __future__ import annotations

import json
import random

import pytest

from humpback.ablate import arm_data, bootstrap, fit_log_slope, summarize
from humpback.config import AblateConfig

SEED = [{"id": f"s{i}", "source": "x", "instruction": f"q{i}", "output": f"a{i}"} for i in range(5)]
CANDIDATES = [{"id": f"c{i}", "instruction": f"Q{i}", "output": f"A{i}"} for i in range(40)]
CURATED = CANDIDATES[:7]


def test_the_random_arm_is_the_curated_sets_size_and_seeded():
    _, first, _ = arm_data("random", SEED, CURATED, CANDIDATES, draw=3)
    _, again, _ = arm_data("random", SEED, CURATED, CANDIDATES, draw=3)
    _, other, _ = arm_data("random", SEED, CURATED, CANDIDATES, draw=4)
    assert len(first) == len(CURATED) and first == again and first != other
    assert arm_data("curated_only", SEED, CURATED, CANDIDATES, 0)[:2] == ([], CURATED)
    assert arm_data("untagged", SEED, CURATED, CANDIDATES, 0)[2] == "none"
    assert len(arm_data("curated@3", SEED, CURATED, CANDIDATES, 0)[1]) == 3
    with pytest.raises(ValueError, match="unknown ablation arm"):
        arm_data("bogus", SEED, CURATED, CANDIDATES, 0)


def test_the_log_fit_recovers_a_known_slope():
    rng = random.Random(0)
    points = [(n, -0.3 * __import__("math").log(n) + 2.0 + rng.gauss(0, 0.001)) for n in (10, 20, 40, 80, 160)]
    fit = fit_log_slope(points)
    assert fit["alpha"] == pytest.approx(-0.3, abs=0.01) and fit["c"] == pytest.approx(2.0, abs=0.02)
    assert fit_log_slope([(10, 1.0), (10, 1.1)]) is None  # one size: no slope


def test_an_arm_clearly_better_than_random_has_an_interval_below_zero():
    rng = random.Random(1)

    def arm(level):  # 3 seeds x 30 pairs of (summed loss, tokens)
        return [[(level * 10 + rng.gauss(0, 1), 10) for _ in range(30)] for _ in range(3)]

    losses = {"random": arm(2.0), "curated": arm(1.5), "seed": arm(2.0)}
    result = summarize(losses, {"random": 7, "curated": 7, "seed": 0}, 7, AblateConfig(bootstrap_rounds=200))
    curated, seed = result["arms"]["curated"], result["arms"]["seed"]
    assert curated["minus_random"] == pytest.approx(-0.5, abs=0.05) and curated["minus_random_interval"][1] < 0
    low, high = seed["minus_random_interval"]
    assert low < 0 < high  # the same level as random: the interval holds zero
    assert (
        bootstrap(losses["curated"], None, 200, 0)[0]
        < curated["answer_loss"]
        < bootstrap(losses["curated"], None, 200, 0)[1]
    )


def test_win_rates_over_m0_average_prompts_and_seeds():
    from humpback.ablate import win_rate_summary

    per_seed = [{"a": 1.0, "b": 0.5}, {"a": 1.0, "b": 1.0}]
    found = win_rate_summary(per_seed, AblateConfig(bootstrap_rounds=200))
    assert found["win_rate"] == 87.5 and found["prompts"] == 2
    assert found["interval"][0] <= 87.5 <= found["interval"][1] <= 100


@pytest.mark.slow
def test_ablate_a_finished_run_resumes_without_retraining_finished_models(tmp_path, tiny_model, monkeypatch):
    from humpback import run
    from humpback.ablate import ablate
    from humpback.config import RunConfig

    cfg = RunConfig(seed="demo", corpus="demo", model=tiny_model, out=tmp_path / "run", max_seed_examples=14)
    cfg.probe_share, cfg.probe_min_pairs, cfg.iterations = 0.3, 4, 1
    cfg.augment.max_segments, cfg.augment.max_new_tokens, cfg.augment.num_instructions = 8, 12, 1
    cfg.curate.mode, cfg.curate.select, cfg.curate.select_fraction = "pmi", "top_fraction", 0.5
    for train in (cfg.backward, cfg.forward):
        train.max_steps, train.micro_batch_size = 1, 4
    run(cfg, quiet=True)

    settings = AblateConfig(arms=["seed", "curated", "random"], seeds=2, max_steps=1, bootstrap_rounds=100)
    result = ablate(cfg.out, settings)
    assert set(result["arms"]) == {"seed", "curated", "random"} and result["probe_pairs"] == 4
    curated = result["arms"]["curated"]["augmented_examples"]
    assert curated > 0 and result["arms"]["random"]["augmented_examples"] == curated
    assert json.loads((cfg.out / "ablate" / "ablations.json").read_text()) == json.loads(json.dumps(result))
    assert "Ablations (2 seeds" in (cfg.out / "report.md").read_text()

    # a kill during the random arm's second model: the rerun trains that one only
    done = {p: p.stat().st_mtime for p in (cfg.out / "ablate").glob("*/seed*/_SUCCESS")}
    (cfg.out / "ablate" / "random" / "seed1" / "_SUCCESS").unlink()
    (cfg.out / "ablate" / "random" / "seed1.losses.json").unlink()
    again = ablate(cfg.out, settings)
    kept = {p: p.stat().st_mtime for p in done if p.exists() and "random/seed1" not in str(p)}
    assert len(kept) == 5 and all(done[p] == t for p, t in kept.items())
    assert again["arms"]["seed"] == result["arms"]["seed"]

    # with a judge: one built to prefer the curated arm's answers shows that arm winning over M_0
    import sys

    from conftest import ScriptedEngine

    import humpback.ablate as ablate_module

    def answers(prompts, model, cfg, name):  # what each model writes (the tiny models write noise)
        text = "CURATED answer" if "/curated/" in str(model) else "plain answer"
        return [{"instruction": p["instruction"], "output": text, "generator": name} for p in prompts], []

    def prefers_curated(prompt):
        shown_a = prompt[-1]["content"].split("Answer A:\n", 1)[1]
        return "Verdict: A" if shown_a.startswith("CURATED") else "Verdict: B"

    evaluate_module = sys.modules["humpback.evaluate"]
    original = evaluate_module.engine_for
    monkeypatch.setattr(ablate_module, "answer", answers)
    monkeypatch.setattr(
        evaluate_module, "engine_for", lambda m, c, e=None: original(m, c, ScriptedEngine(prefers_curated))
    )
    judged = settings.model_copy(
        update={
            "judge": settings.judge.model_copy(update={"enabled": True, "model": "test/judge", "mode": "generate"})
        }
    )
    rates = ablate(cfg.out, judged)["win_rate_over_m0"]
    assert rates["curated"]["win_rate"] == 100.0 and rates["seed"]["win_rate"] == rates["random"]["win_rate"] == 50.0
    assert rates["curated"]["prompts"] == 4
