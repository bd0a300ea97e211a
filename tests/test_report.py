"""Run statistics (Table 2, agreement, precision/recall) and the self-contained report."""

import json
import re
import shutil
import subprocess

import pytest
from conftest import write_jsonl
from test_pipeline import tiny_config

from humpback import run
from humpback.shards import read_stage
from humpback.stats import precision_recall, rater_agreement, read_labels, table2


def test_rater_agreement_exact_within_one_and_rank_correlation():
    first = {"a": 1, "b": 2, "c": 3, "d": 5}
    second = {"a": 1, "b": 3, "c": 5, "d": 5, "e": 4}  # e: rated by one judge only
    [row] = rater_agreement({"1": first, "2": second})
    assert row["iterations"] == ["1", "2"] and row["candidates"] == 4
    assert row["exact"] == 0.5 and row["within_one"] == 0.75
    assert row["spearman"] == pytest.approx(0.9487, abs=1e-3)


def test_precision_and_recall_against_labels():
    scores = {"a": 5, "b": 5, "c": 4, "d": 2, "e": None, "f": 5}  # f has no label
    labels = {"a": True, "b": False, "c": True, "d": True, "e": False}
    at5 = precision_recall(scores, labels, 5)
    assert (at5["selected"], at5["precision"], at5["recall"]) == (2, 0.5, round(1 / 3, 4))
    at4 = precision_recall(scores, labels, 4)
    assert (at4["selected"], at4["precision"], at4["recall"]) == (3, round(2 / 3, 4), round(2 / 3, 4))


def test_bad_label_lines_are_rejected_with_file_and_line(tmp_path):
    path = tmp_path / "labels.jsonl"
    path.write_text(
        '{"id": "a", "label": "good"}\n{"id": "b", "label": "maybe"}\nnot json\n'
        '{"id": "c", "label": false}\n{"id": "d", "label": 1}\n'
    )
    labels, rejects = read_labels(path)
    assert labels == {"a": True, "c": False, "d": True}
    assert [r["source"] for r in rejects] == [f"{path}:2", f"{path}:3"]


def test_table2_in_characters_and_tokens(tiny_model):
    from humpback.models import load_tokenizer

    rows = [{"instruction": "Say hello.", "output": "Hello there, friend."}, {"instruction": "Hi", "output": "Hey"}]
    t = table2(rows, load_tokenizer(tiny_model))
    assert t["count"] == 2 and t["instruction_chars"] == {"mean": 6.0, "std": 4.0}
    assert t["instruction_tokens"]["mean"] > 0 and t["output_tokens"]["mean"] > t["instruction_tokens"]["mean"] - 5


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_model):
    cfg = tiny_config(tmp_path_factory.mktemp("report"), tiny_model)
    cfg.curate.mode = "logprob"  # every candidate gets a score, so agreement and examples have content
    cfg.curate.min_choice_mass = 0.0  # a random model puts almost no probability on the five scores
    stats = run(cfg, quiet=True)
    return cfg.out, stats


@pytest.mark.slow
def test_a_run_ends_with_a_self_contained_report(finished_run):
    out, stats = finished_run
    html = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    assert stats["report"] == str(out / "report.html")
    for figure in ("fig-funnel", "fig-scores", "fig-lengths"):
        assert re.search(rf'id="{figure}"[^>]*src="data:image/png;base64,[A-Za-z0-9+/=]{{200,}}"', html), figure
    assert not re.search(r'(src|href)="https?://', html)  # nothing to fetch: it opens offline
    candidates = stats["table2"]["candidates"]
    row = f"| candidates | {candidates['count']} | {candidates['instruction_chars']['mean']:.0f} ± "
    assert row in md
    assert "Agreement between the iterations' judges" in md and stats["rater_agreement"][0]["candidates"] == 9
    assert "instruction (tokens)" in md
    assert sum(len(v) for v in stats["score_examples"].values()) >= 1 and "Examples at each score" in html


