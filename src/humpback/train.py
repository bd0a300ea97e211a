"""Fine-tuning with TRL's SFTTrainer, and the forward models M_0, M_1, ... of the loop.

Every example is a chat prompt and a completion; the loss is on the completion tokens only
(TRL's prompt-completion format). The schedule follows the paper: linear decay from the peak
to 0.9 x peak, weight decay 0.1, dropout 0.1, batch 8 below 3,000 examples else 32, and a step
count interpolated from its data-scaling table.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import shutil
import time
from pathlib import Path

from .config import ForwardConfig, TrainConfig
from .shards import SUCCESS, mark_done, stage_info, write_jsonl
from .tags import ORIGIN_TAGS, tagged_prompt


# The paper's 7B data-scaling runs: examples -> optimizer steps (batch 8 below 3,000, else 32).
PAPER_STEPS = [(100, 30), (800, 300), (1600, 600), (3200, 500), (6400, 600), (12800, 600), (25600, 1200), (51200, 1600)]
DROPOUT_FIELDS = ("attention_dropout", "hidden_dropout", "dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop",
                  "hidden_dropout_prob", "attention_probs_dropout_prob")


def _checkpointing_field() -> str:
    from trl import SFTConfig

    # transformers 5 renamed gradient_checkpointing to activation_checkpointing
    return "activation_checkpointing" if "activation_checkpointing" in SFTConfig.__dataclass_fields__ else "gradient_checkpointing"


def paper_batch_size(n_examples: int) -> int:
    return 8 if n_examples < 3000 else 32


def paper_steps(n_examples: int) -> int:
    """Steps for n examples, interpolated (log-linearly in n) from the paper's table."""
    sizes = [n for n, _ in PAPER_STEPS]
    if n_examples <= sizes[0]:
        return max(1, round(PAPER_STEPS[0][1] * n_examples / sizes[0]))
    if n_examples >= sizes[-1]:
        return round(PAPER_STEPS[-1][1] * n_examples / sizes[-1])
    i = bisect.bisect_right(sizes, n_examples)
    (n0, s0), (n1, s1) = PAPER_STEPS[i - 1], PAPER_STEPS[i]
    t = (math.log(n_examples) - math.log(n0)) / (math.log(n1) - math.log(n0))
    return round(s0 + t * (s1 - s0))


def default_learning_rate(model_path: str) -> float:
    """The paper's 1e-5 was for 7B-70B models; small models need more to move at all."""
    from .models import model_size

    return 1e-5 if model_size(model_path) >= 1_000_000_000 else 1e-4


