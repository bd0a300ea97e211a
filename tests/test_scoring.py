"""The rating modes are listed once, and a mode with a rule that cannot select anything is refused
before any work (over every mode and rule); the ones accepted do select from what their mode gives."""

from __future__ import annotations

import typing

import pytest
from conftest import write_jsonl
from typer.testing import CliRunner

from humpback.cli import app
from humpback.config import CurateConfig, RunConfig
from humpback.curate import select
from humpback.probe import JudgeProbe
from humpback.scoring import MODES, SELECTION_RULES, SelectionError, check_selection
from humpback.signals import FEATURES


def test_the_config_offers_exactly_the_registered_modes_and_rules():
    assert set(typing.get_args(CurateConfig.model_fields["mode"].annotation)) == set(MODES)
    assert set(typing.get_args(CurateConfig.model_fields["select"].annotation)) == set(SELECTION_RULES)


def _ratings_of(mode: str) -> list[dict]:
    """What each mode writes into a rating (the fields its rate gives), for a good and a bad pair."""
    out = []
    for i, good in enumerate((True, False)):
        if mode == "generate":
            fields = {"score": 5 if good else 2}
        elif mode == "logprob":
            fields = {"score": 5 if good else 2, "expected_score": 4.8 if good else 2.1}
        elif mode == "features":
            fields = {"score": None, "signal": 0.9 if good else -0.5}
            fields["features"] = dict.fromkeys(FEATURES, 0.0) | {"pmi": fields["signal"]}
        else:
            fields = {"score": None, "signal": 0.9 if good else 0.1}
        out.append({"id": f"c{i}", "instruction": "q", "output": "a", **fields})
    return out


@pytest.mark.parametrize("rule", SELECTION_RULES)
@pytest.mark.parametrize("mode", list(MODES))
def test_every_mode_and_rule_pair_is_refused_before_work_or_selects(mode, rule):
    between = 3.0 if mode in ("generate", "logprob") else 0.5  # between the good and the bad pair's value
    cfg = CurateConfig(mode=mode, select=rule, select_threshold=between if rule == "value_at_least" else None, k=5)
    on_its_scale = {"generate": ([5, 5], [2, 1]), "logprob": ([4.8, 4.9], [2.1, 1.5])}  # the probe's values
    positive, negative = on_its_scale.get(mode, ([0.9, 0.8], [0.1, -0.5]))
    probe = JudgeProbe({"values": {"positive": positive, "negative": negative}})
    chosen = select(_ratings_of(mode), cfg.k, rule, cfg.select_threshold, 0.5, probe, target=0.8, good_share=0.5)
    if rule in MODES[mode].rules:
        check_selection(cfg, has_probe=True)
        assert [r["id"] for r in chosen] == ["c0"]  # the good pair, by the rule
    else:
        assert chosen == []  # what the check prevents: an empty curated set
        with pytest.raises(SelectionError, match=f"curate.mode {mode} with curate.select {rule} selects nothing"):
            check_selection(cfg, has_probe=True)


def test_calibrated_needs_a_probe_or_labels_and_value_at_least_a_threshold(tmp_path):
    with pytest.raises(SelectionError, match="needs a judge probe or labels"):
        check_selection(CurateConfig(mode="features", select="calibrated"), has_probe=False)
    check_selection(CurateConfig(mode="features", select="calibrated", labels=tmp_path), has_probe=False)
    with pytest.raises(SelectionError, match="needs curate.select_threshold"):
        check_selection(CurateConfig(mode="pmi", select="value_at_least"), has_probe=True)


def test_a_run_that_would_select_nothing_stops_before_any_work(tmp_path):
    from humpback.pipeline import run

    seed = tmp_path / "seed.jsonl"
    write_jsonl(seed, [{"instruction": f"q{i}", "output": f"answer {i}"} for i in range(12)])
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    config = RunConfig(seed=str(seed), corpus=str(corpus), out=tmp_path / "run", model="smollm2-135m", probe_share=0)
    config.curate.mode, config.curate.select = "features", "calibrated"
    with pytest.raises(SelectionError, match="probe_share > 0"):
        run(config, quiet=True)
    assert not (tmp_path / "run" / "segments").exists()  # nothing ran


def test_curate_standalone_says_what_to_give_in_one_line(tmp_path):
    result = CliRunner().invoke(
        app, ["curate", "--candidates", str(tmp_path), "--model", "m", "--out", str(tmp_path / "o"), "--mode", "pmi"]
    )
    assert result.exit_code != 0 and result.output.startswith(
        "error: curate.mode pmi with curate.select score_at_least"
    )
    assert "use curate.select value_at_least, top_fraction or calibrated" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "o").exists()
    result = CliRunner().invoke(
        app,
        ["curate", "--candidates", str(tmp_path), "--model", "m", "--out", str(tmp_path / "o")]
        + ["--mode", "features", "--select", "calibrated"],
    )
    assert result.exit_code != 0 and "--probe-seed FILE" in result.output and not (tmp_path / "o").exists()
