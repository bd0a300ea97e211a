"""Decontamination speed: a million training pairs against the 805 AlpacaEval prompts.

Pairs are made of real text: instructions and answers drawn (seeded) from the Self-Instruct seed
tasks and the segments humpback keeps from the shared web pages, shuffled into a million
combinations; one pair in a thousand has an AlpacaEval prompt planted in its answer, and the run
must find exactly those. Writes bench/results/decontaminate.md.
"""

from __future__ import annotations

import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
SHARED = ROOT.parent / "shared" / "data"


def main(n: int = 1_000_000) -> None:
    from humpback import SegmentConfig, segment
    from humpback.decontaminate import BenchmarkIndex, decontaminate, load_benchmarks
    from humpback.seed import load_seed
    from humpback.shards import read_stage

    if not SHARED.exists():
        sys.exit(f"{SHARED} is absent: the benchmark reads the shared data")
    seed, _ = load_seed(str(SHARED / "seed" / "self_instruct_seed_tasks.jsonl"))
    with tempfile.TemporaryDirectory() as tmp:
        segment(str(SHARED / "web"), Path(tmp) / "s", SegmentConfig())
        texts = [s["text"] for s in read_stage(Path(tmp) / "s")]
    alpaca = SHARED / "alpaca_eval" / "text_davinci_003_outputs.json"
    prompts = [r["instruction"] for r in json.loads(alpaca.read_text())]
    rng = random.Random(0)
    instructions = [p["instruction"] for p in seed]
    pairs, planted = [], 0
    for i in range(n):
        output = rng.choice(texts)
        if i % 1000 == 999:
            output = f"{output}\n\n{rng.choice([p for p in prompts if len(p.split()) >= 13])}"
            planted += 1
        pairs.append({"id": str(i), "instruction": rng.choice(instructions), "output": output})
    start = time.perf_counter()
    index = BenchmarkIndex(load_benchmarks([alpaca]))
    built = time.perf_counter() - start
    logging_off()
    start = time.perf_counter()
    kept, rejects, counts = decontaminate(pairs, index)
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    words = sum(len(p["output"].split()) + len(p["instruction"].split()) for p in pairs)
    line = (
        f"| {n:,} | {words / n:.0f} | {len(index.items)} | {built:.2f} | {seconds:.1f} | {n / seconds:,.0f} | "
        f"{len(rejects)} (planted {planted}) | {rss:.0f} |"
    )
    print(line)
    (ROOT / "bench" / "results" / "decontaminate.md").write_text(
        "# Decontamination speed (this machine, one process)\n\n"
        "| pairs | words per pair | benchmark prompts | index build (s) | scan (s) | pairs/s | removed "
        "| peak RSS (MB) |\n"
        "|---|---|---|---|---|---|---|---|\n" + line + "\n"
    )


def logging_off() -> None:
    import logging

    logging.getLogger("humpback").setLevel(logging.ERROR)  # a warning per reject is for real runs


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
