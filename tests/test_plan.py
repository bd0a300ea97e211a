"""humpback plan: each stage's tokens, time and cost from the inputs, before anything runs."""

from __future__ import annotations

import json

import pytest

from humpback.config import RunConfig
from humpback.plan import plan, plan_lines, throughput_from_run
from humpback.seed import load_seed
from humpback.trainer import paper_batch_size, paper_steps


def test_the_plan_counts_from_the_inputs_and_times_them_with_the_throughput(tiny_model):
    cfg = RunConfig(
        preset="small-judge", model=tiny_model, iterations=2, probe_share=0.0, price_per_million_tokens=0.5
    )
    cfg.augment.num_instructions = 4
    result = plan(cfg, sample=50, throughput={"augment": 1000.0, "curate": 2000.0, "train": 500.0})
    stages = {s["stage"]: s for s in result["stages"]}
    assert list(stages) == [
        "augment",
        "curate iter1",
        "curate iter2",
        "train backward",
        "train m0",
        "train m1",
        "train m2",
    ]
    segments = result["segments"]
    assert result["documents"] > 10 and segments > result["documents"]  # the demo pages give several segments each
    assert stages["augment"]["prompts"] == 4 * segments and stages["augment"]["read_tokens"] > 0  # best-of-4 fit reads
    assert stages["augment"]["seconds"] == pytest.approx(stages["augment"]["tokens"] / 1000.0, abs=0.1)
    assert stages["augment"]["cost"] == pytest.approx(stages["augment"]["tokens"] / 1e6 * 0.5, abs=0.01)
    # the demo's mode (features) reads likelihoods: no prompt is generated from
    assert stages["curate iter1"]["generated_tokens"] == 0 and stages["curate iter1"]["read_tokens"] > 0
    seed, _ = load_seed("demo")
    m0 = stages["train m0"]
    assert m0["prompts"] == len(seed)
    assert m0["trained_tokens"] > paper_steps(len(seed)) * paper_batch_size(len(seed))  # > 1 token per example
    assert (
        stages["train m1"]["prompts"] == len(seed) + round(0.0833 * segments)
        or stages["train m1"]["prompts"] > m0["prompts"]
    )
    assert result["total_seconds"] == pytest.approx(sum(s["seconds"] for s in result["stages"]), abs=1)
    text = "\n".join(plan_lines(result))
    assert "augment" in text and "assumed: " in text and "selected" in text


def test_generate_mode_counts_what_the_judge_writes_and_no_throughput_says_how_to_get_one(tiny_model):
    cfg = RunConfig(model=tiny_model, iterations=1)
    cfg.curate.mode, cfg.curate.select = "generate", "score_at_least"
    result = plan(cfg, sample=20)
    curate = next(s for s in result["stages"] if s["stage"] == "curate iter1")
    assert curate["generated_tokens"] == 60 * result["segments"] and curate["prompt_tokens"] > 0
    assert curate["seconds"] is None and "--from-run" in plan_lines(result)[-1]


def test_a_finished_run_s_accounting_gives_the_throughput(tmp_path):
    stats = {
        "segment_funnel": {"documents": 100},
        "accounting": {
            "segment": {"seconds": 4.0},
            "augment": {"tokens_per_second": 600.0, "prompts": 10, "generated_tokens": 100},
            "curate iter1": {"tokens_per_second": 1000.0, "prompts": 10, "generated_tokens": 500},
            "curate iter2": {"tokens_per_second": 2000.0, "prompts": 10, "generated_tokens": 700},
            "train m0": {"tokens_per_second": 300.0},
        },
    }
    (tmp_path / "stats.json").write_text(json.dumps(stats))
    rates = throughput_from_run(tmp_path)
    assert rates["augment"] == 600.0 and rates["curate"] == 1500.0 and rates["train"] == 300.0
    assert rates["segment_documents"] == 25.0 and rates["judge_generated_per_prompt"] == 60.0


def test_plan_from_the_command_line(tmp_path, tiny_model):
    from typer.testing import CliRunner

    from humpback.cli import app

    (tmp_path / "rates.json").write_text(json.dumps({"augment": 800, "curate": 1600, "train": 400}))
    args = ["plan", "--model", tiny_model, "--sample", "20", "--throughput", str(tmp_path / "rates.json")]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "plan.json"), "--documents", "1000000"])
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "plan.json").read_text())
    assert written["documents"] == 1_000_000 and not written["documents_counted"] and written["total_seconds"] > 0
    given = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "paper.json"), "--segments", "502133"])
    assert given.exit_code == 0, given.output
    paper = json.loads((tmp_path / "paper.json").read_text())
    assert paper["segments"] == 502_133 and paper["stages"][0]["prompts"] == 502_133 * 4  # best-of-4 by default
    assert "502133 given" in given.output
    again = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "plan.json")])
    assert again.exit_code == 2 and "already exists" in again.output
    (tmp_path / "bad.json").write_text('{"augment": "fast"}')
    bad = CliRunner().invoke(app, ["plan", "--model", tiny_model, "--throughput", str(tmp_path / "bad.json")])
    assert bad.exit_code == 2 and "positive numbers" in bad.output


def test_measure_times_every_stage_here_with_the_run_s_engines(tiny_model, tmp_path):
    """--measure: a few batches of augmentation and rating and a few training steps with the run's
    base model give every stage a time; a given rate still wins over a measured one."""
    from typer.testing import CliRunner

    from humpback.cli import app

    cfg = RunConfig(preset="small-judge", model=tiny_model, iterations=1)
    cfg.augment.max_new_tokens = 8
    result = plan(cfg, sample=10, measure=True, throughput={"train": 123.0})
    rates = result["throughput"]
    assert rates["augment"] > 0 and rates["curate"] > 0 and rates["segment_documents"] > 0
    assert rates["train"] == 123.0  # given, so not measured over
    assert all(s["seconds"] is not None for s in result["stages"])
    assert not list(tmp_path.iterdir())  # the measuring training wrote nowhere a user sees
    out = CliRunner().invoke(app, ["plan", "--model", tiny_model, "--sample", "5", "--measure"])
    assert out.exit_code == 0, out.output
    assert "no throughput given" not in out.output
