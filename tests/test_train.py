import json

import pytest

from humpback.backward import backward_examples, train_backward
from humpback.config import BackwardConfig, ForwardConfig, TrainConfig
from humpback.tags import INFERENCE_TAGS, SEED_TAG, WEB_TAG, tagged_prompt
from humpback.train import forward_examples, paper_batch_size, paper_steps, sft, train_forward

SEED = [
    {"id": f"seed-{i}", "instruction": f"Question number {i}?", "output": f"The answer to question {i} is {i * 7}."}
    for i in range(12)
]
CURATED = [
    {"id": f"web-{i}", "instruction": f"Web question {i}?", "output": f"Web text number {i}, from a page."}
    for i in range(4)
]


def test_paper_schedule():
    assert [paper_steps(n) for n in (100, 800, 1600, 3200, 51200)] == [30, 300, 600, 500, 1600]
    assert paper_steps(40) == 12 and paper_steps(1) == 1
    assert 30 < paper_steps(400) < 300
    assert paper_steps(102400) == 3200
    assert paper_batch_size(2999) == 8 and paper_batch_size(3000) == 32


def test_the_schedule_has_no_jump_at_the_batch_switch():
    """Interpolated in examples seen: 2,999 and 3,000 examples train about as many epochs (the
    step count interpolated directly gave 1.4 and 5.4), and epochs change smoothly everywhere."""

    def epochs(n):
        return paper_steps(n) * paper_batch_size(n) / n

    assert epochs(2999) == pytest.approx(epochs(3000), rel=0.01) and 4 < epochs(3000) < 6
    sizes = list(range(100, 60000, 50))
    assert all(abs(epochs(b) / epochs(a) - 1) < 0.05 for a, b in zip(sizes, sizes[1:]))


def test_the_effective_batch_is_exactly_the_papers_under_any_launcher():
    from humpback.trainer import split_batch

    for batch, micro, processes in [(8, 2, 1), (8, 2, 2), (8, 4, 4), (32, 2, 4), (32, 3, 2), (8, 16, 1), (32, 6, 8)]:
        got_micro, accumulation = split_batch(batch, micro, processes)
        assert got_micro * accumulation * processes == batch and got_micro <= micro
    assert split_batch(32, 3, 2) == (2, 8)  # the largest micro batch up to 3 that divides the 16 per process
    with pytest.raises(ValueError, match="cannot be split evenly over 3 processes"):
        split_batch(8, 2, 3)


def test_tags_are_the_papers_sentences():
    assert SEED_TAG == "Answer in the style of an AI Assistant."
    assert WEB_TAG == "Answer with knowledge from web search."
    assert INFERENCE_TAGS["both"] == f"{SEED_TAG} {WEB_TAG}"


def test_tag_placement():
    assert tagged_prompt("Q", WEB_TAG, "system") == [
        {"role": "system", "content": WEB_TAG},
        {"role": "user", "content": "Q"},
    ]
    assert tagged_prompt("Q", WEB_TAG, "append") == [{"role": "user", "content": f"Q\n\n{WEB_TAG}"}]
    assert tagged_prompt("Q", WEB_TAG, "none") == [{"role": "user", "content": "Q"}]
    examples = forward_examples(SEED[:1], CURATED[:1])
    assert examples[0]["origin"] == "seed" and examples[0]["prompt"][0]["content"] == SEED_TAG
    assert examples[1]["origin"] == "augmented" and examples[1]["prompt"][0]["content"] == WEB_TAG
    assert examples[1]["completion"] == [{"role": "assistant", "content": CURATED[0]["output"]}]


def test_backward_examples_reverse_the_pair():
    ex = backward_examples(SEED[:1], "SYS")[0]
    assert ex["prompt"][-1] == {"role": "user", "content": SEED[0]["output"]}
    assert ex["completion"][0]["content"] == SEED[0]["instruction"]


