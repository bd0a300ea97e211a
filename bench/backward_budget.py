"""The backward model's training budget for a small seed, measured: how well backward models
trained on the demo's 40 seed pairs at several epochs and learning rates recover the instructions
of pairs they never saw. ``make bench-backward``.

Every arm trains from the embedded model on the demo's training pairs (the 40 that `make demo`
trains on; its 16 probe pairs are left out, as in the demo), then writes an instruction for each
held-out output, greedily, and is scored by ROUGE-L F1 against the true instruction:
- choose on: 50 Self-Instruct seed tasks (the first 50 of a seeded sample of 100; an instance each);
- report on: 50 AlpacaEval prompts with their reference answers (likewise), looked at only
  after the budget was chosen on the first set.
The untrained model is scored the same way (the floor). Arms resume: a trained arm's scores are
kept in bench/.work/backward_budget/. Results: bench/results/backward_budget.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
SHARED = ROOT.parent / "shared" / "data"
WORK = ROOT / "bench" / ".work" / "backward_budget"
RESULTS = ROOT / "bench" / "results"
# (epochs, learning rate): the demo's 2 epochs, twice as many, and a 3x higher rate (8 epochs was cut for time)
ARMS = [(2, 1e-4), (4, 1e-4), (2, 3e-4)]
PER_SET = 50  # the first 50 of a seeded sample of 100 (the sample the first run drew)


def held_out_sets() -> dict[str, list[dict]]:
    from humpback.seed import load_seed

    self_instruct, _ = load_seed(str(SHARED / "seed" / "self_instruct_seed_tasks.jsonl"))
    alpaca, _ = load_seed(str(SHARED / "alpaca_eval" / "text_davinci_003_outputs.json"))
    return {
        "self-instruct (choose on)": random.Random(0).sample(self_instruct, PER_SET),
        "alpaca-eval (report on)": random.Random(0).sample(alpaca, PER_SET),
    }


def scores(model: str, sets: dict[str, list[dict]], system_prompt: str, max_new_tokens: int = 48) -> dict:
    """Mean ROUGE-L F1 of the model's greedy instruction for every pair of every set, and the rows."""
    from rouge_score import rouge_scorer

    from humpback.backward import backward_prompt
    from humpback.config import EngineConfig
    from humpback.engines import SamplingParams, make_engine

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    engine = make_engine(model, EngineConfig())
    try:
        out = {}
        for name, pairs in sets.items():
            written = engine.generate(
                [backward_prompt(p["output"], system_prompt) for p in pairs],
                SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens),
            )
            rouge = [scorer.score(p["instruction"], w or "")["rougeL"].fmeasure for p, w in zip(pairs, written)]
            out[name] = {
                "rouge_l": round(statistics.fmean(rouge), 4),
                "values": [round(r, 4) for r in rouge],
                "examples": [{"true": p["instruction"], "written": w} for p, w in zip(pairs[:3], written)],
            }
        return out
    finally:
        engine.close()


def paired_interval(a: list[float], b: list[float], draws: int = 2000) -> tuple[float, float]:
    """95% bootstrap interval of mean(a - b) over the pairs."""
    rng = random.Random(0)
    diffs = [x - y for x, y in zip(a, b)]
    means = sorted(statistics.fmean(rng.choices(diffs, k=len(diffs))) for _ in range(draws))
    return round(means[int(0.025 * draws)], 4), round(means[int(0.975 * draws)], 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    from humpback.backward import train_backward
    from humpback.config import RunConfig, load_yaml
    from humpback.models import resolve_model
    from humpback.probe import split_probe
    from humpback.seed import load_seed

    cfg = RunConfig.model_validate(load_yaml(ROOT / "src" / "humpback" / "demo" / "demo.yaml"))
    base = resolve_model(cfg.model)
    seed, _ = load_seed(cfg.seed)
    train, _ = split_probe(seed, cfg.probe_share, cfg.probe_min_pairs, cfg.probe_max_pairs)
    sets = held_out_sets()
    WORK.mkdir(parents=True, exist_ok=True)
    system_prompt = cfg.backward.system_prompt
    arms = {}
    for label, epochs, lr in [("untrained", 0, 0.0)] + [(f"{e} epochs, lr {lr:g}", e, lr) for e, lr in ARMS]:
        kept = WORK / f"{label.replace(' ', '_').replace(',', '')}.json"
        if kept.exists():  # scored before; on the first PER_SET pairs of each set
            arm = json.loads(kept.read_text())
            for scored in arm["sets"].values():
                scored["values"] = scored["values"][:PER_SET]
                scored["rouge_l"] = round(statistics.fmean(scored["values"]), 4)
            arms[label] = arm
            continue
        start = time.time()
        model = base
        if epochs:
            model = str(WORK / f"model-{epochs}-{lr:g}")
            bcfg = cfg.backward.model_copy(update={"num_epochs": float(epochs), "learning_rate": lr})
            train_backward(train, base, Path(model), bcfg)
        trained_s = round(time.time() - start, 1)
        arm = {
            "epochs": epochs,
            "learning_rate": lr,
            "train_seconds": trained_s,
            "sets": scores(model, sets, system_prompt),
        }
        kept.write_text(json.dumps(arm))
        arms[label] = arm
        print(label, {k: v["rouge_l"] for k, v in arm["sets"].items()}, f"trained in {trained_s} s", flush=True)
    demo = "2 epochs, lr 0.0001"
    result = {"trained_on": len(train), "per_set": PER_SET, "arms": {}}
    for label, arm in arms.items():
        row = {"train_seconds": arm["train_seconds"]}
        for name, s in arm["sets"].items():
            row[name] = {"rouge_l": s["rouge_l"]}
            if label != demo:
                row[name]["against_demo_budget"] = paired_interval(s["values"], arms[demo]["sets"][name]["values"])
        result["arms"][label] = row
    (RESULTS / "backward_budget.json").write_text(json.dumps(result, indent=1) + "\n")
    names = list(sets)
    lines = [
        "# The backward model's budget on 40 seed pairs (bench/backward_budget.py)",
        "",
        f"Trained from the embedded model on the demo's {len(train)} training pairs; ROUGE-L F1 of the greedy "
        f"instruction against the true one on {PER_SET} pairs of each set; in brackets the 95% bootstrap "
        "interval of the difference from the demo's budget (2 epochs, lr 1e-4), paired by pair.",
        "",
        "| arm | training s | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for label, row in result["arms"].items():
        cells = []
        for name in names:
            cell = f"{row[name]['rouge_l']:.4f}"
            if "against_demo_budget" in row[name]:
                lo, hi = row[name]["against_demo_budget"]
                cell += f" [{lo:+.4f}, {hi:+.4f}]"
            cells.append(cell)
        lines.append(f"| {label} | {row['train_seconds']} | " + " | ".join(cells) + " |")
    (RESULTS / "backward_budget.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
