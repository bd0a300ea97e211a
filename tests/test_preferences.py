"""Preference pairs from a model's own answers, and DPO training on them (Self-Rewarding LMs)."""

from __future__ import annotations

import itertools
import json
import re

import pytest
from conftest import ScriptedEngine, write_jsonl

from humpback.config import CurateConfig, PreferencesConfig, PreferenceTrainConfig
from humpback.preferences import preferences
from humpback.shards import read_stage, stage_counters, stage_rejects

PROMPTS = [
    {"id": "p1", "instruction": "How do I brew tea?"},
    {"id": "p2", "instruction": "Name a prime number."},
    {"id": "p3", "instruction": "Say nothing."},
]


def policy(answers: dict[str, list[str]]) -> ScriptedEngine:
    """Answers in order for each instruction (the user message of the tagged prompt)."""
    queues = {q: itertools.cycle(a) for q, a in answers.items()}
    return ScriptedEngine(lambda prompt: next(queues[prompt[-1]["content"]]))


def judge() -> ScriptedEngine:
    """A judge that writes "Score: N" for an answer that says "(N)"."""

    def rate(prompt):
        found = re.search(r"\((\d)\)", prompt[-1]["content"].rsplit("Instruction:", 1)[-1])
        return f"Looks fine.\nScore: {found.group(1) if found else 1}"

    return ScriptedEngine(rate)


def generate_judged(**kw) -> PreferencesConfig:
    return PreferencesConfig(judge=CurateConfig(mode="generate"), num_answers=4, **kw)


def test_best_and_worst_make_a_pair_and_equal_values_never_do(tmp_path):
    answers = {
        "How do I brew tea?": ["Boil water (5)", "Steep it (2)", "Use leaves (4)", "Drink (2)"],
        "Name a prime number.": ["Seven (3)", "Five (3)", "Eleven (3)", "Two (3)"],  # all equal: a tie
        "Say nothing.": ["", "", "", "Quiet (4)"],  # one answer written: no pair
    }
    judge_engine = judge()
    preferences(
        PROMPTS, "policy", tmp_path / "p", generate_judged(), engine=policy(answers), judge_engine=judge_engine
    )
    [pair] = list(read_stage(tmp_path / "p"))
    assert pair["id"] == "p1" and pair["chosen"] == [{"role": "assistant", "content": "Boil water (5)"}]
    assert pair["rejected"][0]["content"] in ("Steep it (2)", "Drink (2)") and pair["chosen_value"] == 5.0
    assert pair["rejected_value"] == 2.0 and len(pair["answers"]) == 4 and pair["judge_mode"] == "generate"
    # the prompt is the one the answers were sampled under: the inference tag, then the instruction
    assert pair["prompt"][0]["role"] == "system" and pair["prompt"][-1]["content"] == "How do I brew tea?"
    rejects = {r["source"]: r["reason"] for r in stage_rejects(tmp_path / "p")}
    assert "valued the same" in rejects["p2"] and "a pair needs two" in rejects["p3"]
    counts = stage_counters(tmp_path / "p")
    assert (counts["pairs"], counts["tied"], counts["too_few_valued"], counts["answers"]) == (1, 1, 1, 9)


def test_the_judge_is_read_judge_samples_times_and_averaged(tmp_path):
    seen: dict[str, int] = {}

    def alternating(prompt):  # an unmarked answer: 5 at its first read, 1 at its second (average 3)
        answer = prompt[-1]["content"].rsplit("Instruction:", 1)[-1]
        found = re.search(r"\((\d)\)", answer)
        seen[answer] = seen.get(answer, 0) + 1
        return f"Score: {found.group(1) if found else (5 if seen[answer] == 1 else 1)}"

    answers = {"How do I brew tea?": ["A (5)", "B (1)"], "Name a prime number.": ["Two", "Three"]}
    cfg = PreferencesConfig(judge=CurateConfig(mode="generate"), num_answers=2, judge_samples=2)
    preferences(
        PROMPTS[:2], "m", tmp_path / "p", cfg, engine=policy(answers), judge_engine=ScriptedEngine(alternating)
    )
    [pair] = list(read_stage(tmp_path / "p"))
    assert [a["reads"] for a in pair["answers"]] == [[5.0, 5.0], [1.0, 1.0]]
    assert "valued the same (3)" in next(iter(stage_rejects(tmp_path / "p")))["reason"]


def test_pairs_load_in_trl_s_preference_format_and_resume_after_a_kill(tmp_path):
    import datasets
    from trl.data_utils import is_conversational

    answers = {p["instruction"]: [f"{p['id']} short (1)", f"{p['id']} better (4)"] for p in PROMPTS}
    cfg = generate_judged(records_per_shard=1)
    preferences(PROMPTS, "m", tmp_path / "p", cfg, engine=policy(answers), judge_engine=judge())
    first = list(read_stage(tmp_path / "p"))
    assert len(first) == 3
    ds = datasets.load_dataset("json", data_files=str(tmp_path / "p" / "part-*.jsonl"), split="train")
    assert {"prompt", "chosen", "rejected"} <= set(ds.column_names) and is_conversational(ds[0])

    (tmp_path / "p" / "_SUCCESS").unlink()  # killed before the last shard was written
    (tmp_path / "p" / "part-00002.jsonl").unlink()
    again = policy(answers)
    preferences(PROMPTS, "m", tmp_path / "p", cfg, engine=again, judge_engine=judge())
    assert list(read_stage(tmp_path / "p")) == first and again.calls == 1  # only the lost shard


