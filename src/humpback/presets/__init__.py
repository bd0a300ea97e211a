"""Presets: shipped run configs (``humpback run --preset NAME``), each a YAML file here that is also
a valid ``--config``. A preset sets the fields it names; flags and a --config file override them.

``paper`` sets every choice the paper states; DIFFERENCES["paper"] lists what still differs from
the paper, said in a run's summary and report. ``small-judge`` is the demo's: curation a 135M judge
can do (likelihood features, a calibrated threshold) instead of the paper's rubric.
"""

from __future__ import annotations

from pathlib import Path

import yaml

PRESETS = ("paper", "small-judge")

DIFFERENCES = {
    "paper": [
        "the base model, seed and corpus are what you give (the paper: LLaMA 7B to 65B, 3,200 oasst1 "
        "pairs, 502,133 ClueWeb segments)",
        "the rubric's wording is ours: the paper's five levels and criteria (its Table 1) in our words",
        "the judge decodes greedily (temperature 0) and its Score line is parsed strictly (the last line "
        "'Score: N', N in 1..5); the paper says neither how it decoded nor how it parsed",
        "the backward model's system prompt is ours; the paper gives none",
        "the segment filters (navigation headers, upper-case headers, repeated n-grams, near-duplicates) "
        "follow the paper's description with our patterns and thresholds",
        "epochs, sequence length and warm-up are not in the paper: ours are no warm-up and 2,048 tokens; "
        "steps for seed sizes between the rows of its step table are interpolated",
        "models are measured by held-out answer loss and the judge you configure (humpback eval), not by "
        "GPT-4 on AlpacaEval",
    ],
    "small-judge": [
        "not the paper's curation: candidates are valued by likelihood features under detectors fitted on "
        "a probe of held-out seed pairs, not by the rubric, and kept above the threshold that reached "
        "curate.target_precision on that probe, not as A_5",
        "a tenth of the seed (at least 16 pairs) is held out of every training set to probe each judge",
    ],
}


def preset_file(name: str) -> Path:
    return Path(__file__).with_name(f"{name}.yaml")


def preset_values(name: str) -> dict:
    """The fields a preset sets, as nested dicts (what its YAML file holds)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: {', '.join(PRESETS)}")
    return yaml.safe_load(preset_file(name).read_text(encoding="utf-8"))
