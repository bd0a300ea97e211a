"""humpback publish: the folder loads back with `datasets`, the card has its fields, row counts match the run."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from humpback.cli import app


def _run(tmp_path):
    """A finished run's files, as `humpback run` leaves them (one iteration)."""
    run = tmp_path / "run"
    seed = {
        "id": "seed-1",
        "origin": "seed",
        "messages": [
            {"role": "system", "content": "Answer in the style of an AI Assistant."},
            {"role": "user", "content": "How do I keep basil fresh?"},
            {"role": "assistant", "content": "Stand it in water."},
        ],
    }
    web = {
        "id": "abc",
        "origin": "web",
        "messages": [
            {"role": "system", "content": "Answer with knowledge from web search."},
            {"role": "user", "content": "How did coffee houses start in Vienna?"},
            {"role": "assistant", "content": "They date back to the 1680s."},
        ],
    }
    (run / "final").mkdir(parents=True)
    (run / "final" / "train.jsonl").write_text("\n".join(json.dumps(r) for r in [seed, web]) + "\n")
    (run / "iter1" / "curated").mkdir(parents=True)
    (run / "iter1" / "curated" / "part-00000.jsonl").write_text(
        json.dumps(
            {
                "id": "abc",
                "source": "pages/cafe.html#0",
                "instruction": "How did coffee houses start in Vienna?",
                "output": "They date back to the 1680s.",
                "score": None,
                "combined": 1.25,
                "selected_by": "value >= 0.5",
                "iteration": 1,
            }
        )
        + "\n"
    )
    (run / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "seed": "demo",
                "corpus": "demo",
                "model": "smollm2-135m",
                "iterations": 1,
                "segment": {"languages": ["en"]},
                "curate": {"mode": "features", "select": "calibrated"},
            }
        )
    )
    (run / "stats.json").write_text(
        json.dumps(
            {
                "segment_funnel": {"documents": 3, "segments_kept": 2},
                "final_dataset_count": 2,
                "final_model": "m1",
                "table2": {"seed": {"count": 1, "instruction_chars": {"mean": 26}, "output_chars": {"mean": 18}}},
                "iterations": {"1": {"histogram": {}, "selected_by": "value >= 0.5"}},
                "probe": {
                    "1": {
                        "auc": 0.81,
                        "auc_interval": [0.7, 0.9],
                        "verdict": "the judge separates good pairs from bad",
                    }
                },
            }
        )
    )
    return run


@pytest.mark.parametrize(
    "fmt, column", [("messages", "messages"), ("alpaca", "instruction"), ("sharegpt", "conversations")]
)
def test_publish_round_trips_through_datasets(tmp_path, fmt, column):
    import datasets

    run = _run(tmp_path)
    out = tmp_path / f"pub-{fmt}"
    result = CliRunner().invoke(
        app, ["publish", str(run), "--to", str(out), "--format", fmt, "--license", "cc-by-4.0"]
    )
    assert result.exit_code == 0, result.output
    loaded = datasets.load_dataset(str(out), split="train")
    assert len(loaded) == json.loads((run / "stats.json").read_text())["final_dataset_count"] == 2
    assert column in loaded.column_names
    web = loaded[1]
    assert web["origin"] == "web" and web["source"] == "pages/cafe.html#0" and web["value"] == 1.25
    assert web["selected_by"] == "value >= 0.5" and web["iteration"] == 1 and loaded[0]["source"] is None
    if fmt == "alpaca":
        assert web["instruction"] == "How did coffee houses start in Vienna?" and web["input"] == ""
    if fmt == "sharegpt":
        assert [t["from"] for t in web["conversations"]] == ["system", "human", "gpt"]
    card = (out / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["license"] == "cc-by-4.0" and meta["language"] == ["en"] and meta["size_categories"] == ["n<1K"]
    assert meta["configs"][0]["data_files"][0]["path"] == "data/train-*.parquet"
    for section in (
        "Segmentation funnel",
        "Table 2",
        "Judge probe",
        "AUC 0.81",
        "Decontamination",
        "Known limits",
        "Config",
    ):
        assert section in card


def test_publish_refuses_what_is_not_a_run(tmp_path):
    result = CliRunner().invoke(app, ["publish", str(tmp_path), "--to", str(tmp_path / "out")])
    assert result.exit_code == 2 and "error:" in result.output and "not a finished humpback run" in result.output
    assert not (tmp_path / "out").exists()  # a failed publish leaves no folder behind