def sft(examples: list[dict], base_model: str, out_dir: Path, cfg: TrainConfig, desc: str = "train") -> dict:
    """Fine-tune base_model on prompt/completion chat examples; save a transformers model.

    Skipped when out_dir already holds a finished model. The model is written to a temporary
    directory and renamed, so a killed training never leaves a model that looks finished.
    """
    out_dir = Path(out_dir)
    if (out_dir / SUCCESS).exists():
        return stage_info(out_dir)
    if not examples:
        raise ValueError(f"{desc}: no training examples")
    if cfg.launcher == "accelerate":
        from .launch import launch_sft

        return launch_sft(examples, base_model, out_dir, cfg, desc)
    import torch
    import datasets
    from datasets import Dataset
    from transformers import AutoConfig, AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from .models import load_tokenizer

    datasets.disable_progress_bars()  # TRL's per-step dataset maps would flood the terminal
    start = time.time()
    n = len(examples)
    batch_size = cfg.batch_size or paper_batch_size(n)
    micro = min(cfg.micro_batch_size, batch_size)
    processes = int(os.environ.get("WORLD_SIZE", 1))  # > 1 under accelerate launch (launch.py)
    lr = cfg.learning_rate or default_learning_rate(base_model)
    steps = -1 if cfg.num_epochs else (cfg.max_steps or paper_steps(n))

    config = AutoConfig.from_pretrained(base_model)
    saved_dropout = {f: getattr(config, f) for f in DROPOUT_FIELDS if isinstance(getattr(config, f, None), float)}
    for field in saved_dropout:
        setattr(config, field, cfg.dropout)
    model = AutoModelForCausalLM.from_pretrained(base_model, config=config, dtype=torch.float32)
    tokenizer = load_tokenizer(base_model, padding_side="right")

    peft_config = None
    if cfg.use_lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                 target_modules="all-linear", task_type="CAUSAL_LM")

    work_dir = out_dir.with_name(f".{out_dir.name}.work")
    checkpointing = {_checkpointing_field(): cfg.gradient_checkpointing}
    args = SFTConfig(
        output_dir=str(work_dir),
        max_steps=steps,
        num_train_epochs=cfg.num_epochs or 1.0,
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=max(1, batch_size // (micro * processes)),
        learning_rate=lr,
        lr_scheduler_type="polynomial",  # power 1: linear decay to lr_end (the paper: 1e-5 -> 9e-6)
        lr_scheduler_kwargs={"lr_end": lr * cfg.final_lr_ratio, "power": 1.0},
        warmup_steps=cfg.warmup_ratio,
        weight_decay=cfg.weight_decay,
        max_length=cfg.max_length,
        completion_only_loss=True,
        **checkpointing,
        bf16=cfg.bf16,
        seed=cfg.random_seed,
        data_seed=cfg.random_seed,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        dataloader_num_workers=0,
        dataset_num_proc=None,
        use_cpu=not torch.cuda.is_available(),
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(examples),
                         processing_class=tokenizer, peft_config=peft_config)
    result = trainer.train()

    for field, value in saved_dropout.items():  # the saved model infers like its base
        setattr(trainer.model.config, field, value)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")  # one name for all processes: process 0 writes it
    if trainer.is_world_process_zero():
        shutil.rmtree(tmp, ignore_errors=True)
    trainer.save_model(str(tmp))  # every process takes part: FSDP and ZeRO-3 gather the weights
    if not trainer.is_world_process_zero():
        return {}
    (tmp / "training_args.bin").unlink(missing_ok=True)
    if cfg.use_lora:
        _merge_lora(tmp, base_model)
    tokenizer.padding_side = "left"
    tokenizer.save_pretrained(tmp)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    (tmp / "train_log.json").write_text(json.dumps(trainer.state.log_history, indent=1))
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    shutil.rmtree(work_dir, ignore_errors=True)
    info = {
        "examples": n, "steps": trainer.state.global_step, "batch_size": batch_size, "learning_rate": lr,
        "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
        "train_loss": result.training_loss, "train_seconds": round(result.metrics["train_runtime"], 2),
        "base_model": base_model, "processes": processes,
        "distributed_type": trainer.accelerator.distributed_type.value, "seconds": round(time.time() - start, 2),
    }
    mark_done(out_dir, info)
    return info


def _merge_lora(model_dir: Path, base_model: str) -> None:
    """Replace the saved LoRA adapter in model_dir by the base model with the adapter merged in."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, model_dir).merge_and_unload()
    for adapter_file in ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"):
        (model_dir / adapter_file).unlink(missing_ok=True)
    merged.save_pretrained(model_dir)


# --- forward models -----------------------------------------------------------------------

def forward_example(record: dict, origin: str, placement: str = "system") -> dict:
    """A training example: the instruction under its origin's tag, the output as the reply."""
    prompt = tagged_prompt(record["instruction"], ORIGIN_TAGS[origin], placement)
    return {"id": record["id"], "origin": origin, "prompt": prompt,
            "completion": [{"role": "assistant", "content": record["output"]}]}


def forward_examples(seed: list[dict], curated: list[dict], placement: str = "system") -> list[dict]:
    """Seed examples tagged S_a, curated candidates tagged S_w (paper, section 2.3)."""
    return ([forward_example(r, "seed", placement) for r in seed]
            + [forward_example(r, "augmented", placement) for r in curated])


def as_messages(example: dict) -> dict:
    """The chat `messages` form of a training example, for the final dataset."""
    return {"id": example["id"], "origin": example["origin"], "messages": example["prompt"] + example["completion"]}


def train_forward(seed: list[dict], curated: list[dict], base_model: str, out_dir: Path,
                  cfg: ForwardConfig | None = None, dataset_path: Path | None = None) -> dict:
    """M_i: the base fine-tuned on seed (+ curated) examples. Writes the training set too."""
    cfg = cfg or ForwardConfig()
    examples = forward_examples(seed, curated, cfg.tag_placement)
    columns = [{"prompt": e["prompt"], "completion": e["completion"]} for e in examples]
    info = sft(columns, base_model, out_dir, cfg, desc=f"train {Path(out_dir).name}")
    if dataset_path is not None:  # after training: the model directory is replaced when it finishes
        write_jsonl(Path(dataset_path), (as_messages(e) for e in examples))
    return info
