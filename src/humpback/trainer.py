"""The training itself: TRL's SFTTrainer on prompt/completion chat examples, in this process.

``train.sft`` calls ``train_here`` directly, or has ``accelerate launch`` run this module on
several processes (``python -m humpback.trainer JOB_DIR``, see launch.py): every process trains,
process 0 saves the model. Nothing here knows about the launcher.

The schedule follows the paper: linear decay from the peak to 0.9 x peak, weight decay 0.1,
dropout 0.1, batch 8 below 3,000 examples else 32, and a step count interpolated from its
data-scaling table.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from .config import PreferenceTrainConfig, TrainConfig
from .files import read_jsonl
from .records import PreferenceExample, TrainingExample
from .shards import mark_done

# The paper's 7B data-scaling runs: examples -> optimizer steps (batch 8 below 3,000, else 32).
PAPER_STEPS = [
    (100, 30),
    (800, 300),
    (1600, 600),
    (3200, 500),
    (6400, 600),
    (12800, 600),
    (25600, 1200),
    (51200, 1600),
]
# Dropout fields of transformers configs: on attention probabilities, and on the residual stream.
ATTENTION_DROPOUT_FIELDS = ("attention_dropout", "attn_pdrop", "attention_probs_dropout_prob")
RESIDUAL_DROPOUT_FIELDS = ("hidden_dropout", "dropout", "resid_pdrop", "embd_pdrop", "hidden_dropout_prob")
DROPOUT_FIELDS = ATTENTION_DROPOUT_FIELDS + RESIDUAL_DROPOUT_FIELDS
# The last projection of attention and of the MLP in Llama-style blocks (Llama, Qwen2, Mistral, Phi-3,
# Gemma): residual dropout goes on their outputs, before they join the residual stream.
SUBLAYER_OUTPUTS = ("o_proj", "down_proj")


def _checkpointing_field() -> str:
    from trl import SFTConfig

    # transformers 5 renamed gradient_checkpointing to activation_checkpointing
    return (
        "activation_checkpointing"
        if "activation_checkpointing" in SFTConfig.__dataclass_fields__
        else "gradient_checkpointing"
    )


def paper_batch_size(n_examples: int) -> int:
    return 8 if n_examples < 3000 else 32


def paper_steps(n_examples: int) -> int:
    """Optimizer steps for n examples: the number of examples the paper's table trains on (steps x
    batch: 240 at 100 examples, 2,400 at 800, 4,800 at 1,600, 16,000 at 3,200, ...), interpolated
    log-linearly in n, over this n's batch. Interpolating the steps themselves would jump at the
    batch switch (2,999 examples: 1.4 epochs; 3,000: 5.4); interpolating what is seen does not."""
    seen_table = [(n, steps * paper_batch_size(n)) for n, steps in PAPER_STEPS]
    sizes = [n for n, _ in seen_table]
    if n_examples <= sizes[0]:
        seen = seen_table[0][1] * n_examples / sizes[0]
    elif n_examples >= sizes[-1]:
        seen = seen_table[-1][1] * n_examples / sizes[-1]
    else:
        i = bisect.bisect_right(sizes, n_examples)
        (n0, e0), (n1, e1) = seen_table[i - 1], seen_table[i]
        t = (math.log(n_examples) - math.log(n0)) / (math.log(n1) - math.log(n0))
        seen = math.exp(math.log(e0) + t * (math.log(e1) - math.log(e0)))
    return max(1, round(seen / paper_batch_size(n_examples)))


def split_batch(batch_size: int, micro_batch_size: int, processes: int) -> tuple[int, int]:
    """(micro batch, gradient accumulation steps) whose product over ``processes`` is exactly the
    effective batch: the largest micro batch up to ``micro_batch_size`` that divides it. A batch
    that cannot be shared evenly among the processes is an error, not a larger or smaller batch."""
    if batch_size % processes:
        raise ValueError(
            f"the effective batch of {batch_size} cannot be split evenly over {processes} processes: "
            f"use a number of processes that divides it, or set --batch-size"
        )
    per_process = batch_size // processes
    micro = max(m for m in range(1, min(micro_batch_size, per_process) + 1) if per_process % m == 0)
    return micro, per_process // micro


def default_learning_rate(model_path: str) -> float:
    """The paper's 1e-5 was for 7B-70B models; small models need more to move at all."""
    from .models import model_size

    return 1e-5 if model_size(model_path) >= 1_000_000_000 else 1e-4


