"""make bench-quality: how well each way of scoring tells good pairs from bad, on human-written data.

Probes (humpback.probe) are built from ../shared/data: the Self-Instruct seed tasks (the part
defaults are chosen on) and the AlpacaEval prompts with their reference answers (kept aside: the
number reported for the chosen default). Each scoring mode (the rubric's logprob read, and the
likelihood signals yes and pmi) scores every probe pair with the embedded model, untrained and,
with --m0, as M_0 trained on Self-Instruct pairs outside the probe. Writes
bench/results/quality.{json,md}: AUC overall and per negative kind with bootstrap intervals, and
seconds per pair.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
SHARED = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=40, help="human-written pairs per source")
    parser.add_argument("--modes", default="logprob,yes,pmi,features")
    parser.add_argument("--m0", action="store_true", help="also score with M_0 (trained here on other seed pairs)")
    args = parser.parse_args()

    from humpback.config import CurateConfig, ForwardConfig
    from humpback.engines.transformers import TransformersEngine
    from humpback.models import resolve_model
    from humpback.probe import NEGATIVE_KINDS, probe_judge
    from humpback.seed import load_seed

    if not SHARED.exists():
        sys.exit(f"{SHARED} is absent: the quality benchmark reads the shared real data")
    seed, _ = load_seed(str(SHARED / "seed" / "self_instruct_seed_tasks.jsonl"))
    rng = random.Random(0)
    rng.shuffle(seed)
    sources = {"self-instruct (choose on)": seed[:args.pairs]}
    alpaca = json.loads((SHARED / "alpaca_eval" / "text_davinci_003_outputs.json").read_text())
    alpaca = [{"id": f"a{i}", "instruction": r["instruction"], "output": r["output"].strip()}
              for i, r in enumerate(alpaca) if r["output"].strip() and len(r["output"]) < 2500]
    sources["alpaca-eval references (held out)"] = random.Random(1).sample(alpaca, args.pairs)

    judges = {"untrained": resolve_model("smollm2-135m")}
    if args.m0:
        from humpback.train import train_forward

        m0 = ROOT / "bench" / ".work" / "m0"
        train_forward(seed[args.pairs:], [], judges["untrained"], m0, ForwardConfig())
        judges["M_0"] = str(m0)

    cfg = CurateConfig(mode="logprob", dtype="bfloat16", batch_size=8)
    results = []
    for judge_name, model in judges.items():
        engine = TransformersEngine(model, dtype="bfloat16", batch_size=8)
        for source, pairs in sources.items():
            for mode in args.modes.split(","):
                start = time.time()
                report = probe_judge(pairs, model, cfg, mode=mode, engine=engine)
                report.update(judge=judge_name, source=source, wall_seconds=round(time.time() - start, 1))
                results.append(report)
                print(f"{judge_name:9s} {source:34s} {mode:8s} AUC {report['auc']} {report['auc_interval']} "
                      f"({report['seconds_per_pair']} s/pair)", flush=True)
        engine.close()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "quality.json").write_text(json.dumps({"pairs_per_source": args.pairs, "results": results}, indent=1))
    lines = ["# Judge probe: AUC per scoring mode (embedded model, this machine)", "",
             f"{args.pairs} human-written pairs per source, each with up to five negatives; 0.5 is chance.", "",
             "| judge | source | mode | AUC (95% interval) | " + " | ".join(NEGATIVE_KINDS) + " | s/pair |",
             "|---|---|---|---|" + "---|" * len(NEGATIVE_KINDS) + "---|"]
    for r in results:
        low, high = r["auc_interval"]
        kinds = " | ".join(str(r["by_kind"][k]["auc"]) for k in NEGATIVE_KINDS)
        lines.append(f"| {r['judge']} | {r['source']} | {r['mode']} | {r['auc']} ({low}-{high}) | {kinds} | "
                     f"{r['seconds_per_pair']} |")
    (RESULTS / "quality.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
