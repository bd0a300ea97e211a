"""Will a training fit? An estimate of its peak memory, checked before it starts.

A training that does not fit is killed by the kernel with no word of why, often hours into a
run. So before every training the peak is estimated from the model's shape and the longest
micro batch the data can make, and compared with the memory this machine (or cgroup, or GPU)
has free; when it will not fit the run stops with one line saying what to change.

The estimate: weights, gradients and AdamW's two moments in fp32 (16 bytes a parameter, plus a
bf16 copy under autocast), activations of the longest micro batch (per token and layer, a few
hidden-size and MLP-size tensors; with gradient checkpointing only the layer inputs), the
logits over the vocabulary, and with attention-probability dropout every layer's attention
matrix. Its constants were fitted to ``bench/train_memory.py`` (the README's table) so that it
errs on the high side; it is a guard, not a profiler.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .config import TrainConfig
from .records import TrainingExample

log = logging.getLogger("humpback")

GB = 1e9
PROCESS_BASE = 1.2 * GB  # python + torch + transformers + TRL, measured before the model loads
BYTES_PER_PARAM = 18  # fp32 weight, gradient, two Adam moments, bf16 autocast copy
LORA_BYTES_PER_PARAM = 6  # frozen fp32 weight and its bf16 copy
ACTIVATION_PER_TOKEN_LAYER = (44, 12)  # bytes x (hidden, intermediate) kept per token and layer
CHECKPOINTED_PER_TOKEN_LAYER = 10  # bytes x hidden: the layer input kept under checkpointing
LOGIT_BYTES = 16  # per token and vocabulary entry: fp32 logits, their log-softmax and gradient
HEADROOM = 0.85  # plan to use at most this share of what is free: allocator slack, other processes, page cache
ATTENTION_MATRIX_BYTES = 13  # per head and (query, key) pair: fp32 scores, probabilities, mask, dropped


class MemoryBudgetError(ValueError):
    """A training would not fit in the memory available; the message says what to change."""


def _template_length(tokenizer, messages: list[dict], generation_prompt: bool) -> int:
    try:
        ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt)
        ids = ids["input_ids"] if hasattr(ids, "keys") else ids
        return len(ids)
    except Exception:  # noqa: BLE001 - no template: count the text, a little over
        return len(tokenizer(" ".join(m["content"] for m in messages))["input_ids"]) + 8 * len(messages)


def example_lengths(example: TrainingExample, tokenizer) -> tuple[int, int]:
    """(prompt tokens, prompt + completion tokens) of a prompt/completion chat example, as trained."""
    prompt = list(example["prompt"])
    return (
        _template_length(tokenizer, prompt, True),
        _template_length(tokenizer, prompt + list(example["completion"]), False),
    )


def longest_tokens(examples: list[TrainingExample], tokenizer, count: int) -> list[int]:
    """Token count of each of the first ``count`` prompt + completion examples, as trained."""
    return [example_lengths(e, tokenizer)[1] for e in examples[:count]]


def estimate_training_peak(
    examples: list[TrainingExample],
    base_model: str,
    cfg: TrainConfig,
    tokenizer=None,
    checkpointing: bool | None = None,
    longest_example: int | None = None,
) -> dict:
    """Bytes at the peak of one process's training, by part (``total`` is their sum); with or
    without gradient checkpointing (default: as cfg says, auto counting as off). ``longest_example``
    (tokens) spares tokenizing the examples when the caller has counted them already."""
    if checkpointing is None:
        checkpointing = cfg.gradient_checkpointing == "on"
    from transformers import AutoConfig

    from .models import load_tokenizer, model_size

    config = AutoConfig.from_pretrained(base_model)
    config = getattr(config, "text_config", None) or config
    if longest_example is None:
        tokenizer = tokenizer or load_tokenizer(base_model, padding_side="right", chat_template=cfg.chat_template)
        longest_example = max(longest_tokens(examples, tokenizer, len(examples)), default=1)
    micro = min(cfg.micro_batch_size, cfg.batch_size or (8 if len(examples) < 3000 else 32))
    longest = min(longest_example, cfg.max_length)
    tokens = micro * longest  # the worst micro batch: the longest example, the rest padded to it
    params = model_size(base_model)
    hidden: int = getattr(config, "hidden_size", None) or getattr(config, "n_embd", None) or 1024
    layers: int = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None) or 12
    heads: int = getattr(config, "num_attention_heads", None) or getattr(config, "n_head", None) or 16
    inner: int = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) or 4 * hidden
    vocab: int = getattr(config, "vocab_size", None) or 32000
    weights = params * (LORA_BYTES_PER_PARAM if cfg.use_lora else BYTES_PER_PARAM)
    if checkpointing:
        per_token = CHECKPOINTED_PER_TOKEN_LAYER * hidden * layers + (
            ACTIVATION_PER_TOKEN_LAYER[0] * hidden + ACTIVATION_PER_TOKEN_LAYER[1] * inner
        )
    else:
        per_token = layers * (ACTIVATION_PER_TOKEN_LAYER[0] * hidden + ACTIVATION_PER_TOKEN_LAYER[1] * inner)
    activations = tokens * per_token
    logits = tokens * vocab * LOGIT_BYTES
    attention = 0
    if cfg.dropout_placement == "attention" and cfg.dropout > 0:
        kept_layers = 2 if checkpointing else layers  # checkpointed: the layer recomputed and the one running
        attention = kept_layers * micro * heads * longest * longest * ATTENTION_MATRIX_BYTES
    parts = {
        "process": PROCESS_BASE,
        "weights_and_optimizer": weights,
        "activations": activations,
        "logits": logits,
        "attention_matrices": attention,
    }
    total = sum(parts.values())
    return {
        **{k: int(v) for k, v in parts.items()},
        "total": int(total),
        "micro_batch": micro,
        "longest_tokens": longest,
        "parameters": params,
    }


def available_memory() -> tuple[int | None, str]:
    """Bytes a new allocation can still get here, and what limits it (RAM or a cgroup)."""
    available, what = None, "memory available"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except OSError:
        pass
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            limit = Path(limit_file).read_text().strip()
            if limit != "max" and int(limit) < (1 << 60):
                room = int(limit) - int(Path(usage_file).read_text().strip())
                if available is None or room < available:
                    available, what = room, "memory left under this cgroup's limit"
        except (OSError, ValueError):
            continue
    return available, what


def _resident() -> int:
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def check_training_memory(
    examples: list[TrainingExample], base_model: str, cfg: TrainConfig, desc: str, longest_example: int | None = None
) -> bool:
    """Whether to train with gradient checkpointing: ``auto`` turns it on only when the estimated
    peak without it exceeds the memory free. Stops now, saying what to change, when even the
    chosen way will not fit (or ``off`` will not)."""
    if not cfg.memory_check:
        return cfg.gradient_checkpointing == "on"
    import torch

    processes = cfg.num_processes if cfg.launcher == "accelerate" else 1
    available: int | None
    if torch.cuda.is_available():
        available, what = torch.cuda.mem_get_info()[0], "GPU memory free"
    else:
        available, what = available_memory()
    if cfg.memory_limit_gb is not None and (available is None or cfg.memory_limit_gb * GB < available):
        available, what = int(cfg.memory_limit_gb * GB), "the training's memory_limit_gb"
    choices = {"on": [True], "off": [False], "auto": [False, True]}[cfg.gradient_checkpointing]
    if longest_example is None:  # counted once for both estimates
        from .models import load_tokenizer

        tokenizer = load_tokenizer(base_model, padding_side="right", chat_template=cfg.chat_template)
        longest_example = max(longest_tokens(examples, tokenizer, len(examples)), default=1)
    without = 0.0  # the need without checkpointing, once that was tried
    for checkpointing in choices:
        estimate = estimate_training_peak(examples, base_model, cfg, None, checkpointing, longest_example)
        if torch.cuda.is_available():
            need = estimate["total"] - estimate["process"]  # per process, each on its own GPU
        else:  # this process already holds its own base; launched processes each need a whole one
            need = processes * estimate["total"] - (0 if processes > 1 else min(_resident(), estimate["process"]))
        if available is None or need <= HEADROOM * available:
            if checkpointing and cfg.gradient_checkpointing == "auto":
                log.warning(
                    "%s: gradient checkpointing on: without it the longest micro batch (%d x %d tokens) "
                    "would need about %.1f GB, and %.1f GB is %s (planning for %d%% of it)",
                    desc,
                    estimate["micro_batch"],
                    estimate["longest_tokens"],
                    without / GB,
                    (available or 0) / GB,
                    what,
                    HEADROOM * 100,
                )
            return checkpointing
        without = need
    hints = []
    if estimate["attention_matrices"] > 0.2 * estimate["total"]:
        hints.append("--dropout-placement residual")
    if not checkpointing:
        hints.append("--gradient-checkpointing auto")
    if estimate["micro_batch"] > 1:
        hints.append("--micro-batch-size 1")
    hints.append(
        f"a lower --max-length (now {cfg.max_length}; the longest example has {estimate['longest_tokens']} tokens)"
    )
    raise MemoryBudgetError(
        f"{desc}: this training needs about {need / GB:.1f} GB at its peak (micro batches of "
        f"{estimate['micro_batch']} x {estimate['longest_tokens']} tokens, {estimate['parameters'] / 1e6:.0f}M "
        f"parameters{f', {processes} processes' if processes > 1 else ''}"
        f"{', gradient checkpointing' if checkpointing else ''}) but {(available or 0) / GB:.1f} GB is "
        f"{what} (planning for {HEADROOM:.0%} of it); try {', '.join(hints)} (or --no-memory-check to try anyway)"
    )
