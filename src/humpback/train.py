"""Fine-tuning, and the forward models M_0, M_1, ... of the loop.

Every example is a chat prompt and a completion; the loss is on the completion tokens only
(TRL's prompt-completion format). ``sft`` owns the model folder (claimed, locked, fingerprinted),
drops examples that cannot be learnt within max_length, checks the memory, then trains here
or under ``accelerate launch`` (launch.py); the training itself is trainer.py's.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .config import ForwardConfig, PreferenceTrainConfig, TrainConfig, fields_with
from .files import write_jsonl
from .launch import launch_sft
from .memory import check_training_memory
from .outputs import input_fingerprint, records_digest, stage_output
from .records import DatasetRow, ForwardExample, PreferenceExample, Reject, SeedPair, TrainingExample
from .shards import SUCCESS, stage_info
from .tags import ORIGIN_TAGS, tagged_prompt
from .trainer import (  # noqa: F401 - the training helpers are humpback.train's API too
    DROPOUT_FIELDS,  # noqa: F401
    add_residual_dropout,  # noqa: F401
    default_learning_rate,  # noqa: F401
    dropout_settings,  # noqa: F401
    paper_batch_size,
    paper_steps,  # noqa: F401
    split_batch,
    train_here,
)

log = logging.getLogger("humpback")


def sft(
    examples: list[TrainingExample],
    base_model: str,
    out_dir: Path,
    cfg: TrainConfig,
    desc: str = "train",
    recompute: bool = False,
    kind: str = "sft",
) -> dict:
    """Fine-tune base_model on prompt/completion chat examples; save a transformers model.

    ``out_dir`` must be new, empty or a humpback model folder: nothing else is ever written into
    or removed. Skipped when it already holds a model finished from the same base, examples and
    settings; one made otherwise is refused (StaleOutputError) or, with ``recompute``, retrained.
    The model is saved under a temporary name inside ``out_dir`` and ``_SUCCESS`` is written
    last, so a killed training never leaves a model that looks finished.
    """
    if not examples:
        raise ValueError(f"{desc}: no training examples")
    fields = {
        "base_model": input_fingerprint(base_model),
        "examples": records_digest(examples),
        "config": cfg.model_dump(mode="json", include=fields_with(type(cfg), "output")),
        **({"kind": kind} if kind != "sft" else {}),  # an SFT model folder's fingerprint is as it was
    }
    with stage_output(out_dir, "model", fields, recompute) as out_dir:
        if (out_dir / SUCCESS).exists():
            return stage_info(out_dir)
        for stale in [*out_dir.glob(".work-*"), *out_dir.glob(".save-*"), *out_dir.glob(".launch*")]:
            shutil.rmtree(stale, ignore_errors=True)  # a killed attempt's (we hold the lock: no one else's)
        split_batch(
            cfg.batch_size or paper_batch_size(len(examples)),
            cfg.micro_batch_size,
            cfg.num_processes if cfg.launcher == "accelerate" else 1,
        )  # a batch that cannot be split fails now
        examples, fit = fit_examples(examples, base_model, cfg.max_length, desc, cfg.chat_template)
        fit["examples_digest"] = fields["examples"]  # what the model is trained on, as the dataset file holds it
        memory_cfg = cfg
        if kind == "dpo":  # a pair is two sequences in every micro batch (the frozen reference's weights aside)
            memory_cfg = cfg.model_copy(update={"micro_batch_size": 2 * cfg.micro_batch_size})
        checkpointing = check_training_memory(
            _as_completions(examples), base_model, memory_cfg, desc, fit["longest_tokens"]
        )
        cfg = cfg.model_copy(update={"gradient_checkpointing": "on" if checkpointing else "off"})
        fit["gradient_checkpointing"] = checkpointing
        if cfg.launcher == "accelerate":
            return launch_sft(examples, base_model, out_dir, cfg, desc, fit, kind=kind)
        return train_here(examples, base_model, out_dir, cfg, desc, token=str(os.getpid()), fit=fit, kind=kind)


def _as_completions(examples: list) -> list[TrainingExample]:
    """Prompt/completion examples for the memory estimate: a preference pair as its longer answer."""
    out = []
    for e in examples:
        if "completion" in e:
            out.append(e)
        else:
            longer = max(e["chosen"], e["rejected"], key=lambda m: len(str(m[-1].get("content", ""))))
            out.append(TrainingExample(prompt=e["prompt"], completion=longer))
    return out


def dpo(
    pairs: Sequence[Mapping[str, Any]],
    base_model: str,
    out_dir: Path,
    cfg: PreferenceTrainConfig | None = None,
    desc: str = "train dpo",
    recompute: bool = False,
) -> dict:
    """Train base_model with DPO (TRL's DPOTrainer) on preference pairs (prompt, chosen,
    rejected: preferences.py writes them); the base is also the frozen reference. The same model
    folder, launcher, memory check and resume as ``sft``."""
    cfg = cfg or PreferenceTrainConfig()
    examples = [PreferenceExample(prompt=p["prompt"], chosen=p["chosen"], rejected=p["rejected"]) for p in pairs]
    return sft(examples, base_model, out_dir, cfg, desc, recompute, kind="dpo")  # type: ignore[arg-type]


def _user_rows(path: Path | str, what: str, folder: str) -> list[tuple[str, object]]:
    """(where, row) of a stage folder's records or of a user's JSONL (a bad line as a BadLine)."""
    from .files import jsonl_lines
    from .shards import read_stage

    path = Path(path)
    if path.is_dir():
        return [(f"{path}#{i}", r) for i, r in enumerate(read_stage(path), 1)]
    if path.is_file():
        return list(jsonl_lines(path))
    raise FileNotFoundError(f"{what} {path} does not exist (give {folder} or a JSONL file)")


def read_preferences(path: Path | str) -> tuple[list[dict], list[Reject]]:
    """Preference pairs to train on: a ``preferences`` stage folder, or a user's JSONL in TRL's
    conversational preference format (``prompt`` messages or text, ``chosen``, ``rejected``); a
    line that is not such a pair is a reject naming its file and line."""
    from .files import BadLine
    from .shards import reject

    rows = _user_rows(path, "preference data", "a preferences/ folder")
    kept, rejects = [], []
    for where, row in rows:
        if isinstance(row, BadLine):
            rejects.append(reject("train", where, row.reason))
            continue
        pair = _as_preference(row)
        if pair is None:
            rejects.append(reject("train", where, "not a preference pair: needs prompt, chosen and rejected", row))
        else:
            kept.append(pair)
    return kept, rejects


def _as_preference(row: object) -> dict | None:
    """A row as chat messages (a plain-text prompt or answer becomes one message), or None."""
    if not isinstance(row, dict):
        return None
    out = {}
    for field, role in (("prompt", "user"), ("chosen", "assistant"), ("rejected", "assistant")):
        value = row.get(field)
        if isinstance(value, str) and value.strip():
            value = [{"role": role, "content": value}]
        if not (isinstance(value, list) and value and all(isinstance(m, dict) and "content" in m for m in value)):
            return None
        out[field] = value
    return {**row, **out}


def fit_examples(
    examples: list[TrainingExample],
    base_model: str,
    max_length: int,
    desc: str,
    chat_template: Path | str | None = None,
) -> tuple[list[TrainingExample], dict]:
    """The examples that leave something to learn within max_length tokens. One whose prompt
    alone fills the limit would be trained on no completion token at all (truncation keeps the
    start): it is dropped, said and counted, not counted as trained. Longer completions are cut."""
    from .models import load_tokenizer

    tokenizer = load_tokenizer(base_model, padding_side="right", chat_template=chat_template)
    kept, dropped, truncated, longest, tokens = [], [], 0, 1, 0
    for i, example in enumerate(examples):
        prompt_tokens, total_tokens = _lengths(example, tokenizer)
        if prompt_tokens >= max_length:
            dropped.append(i)
            continue
        truncated += total_tokens > max_length
        longest = max(longest, total_tokens)
        tokens += min(total_tokens, max_length)
        kept.append(example)
    if dropped:
        log.warning(
            "%s: %d example(s) dropped: their prompt alone fills max_length=%d tokens, leaving no "
            "completion to learn (examples %s); raise --max-length to keep them",
            desc,
            len(dropped),
            max_length,
            ", ".join(map(str, dropped[:10])) + (" ..." if len(dropped) > 10 else ""),
        )
    if truncated:
        log.warning(
            "%s: %d example(s) longer than max_length=%d tokens: their completions are cut",
            desc,
            truncated,
            max_length,
        )
    if not kept:
        raise ValueError(f"{desc}: every example's prompt fills max_length={max_length} tokens; raise --max-length")
    return kept, {
        "examples_given": len(examples),
        "dropped_too_long": len(dropped),
        "truncated": truncated,
        "longest_tokens": longest,
        "tokens": tokens,  # of the kept examples, as trained (cut at max_length): one pass over them
    }


def _lengths(example, tokenizer) -> tuple[int, int]:
    """(prompt tokens, longest prompt + answer tokens) of an SFT example or a preference pair."""
    from .memory import example_lengths

    if "completion" in example:
        return example_lengths(example, tokenizer)
    chosen = example_lengths(TrainingExample(prompt=example["prompt"], completion=example["chosen"]), tokenizer)
    rejected = example_lengths(TrainingExample(prompt=example["prompt"], completion=example["rejected"]), tokenizer)
    return chosen[0], max(chosen[1], rejected[1])


# --- forward models -----------------------------------------------------------------------


def forward_example(record: Mapping[str, Any], origin: str, placement: str = "system") -> ForwardExample:
    """A training example: the instruction under its origin's tag, the output as the reply."""
    prompt = tagged_prompt(record["instruction"], ORIGIN_TAGS[origin], placement)
    return ForwardExample(
        id=record["id"], origin=origin, prompt=prompt, completion=[{"role": "assistant", "content": record["output"]}]
    )


