"""The whole loop, composed from the stages (paper, section 2; METHOD.md, "The loop").

    seed ──> backward model M_yx ──> augment: one instruction per segment ──> candidates
    corpus ──> segments ──────────────────────^
    seed ──> M_0 ──rates──> A_k(1) ──> M_1 = base + seed + A_k(1) ──rates──> A_k(2) ──> M_2 ...

Candidates are generated once; each iteration re-rates the same candidates with the latest
model, and every M_i is trained from the base. Each step writes into the run directory and is
skipped when already finished, so rerunning the same command resumes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .augment import augment
from .backward import train_backward
from .config import RunConfig, dump_yaml
from .curate import curate
from .models import check_model, load_tokenizer
from .report import build_report
from .seed import load_seed
from .segment import segment
from .shards import read_jsonl, stage_rejects, write_jsonl, write_json
from .stats import print_summary, run_stats
from .train import train_forward



def run(config: RunConfig, quiet: bool = False) -> dict:
    """Run (or resume) the loop into ``config.out``; returns the run statistics."""
    out = Path(config.out)
    base_model = check_model(config.model)  # a wrong model or seed fails now, not hours later
    seed, seed_rejects = load_seed(config.seed, config.max_seed_examples)
    out.mkdir(parents=True, exist_ok=True)
    dump_yaml(config, out / "config.yaml")
    write_jsonl(out / "seed" / "part-00000.jsonl", seed)
    write_jsonl(out / "seed" / "_rejects" / "part-00000.jsonl", seed_rejects)
    models = out / "models"

    executor = config  # a RunConfig is an ExecutorConfig: its executor fields apply to the corpus stages
    segment(config.corpus, out / "segments", config.segment, executor=executor)
    train_backward(seed, base_model, models / "backward", config.backward)
    augment(out / "segments", str(models / "backward"), out / "candidates", config.augment,
            system_prompt=config.backward.system_prompt, executor=executor)

    train_set = out / "iter0" / "train.jsonl"  # M_0's training set: the seed alone
    train_forward(seed, [], base_model, models / "m0", config.forward, dataset_path=train_set)
    for i in range(1, config.iterations + 1):
        iteration_dir = out / f"iter{i}"
        curated = curate(out / "candidates", str(models / f"m{i - 1}"), iteration_dir, config.curate, iteration=i,
                         executor=executor)
        train_set = iteration_dir / "train.jsonl"
        train_forward(seed, curated, base_model, models / f"m{i}", config.forward, dataset_path=train_set)

    final = out / "final"
    final.mkdir(exist_ok=True)
    shutil.copyfile(train_set, final / "train.jsonl")
    stats = run_stats(out, config.iterations, config.curate.k, load_tokenizer(base_model))
    stats["rejects"] = _collect_rejects(out, config.iterations)
    stats["final_dataset"] = str(final / "train.jsonl")
    stats["final_model"] = str(models / f"m{config.iterations}")
    stats["final_dataset_count"] = sum(1 for _ in read_jsonl(final / "train.jsonl"))
    write_json(out / "stats.json", stats)
    stats["report"] = str(build_report(out, stats)["html"])
    if not quiet:
        print_summary(stats, out, config.curate.k)
    return stats


def _collect_rejects(out: Path, iterations: int) -> int:
    """Every stage's rejects in one rejects.jsonl (rebuilt each run, so resuming never duplicates)."""
    dirs = [out / "seed", out / "segments", out / "candidates"] + [out / f"iter{i}" / "ratings" for i in range(1, iterations + 1)]
    rejects = [r for d in dirs for r in stage_rejects(d)]
    write_jsonl(out / "rejects.jsonl", rejects)
    return len(rejects)


