"""Presets: shipped configs that load, round-trip through a run's config.yaml, give way to flags,
and say what they change; the paper preset's difference from the defaults is the README's table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from humpback.cli import _nest
from humpback.config import RunConfig, dump_yaml, load_yaml
from humpback.outputs import flat_fields
from humpback.pipeline import preset_report
from humpback.presets import DIFFERENCES, PRESETS, preset_file
from humpback.scoring import check_selection

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", PRESETS)
def test_a_preset_is_a_config_file_and_round_trips_through_config_yaml(tmp_path, name):
    cfg = RunConfig(preset=name)
    assert RunConfig.model_validate(load_yaml(preset_file(name))) == cfg  # also a valid --config
    dump_yaml(cfg, tmp_path / "config.yaml")
    assert RunConfig.model_validate(load_yaml(tmp_path / "config.yaml")) == cfg
    check_selection(cfg.curate, has_probe=cfg.probe_share > 0)  # it selects something
    assert preset_report(cfg) == {"name": name, "differences": DIFFERENCES[name], "changed": []}


def test_flags_and_a_config_file_override_the_preset_field_by_field():
    flags = {"curate_mode": "logprob", "iterations": 3}
    cfg = RunConfig.model_validate({"preset": "paper", "forward": {"num_epochs": 2}} | _nest(flags, RunConfig))
    assert (cfg.curate.mode, cfg.curate.k, cfg.curate.finish_score_line) == ("logprob", 5, False)
    assert (cfg.forward.num_epochs, cfg.forward.tag_placement, cfg.iterations) == (2, "append", 3)
    changed = preset_report(cfg)["changed"]
    assert set(changed) == {
        "iterations: 2 -> 3",
        "forward.num_epochs: None -> 2.0",
        "curate.mode: 'generate' -> 'logprob'",
    }
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        RunConfig(preset="nope")


def test_the_paper_preset_sets_what_the_paper_states():
    cfg = RunConfig(preset="paper")
    assert cfg.probe_share == 0 and cfg.iterations == 2
    assert (cfg.curate.mode, cfg.curate.select, cfg.curate.k, cfg.curate.finish_score_line) == (
        "generate",
        "score_at_least",
        5,
        False,
    )
    assert cfg.forward.tag_placement == "append" and cfg.augment.num_instructions == 1
    assert (cfg.augment.temperature, cfg.augment.top_p) == (0.7, 0.9)
    for train in (cfg.backward, cfg.forward):
        assert (train.learning_rate, train.final_lr_ratio, train.weight_decay, train.dropout) == (1e-5, 0.9, 0.1, 0.1)
        assert train.batch_size is None and train.max_steps is None  # the paper's batch and step table
    assert cfg.segment.languages == [] and cfg.segment.boilerplate_line_patterns == []
    assert (cfg.segment.min_chars, cfg.segment.max_chars) == (600, 3000)


def _readme_preset_rows() -> dict[str, tuple[str, str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Reproducing the paper", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z_.]+)` \| (.+?) \| (.+?) \|", section, re.M)
    return {field: (default.strip("` "), paper.strip("` ")) for field, default, paper in rows}


def test_the_readme_table_is_the_paper_presets_difference_from_the_defaults():
    default = flat_fields(RunConfig().model_dump(mode="json"))
    paper = flat_fields(RunConfig(preset="paper").model_dump(mode="json"))
    differs = {k for k in paper if paper[k] != default[k] and k != "preset"}
    rows = _readme_preset_rows()
    assert set(rows) == differs
    for field, (was, now) in rows.items():
        assert (was, now) == (_shown(default[field]), _shown(paper[field])), field


def _shown(value) -> str:
    if isinstance(value, list):
        return "[]" if not value else f"{len(value)} patterns" if len(value) > 1 else str(value[0])
    return "null" if value is None else "''" if value == "" else str(value)


@pytest.mark.slow
def test_the_paper_preset_runs_end_to_end(tmp_path, tiny_model):
    from humpback import run

    cfg = RunConfig(preset="paper", seed="demo", corpus="demo", model=tiny_model, out=tmp_path / "run")
    cfg.max_seed_examples = 10
    cfg.augment.max_segments, cfg.augment.max_new_tokens = 6, 12
    cfg.curate.max_new_tokens = 12
    for train in (cfg.backward, cfg.forward):
        train.max_steps, train.micro_batch_size = 1, 4
    stats = run(cfg, quiet=True)
    assert set(stats["iterations"]) == {"1", "2"} and stats["probe"] == {}  # no holdout, no probe
    assert stats["preset"]["name"] == "paper"
    assert "max_steps" in " ".join(stats["preset"]["changed"])  # what this test changed is said
    assert load_yaml(cfg.out / "config.yaml")["preset"] == "paper"
    report = (cfg.out / "report.md").read_text()
    assert "Preset paper; what still differs: the base model" in report