def forward_examples(
    seed: Sequence[SeedPair], curated: Sequence[Mapping[str, Any]], placement: str = "system"
) -> list[ForwardExample]:
    """Seed examples tagged S_a, curated candidates tagged S_w (paper, section 2.3)."""
    return [forward_example(r, "seed", placement) for r in seed] + [
        forward_example(r, "augmented", placement) for r in curated
    ]


def as_messages(example: ForwardExample) -> DatasetRow:
    """The chat `messages` form of a training example, for the final dataset."""
    return DatasetRow(id=example["id"], origin=example["origin"], messages=example["prompt"] + example["completion"])


def read_curated(path: Path | str) -> tuple[list[dict], list[Reject]]:
    """Curated pairs to train on beside the seed: a stage folder of shards (``curate``'s curated/)
    or a user's JSONL of {instruction, output} rows. A row without an ``id`` gets one made from
    its text; a line that is not such a pair is a reject naming its file and line."""
    from .files import BadLine
    from .shards import reject, stable_id

    rows = _user_rows(path, "curated data", "curate's curated/ folder")
    kept: list[dict] = []
    rejects: list[Reject] = []
    for where, row in rows:
        if isinstance(row, BadLine):
            rejects.append(reject("train", where, row.reason))
        elif not (
            isinstance(row, dict)
            and isinstance(row.get("instruction"), str)
            and isinstance(row.get("output"), str)
            and row["instruction"].strip()
            and row["output"].strip()
        ):
            rejects.append(reject("train", where, "not a pair: needs string fields 'instruction' and 'output'", row))
        else:
            kept.append({**row, "id": str(row.get("id") or stable_id("curated", row["instruction"], row["output"]))})
    return kept, rejects


def train_forward(
    seed: Sequence[SeedPair],
    curated: Sequence[Mapping[str, Any]],
    base_model: str,
    out_dir: Path,
    cfg: ForwardConfig | None = None,
    dataset_path: Path | None = None,
    recompute: bool = False,
) -> dict:
    """M_i: the base fine-tuned on seed (+ curated) examples. Writes the training set too, only
    once the model trained on it exists, so a dataset on disk is always its model's; the model's
    _SUCCESS records the dataset's digest (``examples_digest``)."""
    cfg = cfg or ForwardConfig()
    examples = forward_examples(seed, curated, cfg.tag_placement)
    columns = [TrainingExample(prompt=e["prompt"], completion=e["completion"]) for e in examples]
    info = sft(columns, base_model, out_dir, cfg, desc=f"train {Path(out_dir).name}", recompute=recompute)
    if dataset_path is not None:
        write_jsonl(Path(dataset_path), (as_messages(e) for e in examples))
    return info
