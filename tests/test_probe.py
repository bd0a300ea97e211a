"""The judge probe: its negatives are what they claim, its AUC is right, and a judge that can
tell matched pairs from the rest scores high while a random one scores about 0.5."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from conftest import ScriptedEngine

from humpback.config import CurateConfig
from humpback.outputs import StaleOutputError
from humpback.probe import BOILERPLATE, NEGATIVE_KINDS, auc, bootstrap_auc, near_instruction, probe_judge, probe_pairs

ROOT = Path(__file__).resolve().parents[1]
PAIRS = [
    {
        "id": f"p{i}",
        "instruction": f"Question {i}: how does topic {i} work?",
        "output": f"Topic {i} works like this. " + " ".join(f"step{i}-{j}" for j in range(12)),
    }
    for i in range(20)
]


def test_the_negatives_are_what_they_claim():
    probe = probe_pairs(PAIRS, seed=3)
    by_id = {p["id"]: p for p in probe}
    assert sum(p["label"] for p in probe) == len(PAIRS) and {p["kind"] for p in probe} == {"positive", *NEGATIVE_KINDS}
    for pair in PAIRS:
        words = pair["output"].split()
        neg = {kind: by_id[f"{pair['id']}:{kind}"] for kind in NEGATIVE_KINDS}
        assert all(n["label"] == 0 for n in neg.values())
        assert all(n["instruction"] == pair["instruction"] for kind, n in neg.items() if kind != "near_instruction")
        near = neg["near_instruction"]
        assert near["output"] == pair["output"] and near["instruction"] in [p["instruction"] for p in PAIRS]
        assert near["instruction"] != pair["instruction"]
        assert neg["off_topic"]["output"] != pair["output"] and neg["off_topic"]["output"] in [
            p["output"] for p in PAIRS
        ]
        assert pair["output"].endswith(neg["starts_mid_way"]["output"]) and len(
            neg["starts_mid_way"]["output"].split()
        ) < len(words)
        assert pair["output"].startswith(neg["cut_off_early"]["output"]) and len(
            neg["cut_off_early"]["output"].split()
        ) < len(words)
        lines = neg["boilerplate"]["output"].splitlines()
        assert pair["output"] in lines and sum(line in BOILERPLATE for line in lines) == 3
        assert neg["instruction_as_answer"]["output"] == pair["instruction"]
    assert probe_pairs(PAIRS, seed=3) == probe  # seeded


def test_cut_answers_keep_their_own_line_breaks():
    pair = {
        "id": "l",
        "instruction": "List the steps.",
        "output": "Steps:\n1. Mix the flour and water\n2. Knead it "
        "for ten minutes\n3. Let the dough rest\n4. Bake at 220C",
    }
    neg = {p["kind"]: p["output"] for p in probe_pairs([pair, PAIRS[0]]) if p["id"].startswith("l")}
    assert pair["output"].startswith(neg["cut_off_early"]) and "\n" in neg["cut_off_early"]
    assert pair["output"].endswith(neg["starts_mid_way"]) and "\n" in neg["starts_mid_way"]
    assert not neg["cut_off_early"].endswith(" ") and not neg["starts_mid_way"].startswith(" ")


def test_a_near_instruction_is_the_one_sharing_most_topic_words_and_only_one_that_shares_any():
    pool = [
        "How do I bake sourdough bread at home?",
        "How do I repair a bicycle puncture?",
        "Write a poem about bread.",
        "What is the capital of Peru?",
    ]
    assert near_instruction("How do I bake rye bread?", pool) == pool[0]  # bake, bread vs bread alone
    assert near_instruction("Fix a puncture on a bicycle tyre.", pool) == pool[1]
    assert near_instruction("How do I bake sourdough bread at home?", pool) == pool[2]  # never itself
    assert near_instruction("Explain quantum tunnelling.", pool) is None  # no topic word shared: no negative
    pairs = [
        {"id": "b", "instruction": "How do I bake rye bread?", "output": "Mix rye flour, water and salt."},
        {"id": "q", "instruction": "Explain quantum tunnelling.", "output": "A particle crosses a barrier."},
    ]
    probe = {p["id"]: p for p in probe_pairs(pairs, instruction_pool=pool)}
    assert probe["b:near_instruction"]["instruction"] == pool[0]
    assert probe["b:near_instruction"]["output"] == pairs[0]["output"]
    assert "q:near_instruction" not in probe


def test_short_answers_are_not_cut():
    probe = probe_pairs(
        [{"instruction": "Capital of France?", "output": "Paris."}, {"instruction": "2 + 2?", "output": "4"}]
    )
    kinds = {p["kind"] for p in probe}
    assert "starts_mid_way" not in kinds and "cut_off_early" not in kinds and "off_topic" in kinds


def test_auc_counts_pairs_and_ties():
    assert auc([3, 4], [1, 2]) == 1.0 and auc([1, 2], [3, 4]) == 0.0
    assert auc([2], [2]) == 0.5 and auc([1, 3], [2]) == 0.5
    assert auc([], [1]) is None
    low, high = bootstrap_auc([0.9, 0.8, 0.7, 0.6] * 5, [0.5, 0.4, 0.65, 0.1] * 5, seed=1)
    assert low <= auc([0.9, 0.8, 0.7, 0.6], [0.5, 0.4, 0.65, 0.1]) <= high


def _rubric_user(prompt):
    return next(m["content"] for m in prompt if m["role"] == "user")


def test_a_judge_that_knows_matched_pairs_scores_high_and_a_random_one_about_half():
    known = {(p["instruction"], p["output"]) for p in PAIRS}

    def knowing(prompt):  # logprob mode: certain "5" for a real pair, "1" for anything else
        text = _rubric_user(prompt)
        instruction = text.split("Instruction:\n")[1].split("\n\nAnswer:\n")[0]
        output = text.split("\n\nAnswer:\n")[1]
        best = " 5" if (instruction, output) in known else " 1"
        return {c: (-0.01 if c == best else -8.0) for c in [" 1", " 2", " 3", " 4", " 5"]}

    rng = random.Random(0)

    def guessing(prompt):
        return {c: -rng.uniform(0.5, 3) for c in [" 1", " 2", " 3", " 4", " 5"]}

    good = probe_judge(PAIRS, "judge", CurateConfig(mode="logprob"), engine=ScriptedEngine(None, knowing)).report
    assert good["auc"] == 1.0 and all(k["auc"] == 1.0 for k in good["by_kind"].values())
    assert "separates" in good["verdict"]
    coin = probe_judge(PAIRS, "judge", CurateConfig(mode="logprob"), engine=ScriptedEngine(None, guessing)).report
    assert 0.35 < coin["auc"] < 0.65 and coin["auc_interval"][0] < 0.5 < coin["auc_interval"][1]
    assert "near chance" in coin["verdict"]


@pytest.mark.parametrize("mode", ["yes", "pmi", "logprob", "features"])
def test_every_mode_scores_the_probe_on_a_real_model(tiny_model, mode):
    from humpback.engines.transformers import TransformersEngine

    engine = TransformersEngine(tiny_model, dtype="float32", batch_size=4)
    found = probe_judge(PAIRS[:4], tiny_model, CurateConfig(mode="logprob"), mode=mode, engine=engine)
    report = found.report
    assert report["unscored"] == 0 and report["positives"] == 4 and 0 <= report["auc"] <= 1
    assert (found.detectors is not None) == (mode == "features") and report["mode"] == mode
    assert len(report["values"]["positive"]) == 4 and "verdict" in report


def test_calibration_finds_the_threshold_that_reaches_the_target_precision():
    from humpback.probe import calibrate

    values = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    labels = [1, 1, 0, 1, 0, 0]
    assert calibrate(values, labels, 0.75) == {"threshold": 0.6, "precision": 0.75, "recall": 1.0}
    assert calibrate(values, labels, 1.0) == {"threshold": 0.8, "precision": 1.0, "recall": 0.6667}
    assert calibrate([0.5, 0.5], [0, 1], 0.9)["threshold"] is None  # a tie is taken whole or not at all
    # five negatives per positive on the probe; at an assumed half of good candidates, precision is
    # TPR / (TPR + FPR): a threshold passing 2 of 2 positives and 1 of 10 negatives reaches 0.91
    values, labels = [0.9, 0.8, 0.7] + [0.1] * 9, [1, 1, 0] + [0] * 9
    assert calibrate(values, labels, 0.9)["threshold"] == 0.8  # the probe's own mix: 2/3 at 0.7
    assert calibrate(values, labels, 0.9, prior=0.5) == {"threshold": 0.7, "precision": 0.9091, "recall": 1.0}


def test_fewer_good_candidates_assumed_means_a_stricter_threshold():
    from humpback.config import CurateConfig
    from humpback.probe import calibrate

    rng = random.Random(3)
    labels = [1] * 30 + [0] * 150
    values = [rng.gauss(1.5, 1) if y else rng.gauss(-1, 1) for y in labels]
    thresholds = [calibrate(values, labels, 0.8, prior)["threshold"] for prior in (0.5, 0.39, 0.2, 0.1, 0.05)]
    assert all(t is not None for t in thresholds) and thresholds == sorted(thresholds)
    # the default is the share of good candidates measured on the blind-labelled real web candidates
    labels = [json.loads(line) for line in (ROOT / "bench" / "results" / "web_candidates_labels.jsonl").open()]
    assert len(labels) == 48 and CurateConfig().good_share == round(sum(r["good"] for r in labels) / len(labels), 1)


def test_the_fitted_combination_ranks_by_the_feature_that_separates():
    from humpback.scoring import Combination, Detectors
    from humpback.signals import FEATURES

    rng = random.Random(0)
    probe = probe_pairs(PAIRS, seed=1)
    features = [
        {name: rng.gauss(0, 1) for name in FEATURES} | {"end_logprob": p["label"] * 2 + rng.gauss(0, 0.3)}
        for p in probe
    ]
    combination = Combination.fit(features, [p["label"] for p in probe])
    assert max(range(len(FEATURES)), key=lambda i: abs(combination.weights[i])) == FEATURES.index("end_logprob")
    kinds, groups = [p["kind"] for p in probe], [p["id"].split(":")[0] for p in probe]
    values = Detectors.cross_validated(features, kinds, groups)
    pos = [v for v, p in zip(values, probe) if p["label"]]
    neg = [v for v, p in zip(values, probe) if not p["label"]]
    assert auc(pos, neg) > 0.95  # out of sample: each value from a fit that did not see its pair
    assert combination.value(features[0]) > combination.value(features[1])  # positive first
    detectors = Detectors.fit(features, kinds)
    assert set(detectors.by_kind) == {k for k in kinds if k != "positive"}
    assert detectors.value(features[1]) == min(c.value(features[1]) for c in detectors.by_kind.values())


def test_detectors_round_trip_through_json(tmp_path):
    from humpback.scoring import Detectors
    from humpback.signals import FEATURES

    rng = random.Random(1)
    probe = probe_pairs(PAIRS, seed=1)
    features = [{name: rng.gauss(p["label"], 1) for name in FEATURES} for p in probe]
    detectors = Detectors.fit(features, [p["kind"] for p in probe])
    detectors.save(tmp_path / "detectors.json")
    loaded = Detectors.load(tmp_path / "detectors.json")
    assert loaded == detectors and [loaded.value(f) for f in features] == [detectors.value(f) for f in features]


def _pmi_detectors():
    from humpback.scoring import Combination, Detectors
    from humpback.signals import FEATURES

    n = len(FEATURES)  # one detector whose value is pmi itself
    return Detectors({"off_topic": Combination(FEATURES, (0.0,) * n, (1.0,) * n, 0.0, (1.0,) + (0.0,) * (n - 1))})


def test_calibrated_selection_uses_the_probes_values_and_detectors():
    from humpback.curate import select
    from humpback.probe import JudgeProbe
    from humpback.signals import FEATURES

    # probe values: positives above 0.5, one negative at 0.6 of ten: at good share 0.2 the threshold
    # passing both positives and no negative is the lowest to reach precision 0.8
    report = {"values": {"positive": [0.7, 0.9], "negative": [0.1] * 9 + [0.6]}}
    probe = JudgeProbe(report, _pmi_detectors())
    ratings = [
        {"id": str(i), "score": None, "signal": 0.0, "features": dict.fromkeys(FEATURES, 0.0) | {"pmi": v}}
        for i, v in enumerate([0.9, 0.2, 0.7, -1.0])
    ]
    chosen = select(ratings, 5, "calibrated", probe=probe, good_share=0.2)
    assert [r["id"] for r in chosen] == ["0", "2"] and all(r["combined"] == r["features"]["pmi"] for r in chosen)
    assert chosen[0]["selected_by"] == (
        "calibrated: precision 1.0 on the probe at good share 0.2, recall 1.0 (estimated from the "
        "probe's made-up bad pairs; label candidates to measure it); value >= 0.7"
    )
    assert select(ratings, 5, "calibrated", probe=None) == []


def test_a_probe_stage_resumes_and_curate_loads_its_detectors(tmp_path, tiny_model):
    from humpback.engines.transformers import TransformersEngine
    from humpback.probe import JudgeProbe, ProbeError, probe_stage

    engine = TransformersEngine(tiny_model, dtype="float32", batch_size=4)
    cfg = CurateConfig(mode="features", system_prompt="")
    made = probe_stage(PAIRS[:4], tiny_model, cfg, tmp_path / "iter1", engine=engine)
    assert (tmp_path / "iter1" / "report.json").is_file() and (tmp_path / "iter1" / "detectors.json").is_file()
    again = probe_stage(PAIRS[:4], tiny_model, cfg, tmp_path / "iter1", engine=ScriptedEngine(None, None))
    assert again == made  # resumed from its files: the scripted engine would have failed
    assert JudgeProbe.load(tmp_path / "iter1", "features") == made
    with pytest.raises(ProbeError, match="mode features, not pmi"):
        JudgeProbe.load(tmp_path / "iter1", "pmi")
    with pytest.raises(StaleOutputError, match="config.max_new_tokens"):
        probe_stage(
            PAIRS[:4], tiny_model, cfg.model_copy(update={"max_new_tokens": 9}), tmp_path / "iter1", engine=engine
        )
    # a selection field is not the probe's: a changed target precision resumes it
    assert (
        probe_stage(PAIRS[:4], tiny_model, cfg.model_copy(update={"target_precision": 0.5}), tmp_path / "iter1")
        == made
    )


def test_the_text_features_see_where_an_answer_is_cut():
    from humpback.signals import _CLOSING, _ends_open, _starts_open

    whole = "Preheat the oven.\n1. Mix the flour and the butter.\n2. Bake for 20 minutes."
    assert _CLOSING.search(whole) and not _ends_open(whole) and not _starts_open(whole)
    assert _ends_open("Mix the flour and the") and _ends_open("Mix the flour, sugar,")
    assert not _CLOSING.search("Mix the flour and the butter")
    assert _starts_open("the butter. Bake for 20 minutes.") and _starts_open(", then bake.")
    assert not _starts_open("1. Mix") and not _starts_open("Mix")