def test_loss_is_on_completion_tokens_only(tmp_path, tiny_model):
    """TRL's completion mask covers exactly the reply: the tokens after the prompt's chat template."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from humpback.models import load_tokenizer

    tok = load_tokenizer(tiny_model, "right")
    ex = forward_examples(SEED[:1], [])[0]
    trainer = SFTTrainer(
        model=tiny_model,
        processing_class=tok,
        args=SFTConfig(output_dir=str(tmp_path), completion_only_loss=True, report_to=[], use_cpu=True),
        train_dataset=Dataset.from_list([{"prompt": ex["prompt"], "completion": ex["completion"]}]),
    )
    row = trainer.train_dataset[0]
    ids = row["input_ids"]
    mask = row["completion_mask"] if "completion_mask" in row else [label != -100 for label in row["labels"]]
    masked = tok.decode([t for t, m in zip(ids, mask) if m])
    unmasked = tok.decode([t for t, m in zip(ids, mask) if not m])
    assert SEED[0]["output"] in masked and SEED[0]["instruction"] not in masked
    assert SEED[0]["instruction"] in unmasked and SEED_TAG in unmasked


def test_forward_training_writes_model_dataset_and_resumes(tmp_path, tiny_model):
    from transformers import AutoModelForCausalLM

    cfg = ForwardConfig(max_steps=2, micro_batch_size=4)
    info = train_forward(SEED, CURATED, tiny_model, tmp_path / "m1", cfg, dataset_path=tmp_path / "train.jsonl")
    assert info["steps"] == 2 and info["examples"] == 16 and info["learning_rate"] == 1e-4
    rows = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert [r["origin"] for r in rows].count("augmented") == 4
    assert rows[-1]["messages"][0] == {"role": "system", "content": WEB_TAG}
    assert [m["role"] for m in rows[-1]["messages"]] == ["system", "user", "assistant"]
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m1")
    assert model.config.attention_dropout == 0.0  # training dropout is not left in the saved config
    before = (tmp_path / "m1" / "model.safetensors").stat().st_mtime
    assert train_forward(SEED, CURATED, tiny_model, tmp_path / "m1", cfg)["steps"] == 2
    assert (tmp_path / "m1" / "model.safetensors").stat().st_mtime == before


def test_schedule_matches_paper_shape(tmp_path, tiny_model):
    info = train_backward(
        SEED, tiny_model, tmp_path / "bw", BackwardConfig(max_steps=4, micro_batch_size=4, learning_rate=2e-4)
    )
    log = json.loads((tmp_path / "bw" / "train_log.json").read_text())
    lrs = [h["learning_rate"] for h in log if "learning_rate" in h]
    assert lrs[0] == pytest.approx(2e-4) and lrs[-1] >= 0.9 * 2e-4 - 1e-12  # linear decay towards 0.9 x peak
    assert lrs == sorted(lrs, reverse=True)
    assert info["batch_size"] == 8


def test_lora_training_merges_into_a_plain_model(tmp_path, tiny_model):
    from transformers import AutoModelForCausalLM

    sft(
        [{"prompt": e["prompt"], "completion": e["completion"]} for e in forward_examples(SEED, [])],
        tiny_model,
        tmp_path / "lora",
        TrainConfig(max_steps=1, use_lora=True, lora_r=4, micro_batch_size=4),
    )
    assert not (tmp_path / "lora" / "adapter_config.json").exists()
    AutoModelForCausalLM.from_pretrained(tmp_path / "lora")


def test_lora_merge_changes_the_weights(tmp_path, tiny_model):
    from transformers import AutoModelForCausalLM

    sft(
        [{"prompt": e["prompt"], "completion": e["completion"]} for e in forward_examples(SEED, [])],
        tiny_model,
        tmp_path / "lora",
        TrainConfig(max_steps=2, use_lora=True, lora_r=4, micro_batch_size=4, learning_rate=1e-2),
    )
    base = AutoModelForCausalLM.from_pretrained(tiny_model).state_dict()
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "lora").state_dict()
    assert set(base) == set(merged)
    assert any(not base[k].equal(merged[k]) for k in base if "q_proj" in k)


def test_shipped_accelerate_configs_load():
    from accelerate.commands.config.config_args import load_config_from_file

    from humpback.launch import SHIPPED, accelerate_config_path, launch_command

    kinds = {name: load_config_from_file(str(accelerate_config_path(name))).distributed_type.value for name in SHIPPED}
    assert kinds == {"ddp": "MULTI_GPU", "fsdp": "FSDP", "zero2": "DEEPSPEED", "zero3": "DEEPSPEED"}
    command = launch_command("JOB", TrainConfig(launcher="accelerate", num_processes=4, accelerate_config="zero3"))
    assert command[command.index("--num_processes") + 1] == "4" and command[-3:] == ["-m", "humpback.trainer", "JOB"]
    with pytest.raises(FileNotFoundError, match="neither a shipped config"):
        accelerate_config_path("zero4")


@pytest.mark.slow
def test_two_processes_train_like_one(tmp_path, tiny_model):
    """`humpback train --launcher accelerate --num-processes 2` (gloo on CPU): same loss at every
    step and the same weights as one process with the same effective batch. fp32 and no dropout,
    so the two runs see the same numbers (dropout masks differ between processes)."""
    from conftest import write_jsonl
    from safetensors.torch import load_file
    from typer.testing import CliRunner

    from humpback.cli import app

    seed = write_jsonl(
        tmp_path / "seed.jsonl", [{"instruction": r["instruction"], "output": r["output"]} for r in SEED]
    )
    runs = {}
    for name, flags in (("one", []), ("two", ["--launcher", "accelerate", "--num-processes", "2"])):
        result = CliRunner().invoke(
            app,
            [
                "train",
                "--seed",
                str(seed),
                "--model",
                tiny_model,
                "--out",
                str(tmp_path / name),
                "--max-steps",
                "3",
                "--batch-size",
                "8",
                "--micro-batch-size",
                "2",
                "--dropout",
                "0",
                "--no-bf16",
                "--learning-rate",
                "1e-3",
                *flags,
            ],
        )
        assert result.exit_code == 0, result.output
        info = json.loads((tmp_path / name / "_SUCCESS").read_text())
        log = json.loads((tmp_path / name / "train_log.json").read_text())
        runs[name] = (info, [h["loss"] for h in log if "loss" in h], load_file(tmp_path / name / "model.safetensors"))
    (one, one_losses, one_weights), (two, two_losses, two_weights) = runs["one"], runs["two"]
    assert one["processes"] == 1 and two["processes"] == 2 and two["distributed_type"] == "MULTI_CPU"
    assert len(two_losses) == len(one_losses) == 3
    assert two_losses == pytest.approx(one_losses, rel=1e-4)  # the stated tolerance (README, Running at scale)
    assert max((one_weights[k] - two_weights[k]).abs().max().item() for k in one_weights) < 1e-5
    assert not (tmp_path / ".two.launch").exists()  # the job files are cleaned up