def _bf16_is_fast() -> bool:
    """bf16 autocast only where the hardware computes bf16 (models.bf16_is_fast)."""
    from .models import bf16_is_fast

    return bf16_is_fast()


def train_here(
    examples: list[TrainingExample] | list[PreferenceExample],
    base_model: str,
    out_dir: Path,
    cfg: TrainConfig,
    desc: str,
    token: str,
    fit: dict | None = None,
    kind: str = "sft",
) -> dict:
    """The training itself, in this process (one of several under accelerate launch). ``token``
    names the temporary folders inside out_dir; every process of one launch shares it. ``kind``:
    sft (prompt/completion examples, SFTTrainer) or dpo (prompt/chosen/rejected, DPOTrainer with
    ``cfg.beta``; the reference model is the base, frozen)."""
    import datasets
    import torch
    from datasets import Dataset
    from transformers import AutoConfig, AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    from .models import load_tokenizer, stop_token_ids

    datasets.disable_progress_bars()  # TRL's per-step dataset maps would flood the terminal
    start = time.time()
    n = len(examples)
    batch_size = cfg.batch_size or paper_batch_size(n)
    processes = int(os.environ.get("WORLD_SIZE", 1))  # > 1 under accelerate launch (launch.py)
    micro, accumulation = split_batch(batch_size, cfg.micro_batch_size, processes)
    # DPO moves a model from where SFT left it: a tenth of SFT's rate (Yuan et al.: 1e-6 at 70B)
    lr = cfg.learning_rate or default_learning_rate(base_model) / (10 if kind == "dpo" else 1)
    steps = -1 if cfg.num_epochs else (cfg.max_steps or paper_steps(n))
    if kind == "dpo" and cfg.max_steps:  # the paper's step table is SFT's: a given step count wins
        steps = cfg.max_steps

    config = AutoConfig.from_pretrained(base_model)
    saved_dropout = {f: getattr(config, f) for f in DROPOUT_FIELDS if isinstance(getattr(config, f, None), float)}
    for field, value in dropout_settings(saved_dropout, cfg).items():
        setattr(config, field, value)
    model = AutoModelForCausalLM.from_pretrained(base_model, config=config, dtype=torch.float32)
    if cfg.dropout_placement == "residual" and not any(f in saved_dropout for f in RESIDUAL_DROPOUT_FIELDS):
        add_residual_dropout(model, cfg.dropout)
    tokenizer = load_tokenizer(base_model, padding_side="right", chat_template=cfg.chat_template)

    peft_config = None
    if cfg.use_lora:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        )

    work_dir = out_dir / f".work-{token}"
    checkpointing: dict[str, Any] = {_checkpointing_field(): cfg.gradient_checkpointing == "on"}
    common = dict(
        output_dir=str(work_dir),
        max_steps=steps,
        num_train_epochs=cfg.num_epochs or 1.0,
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=accumulation,
        learning_rate=lr,
        lr_scheduler_type="polynomial",  # power 1: linear decay to lr_end (the paper: 1e-5 -> 9e-6)
        lr_scheduler_kwargs={"lr_end": lr * cfg.final_lr_ratio, "power": 1.0},
        warmup_steps=cfg.warmup_ratio,
        weight_decay=cfg.weight_decay,
        max_length=cfg.max_length,
        **checkpointing,
        bf16=_bf16_is_fast() if cfg.bf16 is None else cfg.bf16,
        seed=cfg.random_seed,
        data_seed=cfg.random_seed,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        dataloader_num_workers=0,
        dataset_num_proc=None,
        use_cpu=not torch.cuda.is_available(),
    )
    trainer: Any
    if kind == "dpo":
        trainer = DPOTrainer(
            model=model,
            args=DPOConfig(**common, beta=getattr(cfg, "beta", 0.1)),
            train_dataset=Dataset.from_list(list(examples)),
            processing_class=tokenizer,
            peft_config=peft_config,
        )
    else:
        trainer = SFTTrainer(
            model=model,
            args=SFTConfig(**common, completion_only_loss=True),
            train_dataset=Dataset.from_list(list(examples)),
            processing_class=tokenizer,
            peft_config=peft_config,
        )
    result = trainer.train()
    trained: Any = trainer.model

    for field, value in saved_dropout.items():  # the saved model infers like its base
        setattr(trained.config, field, value)
    tmp = out_dir / f".save-{token}"  # one name for all processes of a launch: process 0 writes it
    if trainer.is_world_process_zero():
        shutil.rmtree(tmp, ignore_errors=True)
    trainer.save_model(str(tmp))  # every process takes part: FSDP and ZeRO-3 gather the weights
    if not trainer.is_world_process_zero():
        return {}
    (tmp / "training_args.bin").unlink(missing_ok=True)
    if cfg.use_lora:
        _merge_lora(tmp, base_model)
    tokenizer.padding_side = "left"
    tokenizer.save_pretrained(tmp)  # with the chat template it was trained under
    save_stop_tokens(tmp, stop_token_ids(tokenizer, trained.generation_config))
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    (tmp / "train_log.json").write_text(json.dumps(trainer.state.log_history, indent=1))
    _move_into(tmp, out_dir)
    shutil.rmtree(work_dir, ignore_errors=True)
    info = {
        "examples": n,
        "steps": trainer.state.global_step,
        "batch_size": batch_size,
        "learning_rate": lr,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "train_loss": result.training_loss,
        "train_seconds": round(result.metrics["train_runtime"], 2),
        "base_model": base_model,
        "processes": processes,
        "distributed_type": trainer.accelerator.distributed_type.value,
        "seconds": round(time.time() - start, 2),
        "kind": kind,
        **(fit or {}),
    }
    if fit and fit.get("tokens") and n:  # steps x batch examples at the set's mean length
        info["tokens_trained"] = round(fit["tokens"] / n * info["steps"] * batch_size)
    mark_done(out_dir, info)
    return info