@pytest.mark.slow
def test_dpo_trains_on_a_real_model_s_own_pairs_and_the_model_answers(tmp_path, family_model):
    """The whole follow-up on tiny random models of each tokenizer family: the model samples and
    judges its own answers (logprob, the default), DPO trains from it, the result loads and answers."""
    from transformers import AutoModelForCausalLM

    from humpback.generate import generate
    from humpback.train import dpo

    name, model = family_model
    prompts = [{"instruction": f"Write one sentence about topic {i}."} for i in range(6)]
    cfg = PreferencesConfig(num_answers=3, max_new_tokens=10, dtype="float32")
    cfg.judge.dtype = "float32"
    info = preferences(prompts, model, tmp_path / "prefs", cfg)
    pairs = list(read_stage(tmp_path / "prefs"))
    assert info["records"] == len(pairs) > 0, name
    assert all(p["chosen_value"] > p["rejected_value"] for p in pairs)
    train_cfg = PreferenceTrainConfig(max_steps=2, batch_size=2, micro_batch_size=1, max_length=256)
    trained = dpo(pairs, model, tmp_path / "dpo", train_cfg)
    assert trained["kind"] == "dpo" and trained["steps"] == 2 and trained["first_loss"] is not None
    AutoModelForCausalLM.from_pretrained(str(tmp_path / "dpo"))
    [answer] = generate(["Say hi."], str(tmp_path / "dpo"), None)
    assert isinstance(answer, str)
    again = dpo(pairs, model, tmp_path / "dpo", train_cfg)  # finished: kept, not retrained
    assert again["seconds"] == trained["seconds"]


def test_train_kind_dpo_from_the_command_line(tmp_path, tiny_model):
    from typer.testing import CliRunner

    from humpback.cli import app

    rows = [{"prompt": f"Question {i}?", "chosen": f"A careful answer {i}.", "rejected": "No."} for i in range(4)] + [
        {"prompt": "half a pair"}
    ]
    write_jsonl(tmp_path / "pairs.jsonl", rows)
    args = ["train", "--kind", "dpo", "--model", tiny_model, "--out", str(tmp_path / "m"), "--max-steps", "1"]
    result = CliRunner().invoke(app, [*args, "--preferences", str(tmp_path / "pairs.jsonl"), "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    assert "1 preference rows rejected" in result.output
    info = json.loads((tmp_path / "m" / "_SUCCESS").read_text())
    assert info["kind"] == "dpo" and info["examples"] == 4 and info["steps"] == 1
    assert info["learning_rate"] == pytest.approx(1e-5)  # a tenth of SFT's for a small model
    missing = CliRunner().invoke(app, ["train", "--kind", "dpo", "--model", tiny_model, "--out", str(tmp_path / "x")])
    assert missing.exit_code == 2 and "--preferences" in missing.output


def test_publish_writes_preference_pairs_that_datasets_loads_with_a_card(tmp_path):
    import datasets
    from typer.testing import CliRunner

    from humpback.cli import app

    answers = {p["instruction"]: [f"{p['id']} weak (2)", f"{p['id']} strong (5)"] for p in PROMPTS}
    preferences(
        PROMPTS, "runs/x/models/m2", tmp_path / "p", generate_judged(), engine=policy(answers), judge_engine=judge()
    )
    result = CliRunner().invoke(app, ["publish", str(tmp_path / "p"), "--to", str(tmp_path / "pub")])
    assert result.exit_code == 0, result.output
    ds = datasets.load_dataset(str(tmp_path / "pub"), split="train")
    assert ds.num_rows == 3 and {"prompt", "chosen", "rejected", "chosen_value", "answers"} <= set(ds.column_names)
    assert ds[0]["chosen"][0]["content"].endswith("strong (5)") and ds[0]["policy_model"] == "runs/x/models/m2"
    card = (tmp_path / "pub" / "README.md").read_text()
    assert "pairs 3, tied" in card and "num_answers: 4" in card and "dpo" in card.split("---")[1]


@pytest.mark.slow
def test_dpo_under_accelerate_trains_like_one_process(tmp_path, tiny_model):
    """The same launcher as SFT: two gloo processes with the effective batch of one give its losses."""
    from humpback.train import dpo

    pairs = [
        {
            "prompt": [{"role": "user", "content": f"Question {i}?"}],
            "chosen": [{"role": "assistant", "content": f"A careful answer to question {i}."}],
            "rejected": [{"role": "assistant", "content": "No."}],
        }
        for i in range(8)
    ]
    base = dict(max_steps=2, batch_size=4, micro_batch_size=2, max_length=128)
    one = dpo(pairs, tiny_model, tmp_path / "one", PreferenceTrainConfig(**base))
    two = dpo(
        pairs, tiny_model, tmp_path / "two", PreferenceTrainConfig(**base, launcher="accelerate", num_processes=2)
    )
    assert two["processes"] == 2 and two["kind"] == "dpo" and two["steps"] == one["steps"] == 2
    assert two["first_loss"] == pytest.approx(one["first_loss"], abs=1e-4)
