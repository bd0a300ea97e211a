import json

import yaml
from conftest import write_jsonl
from typer.testing import CliRunner

from humpback.cli import app
from humpback.shards import read_jsonl, read_stage, stage_counters

runner = CliRunner()


def test_every_stage_is_a_command():
    result = runner.invoke(app, ["--help"])
    for command in ("run", "segment", "train", "augment", "curate", "generate"):
        assert command in result.output


def test_help_fits_an_80_column_terminal():
    import typer.main

    for name in typer.main.get_command(app).commands:
        result = runner.invoke(app, [name, "--help"], terminal_width=80, env={"COLUMNS": "80"})
        assert result.exit_code == 0, name
        wide = [line for line in result.output.splitlines() if len(line) > 80]
        assert not wide, (name, wide[:3])
        assert "Options:" in result.output and "--help" in result.output, name


def test_config_fields_are_flags_and_yaml_keys(tmp_path):
    (tmp_path / "seg.yaml").write_text(yaml.safe_dump({"min_chars": 100000, "max_chars": 200000}))
    out = tmp_path / "seg"
    result = runner.invoke(
        app, ["segment", "--corpus", "demo", "--out", str(out), "--config", str(tmp_path / "seg.yaml")]
    )
    assert result.exit_code == 0, result.output
    assert stage_counters(out)["segments_kept"] == 0  # YAML applied: nothing is that long
    out2 = tmp_path / "seg2"
    result = runner.invoke(
        app,
        [
            "segment",
            "--corpus",
            "demo",
            "--out",
            str(out2),
            "--config",
            str(tmp_path / "seg.yaml"),
            "--min-chars",
            "600",
            "--max-chars",
            "3000",
        ],
    )
    assert result.exit_code == 0, result.output
    assert stage_counters(out2)["segments_kept"] > 20  # flags override YAML


def test_run_has_nested_stage_flags():
    import typer.main

    run = typer.main.get_command(app).commands["run"]
    flags = {opt for p in run.params for opt in p.opts}
    for flag in (
        "--seed",
        "--corpus",
        "--model",
        "--iterations",
        "--segment-min-chars",
        "--curate-k",
        "--forward-tag-placement",
        "--backward-learning-rate",
        "--augment-temperature",
        "--forward-use-lora",
    ):
        assert flag in flags, flag
    assert "Shortest segment kept" in next(p.help for p in run.params if "--segment-min-chars" in p.opts)


def test_each_stage_picks_its_own_engine():
    from humpback.cli import _nest
    from humpback.config import RunConfig

    flat = {
        "augment_engine": "vllm",
        "curate_engine": "openai",
        "curate_base_url": "http://judge:8000/v1",
        "curate_mode": "logprob",
        "augment_max_model_len": 2048,
    }
    cfg = RunConfig.model_validate(_nest(flat, RunConfig))
    assert (cfg.augment.engine, cfg.augment.max_model_len) == ("vllm", 2048)
    assert (cfg.curate.engine, cfg.curate.base_url, cfg.curate.mode) == ("openai", "http://judge:8000/v1", "logprob")
    assert "api_key" not in str(cfg.model_dump()).replace("api_key_env", "")  # only the variable's name is config


def test_run_reports_a_missing_model_clearly(tmp_path):
    result = runner.invoke(app, ["run", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_train_augment_curate_generate_commands(tmp_path, tiny_model):
    seed = write_jsonl(tmp_path / "seed.jsonl", [{"instruction": f"Q{i}?", "output": f"A{i}."} for i in range(6)])
    r = runner.invoke(
        app,
        [
            "train",
            "--kind",
            "backward",
            "--seed",
            str(seed),
            "--model",
            tiny_model,
            "--out",
            str(tmp_path / "bw"),
            "--max-steps",
            "1",
        ],
    )
    assert r.exit_code == 0, r.output
    segs = tmp_path / "segs"
    write_jsonl(
        segs / "part-00000.jsonl",
        [{"id": f"s{i}", "source": "x", "header": "h", "text": f"text {i}"} for i in range(3)],
    )
    r = runner.invoke(
        app,
        [
            "augment",
            "--segments",
            str(segs),
            "--model",
            str(tmp_path / "bw"),
            "--out",
            str(tmp_path / "cand"),
            "--max-new-tokens",
            "6",
            "--num-instructions",
            "3",
            "--fit-model",
            tiny_model,
        ],
    )
    assert r.exit_code == 0, r.output
    candidates = list(read_stage(tmp_path / "cand"))
    assert [c["id"] for c in candidates] == ["s0", "s1", "s2"]
    for c in candidates:  # the kept instruction is the best-fitting of its segment's samples
        assert all(c["fit"] >= a["fit"] for a in c["alternatives"]) and len(c["alternatives"]) <= 2
    r = runner.invoke(
        app,
        [
            "curate",
            "--candidates",
            str(tmp_path / "cand"),
            "--model",
            tiny_model,
            "--out",
            str(tmp_path / "iter1"),
            "--max-new-tokens",
            "6",
            "--k",
            "4",
        ],
    )
    assert r.exit_code == 0, r.output
    assert len(list(read_stage(tmp_path / "iter1" / "ratings"))) == 3
    r = runner.invoke(
        app,
        [
            "curate",
            "--candidates",
            str(tmp_path / "cand"),
            "--model",
            tiny_model,
            "--compare",
            "--compare-sample",
            "2",
            "--out",
            str(tmp_path / "cmp"),
            "--max-new-tokens",
            "4",
        ],
    )
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert report["sampled"] == 2 and len(report["pairs"]) == 2 and "exact agreement" in r.output
    assert not (tmp_path / "cmp" / "ratings").exists()  # --compare only compares
    r = runner.invoke(
        app,
        [
            "train",
            "--kind",
            "forward",
            "--seed",
            str(seed),
            "--curated",
            str(tmp_path / "cand"),
            "--model",
            tiny_model,
            "--out",
            str(tmp_path / "m1"),
            "--max-steps",
            "1",
        ],
    )
    assert r.exit_code == 0, r.output
    assert len(list(read_jsonl(tmp_path / "m1" / "train.jsonl"))) == 9
    prompts = write_jsonl(
        tmp_path / "prompts.jsonl", [{"instruction": "Say hi."}, {"prompt": "Count to 3."}, {"x": 1}]
    )
    r = runner.invoke(
        app,
        [
            "generate",
            "--model",
            str(tmp_path / "m1"),
            "--prompts",
            str(prompts),
            "--out",
            str(tmp_path / "answers.jsonl"),
            "--max-new-tokens",
            "5",
            "--tag",
            "both",
        ],
    )
    assert r.exit_code == 0, r.output
    answers = list(read_jsonl(tmp_path / "answers.jsonl"))
    assert [a["instruction"] for a in answers] == ["Say hi.", "Count to 3."]
    assert all("output" in a for a in answers)
    assert "1 rejects" in r.output
