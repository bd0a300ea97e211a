"""Peak memory of one training step on a seed's longest examples, per training configuration.

Each configuration trains one optimizer step (the paper's batch of 8, in micro batches) on the 8
longest (output -> instruction) examples of the seed, in a fresh process, and reports that
process's peak resident memory: the worst batch the seed can give. It also prints what
``humpback.memory.estimate_training_peak`` predicts, which is what the check before every
training compares with the memory available.

    python bench/train_memory.py [--seed ../shared/data/seed/self_instruct_seed_tasks.jsonl]

Writes bench/results/train_memory.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_SEED = ROOT.parent / "shared" / "data" / "seed" / "self_instruct_seed_tasks.jsonl"

CONFIGS = {
    "attention dropout, no checkpointing (the old default)": {"gradient_checkpointing": "off", "memory_check": False},
    "attention dropout, gradient checkpointing": {"gradient_checkpointing": "on"},
    "defaults on a machine with 16 GB free (auto: checkpointing on)": {"memory_limit_gb": 16},
    "residual dropout, no checkpointing": {"dropout_placement": "residual", "gradient_checkpointing": "off"},
    "residual dropout, gradient checkpointing": {"dropout_placement": "residual", "gradient_checkpointing": "on"},
    "no dropout, no checkpointing": {"dropout": 0.0, "gradient_checkpointing": "off"},
}


def child(seed: str, overrides: dict) -> None:
    """One configuration, in this process: print the peak and the estimate as JSON."""
    from humpback.backward import backward_examples
    from humpback.config import BackwardConfig
    from humpback.memory import check_training_memory, estimate_training_peak, longest_tokens
    from humpback.models import load_tokenizer, resolve_model
    from humpback.seed import load_seed
    from humpback.train import sft

    model = resolve_model("smollm2-135m")
    pairs, _ = load_seed(seed)
    cfg = BackwardConfig(max_steps=1, batch_size=8, **overrides)
    examples = backward_examples(pairs, cfg.system_prompt)
    tokenizer = load_tokenizer(model)
    lengths = longest_tokens(examples, tokenizer, len(examples))
    order = sorted(range(len(examples)), key=lambda i: -lengths[i])
    worst = [examples[i] for i in order[:8]]
    checkpointing = check_training_memory(worst, model, cfg, "memory")  # what auto picks here
    estimate = estimate_training_peak(worst, model, cfg, checkpointing=checkpointing)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.time()
        sft(worst, model, Path(tmp) / "model", cfg, desc="memory")
        seconds = time.time() - start
    # VmHWM: this process image's own peak (ru_maxrss would keep a forking parent's across exec)
    peak = int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) * 1024
    print(
        json.dumps(
            {
                "peak_gb": round(peak / 1e9, 2),
                "estimate_gb": round(estimate["total"] / 1e9, 2),
                "gradient_checkpointing": checkpointing,
                "longest_tokens": max(lengths),
                "seconds": round(seconds, 1),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", default=str(SHARED_SEED))
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.seed, json.loads(args.child))
        return
    if not Path(args.seed).exists():
        sys.exit(f"seed {args.seed} not found (needs ../shared/data, or pass --seed)")
    results = {}
    for name, overrides in CONFIGS.items():
        done = subprocess.run(
            [sys.executable, __file__, "--seed", args.seed, "--child", json.dumps(overrides)],
            capture_output=True,
            text=True,
        )
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        results[name] = json.loads(lines[-1]) if lines else {"error": done.stderr[-500:]}
        print(name, results[name], flush=True)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_memory.json").write_text(json.dumps({"seed": args.seed, "results": results}, indent=1))
    rows = [
        "| configuration | checkpointing | peak RSS (GB) | estimate (GB) | longest example (tokens) | step (s) |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        rows.append(
            f"| {name} | {r.get('gradient_checkpointing', '')} | {r.get('peak_gb', 'failed')} | "
            f"{r.get('estimate_gb', '')} | {r.get('longest_tokens', '')} | {r.get('seconds', '')} |"
        )
    (out / "train_memory.md").write_text(
        f"One optimizer step (batch 8) on the 8 longest examples of {Path(args.seed).name}, "
        f"SmolLM2-135M, bf16 autocast, this machine.\n\n" + "\n".join(rows) + "\n"
    )


if __name__ == "__main__":
    main()