def save_stop_tokens(model_dir: Path, stop_ids: list[int]) -> None:
    """Write the reply's stop tokens (the template's end of turn, eos) into the saved model's
    generation config, so vLLM, transformers' generate and other tools stop where it was trained to."""
    from transformers import GenerationConfig

    try:
        config = GenerationConfig.from_pretrained(model_dir)
    except OSError:
        config = GenerationConfig()
    config.eos_token_id = stop_ids if len(stop_ids) > 1 else stop_ids[0]
    config.save_pretrained(model_dir)


def dropout_settings(fields: dict[str, float], cfg: TrainConfig) -> dict[str, float]:
    """The dropout each config field gets for training. ``residual`` placement keeps attention
    probabilities undropped, so attention stays on its fused kernel (dropout on the attention
    matrix makes every layer keep a sequence-squared matrix for the backward pass)."""
    if cfg.dropout_placement == "attention":
        return {f: cfg.dropout for f in fields}
    return {f: 0.0 if f in ATTENTION_DROPOUT_FIELDS else cfg.dropout for f in fields}


def add_residual_dropout(model, p: float) -> int:
    """Dropout on the output of each attention and MLP block before it joins the residual stream
    (the Transformer's residual dropout), for families whose config has only attention dropout.
    Forward hooks: nothing is saved with the model. Returns how many modules got one."""
    import torch.nn.functional as F

    def hook(module, _inputs, output):
        return F.dropout(output, p, module.training)

    hooked = 0
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in SUBLAYER_OUTPUTS:
            module.register_forward_hook(hook)
            hooked += 1
    return hooked


def _move_into(saved: Path, out_dir: Path) -> None:
    """Move a saved model's files from its temporary folder into out_dir (ours: claimed as a model
    folder), replacing what a killed earlier attempt left there."""
    for item in saved.iterdir():
        target = out_dir / item.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(item, target)
    saved.rmdir()


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


def main(job_dir: Path) -> None:
    """One launched process: train on the job launch.py wrote (process 0 writes the model)."""
    job = json.loads((job_dir / "job.json").read_text(encoding="utf-8"))
    # the parent holds the model folder's lock and checked it; every process trains, process 0 saves
    kind = job.get("kind", "sft")
    rows = list(read_jsonl(job_dir / "examples.jsonl"))
    examples: list[TrainingExample] | list[PreferenceExample] = (
        [PreferenceExample(prompt=e["prompt"], chosen=e["chosen"], rejected=e["rejected"]) for e in rows]
        if kind == "dpo"
        else [TrainingExample(prompt=e["prompt"], completion=e["completion"]) for e in rows]
    )
    train_here(
        examples,
        job["base_model"],
        Path(job["out_dir"]),
        (PreferenceTrainConfig if kind == "dpo" else TrainConfig).model_validate(job["config"]),
        desc=job["desc"],
        token=job["token"],
        fit=job["fit"],
        kind=kind,
    )
    # every process leaves together and closes the group: a process that returned first and tore
    # gloo down at exit while process 0 still wrote the model has been seen to abort the launch
    from accelerate import PartialState

    state = PartialState()
    state.wait_for_everyone()
    state.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