@pytest.mark.slow
def test_report_command_adds_labels_and_evaluations(finished_run, tmp_path):
    from typer.testing import CliRunner

    from humpback.cli import app

    out, _ = finished_run
    ids = [r["id"] for r in read_stage(out / "iter2" / "ratings")]
    labels = write_jsonl(
        tmp_path / "labels.jsonl",
        [{"id": i, "label": "good" if n % 2 else "bad"} for n, i in enumerate(ids)] + [{"id": 3}],
    )
    board = {
        "model": "m2",
        "reference": "m0",
        "n_prompts": 20,
        "win_rate": 61.5,
        "standard_error": 4.2,
        "length_controlled_win_rate": 58.0,
        "avg_length": 800.0,
        "reference_avg_length": 700.0,
        "judge_model": "judge",
        "judge_mode": "logprob",
    }
    (out / "eval" / "m2_vs_m0").mkdir(parents=True, exist_ok=True)
    (out / "eval" / "m2_vs_m0" / "leaderboard.json").write_text(json.dumps(board))
    result = CliRunner().invoke(app, ["report", str(out), "--labels", str(labels)])
    assert result.exit_code == 0, result.output
    stats = json.loads((out / "stats.json").read_text())
    assert stats["iterations"]["2"]["precision_recall"][0]["labelled"] == len(ids)
    assert stats["label_rejects"] == 1
    md = (out / "report.md").read_text()
    assert "Curation against your labels" in md and "| m2 | m0 | 20 | 61.5 | 4.2 | 58.0 |" in md
    assert 'id="fig-win_rates"' in (out / "report.html").read_text()


def test_report_of_a_directory_that_is_not_a_run_is_a_clear_error(tmp_path):
    from typer.testing import CliRunner

    from humpback.cli import app

    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "not a humpback run directory" in result.output


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
def test_report_renders_in_headless_chromium(finished_run):
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed (make test installs Debian's chromium package when it can)")
    out, _ = finished_run
    dom = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=5000",
            "--dump-dom",
            (out / "report.html").resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    figures = int(re.search(r'data-figures="(\d+)"', dom).group(1))
    loaded = int(re.search(r'data-figures-loaded="(\d+)"', dom).group(1))  # set by the page once images decode
    assert figures >= 3 and loaded == figures
    assert "Table 2: data statistics" in dom


def test_the_report_shows_what_each_filter_removed_and_decontamination():
    from humpback.report import _tables

    stats = {
        "segment_funnel": {"removed_navigation_header": 1, "boilerplate_lines_dropped": 2},
        "segment_filter_examples": {
            "navigation_header": ["Related posts | Ten more recipes"],
            "boilerplate_line": ["\u00a9 2021 Cookie Blog. All rights reserved."],
        },
        "quotes_answer": 3,
        "decontamination": {"against": ["alpaca_eval.json"], "ngram": 13, "removed": {"seed": 2, "iter1": 0}},
    }
    tables = {title: rows for title, _, rows in _tables(stats, [])}
    assert ["navigation_header", "Related posts | Ten more recipes"] in tables["What the filters removed (examples)"]
    assert tables["Candidates removed before rating"][0][1] == "3"
    assert tables["Decontamination (13-word overlap or the same instruction)"] == [["seed", "2"], ["iter1", "0"]]


def test_a_value_mode_is_reported_in_values_not_scores():
    """With a likelihood mode the report shows the value distribution against the probe's good and
    bad pairs with the threshold, the probe's ROC curve, names the set by its rule, and the funnel
    follows the pipeline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from humpback.report import _value_figures, funnel_rows, roc_points
    from humpback.stats import set_name, value_bins

    assert set_name("score >= 5", 5) == "A_5" and set_name(None, 4) == "A_4"
    assert set_name("calibrated: precision 0.8 on the probe ...; value >= 0.41", 5) == "calibrated: value >= 0.41"
    assert set_name("top 25% by value", 5) == "top 25% by value"
    bins = value_bins([0.1, 0.2, 0.9], {"positive": [0.8, 1.0], "negative": [0.0]}, threshold=0.5, bins=10)
    assert bins["edges"][0] == 0.0 and bins["edges"][-1] == 1.0 and sum(bins["candidates"]) == 3
    assert bins["probe_good"][-1] == 1 and bins["probe_bad"][0] == 1 and bins["threshold"] == 0.5
    assert value_bins([], None, None) is None
    fpr, tpr = roc_points([0.9, 0.8], [0.1, 0.85])
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0) and tpr[1] == 0.5 and fpr[2] == 0.5
    stats = {
        "k": 5,
        "iterations": {"1": {"values": bins, "set_name": "calibrated: value >= 0.5"}},
        "probe": {"1": {"auc": 0.9, "values": {"positive": [0.8, 1.0], "negative": [0.0]}}},
    }
    assert set(_value_figures(stats, plt)) == {"values", "roc"}
    funnel = {"segments_kept": 5, "removed_too_short": 3, "documents": 2, "segments_found": 9, "something_new": 1}
    assert [k for k, _ in funnel_rows(funnel)] == [
        "documents",
        "segments_found",
        "removed_too_short",
        "something_new",
        "segments_kept",
    ]
