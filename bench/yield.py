"""Yield on real pages: how many candidates are worth keeping, from one instruction per segment
(the paper's n = 1) and from best-of-n, labelled blind. ``make bench-yield``.

Two steps, with blind labels between them (protocol: bench/LABELLING.md):

1. ``python bench/yield.py sample``: trains the demo's backward model and M_0 (the demo's seed
   and config, its probe pairs held out), segments the 70 shared web pages, draws --segments
   segments (seeded; the 48 of the earlier labelled set left out) and samples 4 instructions per
   segment from the backward model, each valued by its fit (pmi of the segment's start under
   M_0). The arms are read off the same samples: n = 1 is the first sample, best-of-2 the better
   fitting of the first two, best-of-4 the best of all four. Writes bench/.work/yield/samples.jsonl
   and the labelling sheet bench/.work/yield/sheet.jsonl: every distinct (instruction, segment)
   an arm chose, shuffled, under an opaque id, with no arm and no value.
2. Label the sheet (``humpback label --candidates bench/.work/yield/sheet.jsonl --out ...``, or by
   file); the labels are kept, without page text, in bench/results/yield_labels.jsonl (segment
   sha1, instruction, label).
3. ``python bench/yield.py report``: the good share per arm (Wilson 95% interval), the judge's AUC
   on the labelled candidates (the run's default features value under M_0, and pmi), and the
   precision and recall of the selected set under each selection rule, in
   bench/results/yield.{json,md}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))
WORK = ROOT / "bench" / ".work" / "yield"
RESULTS = ROOT / "bench" / "results"
LABELS = RESULTS / "yield_labels.jsonl"
ARMS = {"n=1": 1, "best-of-2": 2, "best-of-4": 4}
SAMPLES = 4


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def demo_models() -> tuple[str, str, list[dict]]:
    """The demo's backward model and M_0, trained as `make demo` trains them; and its probe pairs."""
    from humpback.backward import train_backward
    from humpback.config import RunConfig, load_yaml
    from humpback.models import resolve_model
    from humpback.probe import split_probe
    from humpback.seed import load_seed
    from humpback.train import train_forward

    cfg = RunConfig.model_validate(load_yaml(ROOT / "src" / "humpback" / "demo" / "demo.yaml"))
    base = resolve_model(cfg.model)
    seed, _ = load_seed(cfg.seed)
    seed, held_out = split_probe(seed, cfg.probe_share, cfg.probe_min_pairs, cfg.probe_max_pairs)
    train_backward(seed, base, WORK / "backward", cfg.backward)
    train_forward(seed, [], base, WORK / "m0", cfg.forward)
    return str(WORK / "backward"), str(WORK / "m0"), held_out


def sample(count: int) -> None:
    from web_candidates import web_segments

    from humpback.augment import augment
    from humpback.config import AugmentConfig
    from humpback.shards import read_stage

    backward, m0, _ = demo_models()
    earlier = {json.loads(line)["sha1"] for line in (RESULTS / "web_candidates_labels.jsonl").open()}
    segments = [s for s in web_segments(WORK / "pages") if s["sha1"] not in earlier]
    chosen = random.Random(24).sample(segments, min(count, len(segments)))
    start = time.time()
    out = WORK / f"candidates-{time.strftime('%Y%m%d-%H%M%S')}"
    cfg = AugmentConfig(num_instructions=SAMPLES, fit_model=m0)
    augment([{k: v for k, v in s.items() if k != "sha1"} for s in chosen], backward, out, cfg)
    seconds = time.time() - start
    sha = {s["id"]: s["sha1"] for s in chosen}
    rows = []
    for c in read_stage(out):
        options = [{"instruction": c["instruction"], "fit": c["fit"], "sample": c["sample"]}, *c["alternatives"]]
        rows.append({"id": c["id"], "sha1": sha[c["id"]], "source": c["source"], "options": options,
                     "output": c["output"]})
    (WORK / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    sheet = {}
    for r in rows:
        for arm in ARMS:
            choice = arm_choice(r, arm)
            if choice is not None:
                sheet.setdefault(sha1(r["sha1"] + choice), {"sha1": r["sha1"], "instruction": choice,
                                                            "output": r["output"]})
    items = list(sheet.values())
    random.Random(7).shuffle(items)
    (WORK / "sheet.jsonl").write_text("".join(json.dumps({"id": f"y{i:03d}", **item}) + "\n"
                                              for i, item in enumerate(items)))
    print(f"{len(rows)} segments, {SAMPLES} samples each, in {seconds:.0f} s; {len(items)} distinct candidates to "
          f"label in {WORK / 'sheet.jsonl'}")


def arm_choice(row: dict, arm: str) -> str | None:
    """The instruction an arm keeps for a segment: of the samples drawn among its first n, the best
    fitting (n = 1: the first sample; None when that sample was unusable, as augment would reject it)."""
    first = [o for o in row["options"] if o["sample"] < ARMS[arm]]
    if not first:
        return None
    return max(first, key=lambda o: -math.inf if o["fit"] is None else o["fit"])["instruction"]


def wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    if not n:
        return [0.0, 0.0]
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(max(0.0, centre - half), 3), round(min(1.0, centre + half), 3)]


def report() -> None:
    raise SystemExit("report: see bench/yield.py (written once labels exist)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["sample", "report"])
    parser.add_argument("--segments", type=int, default=80)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    if args.step == "sample":
        sample(args.segments)
    else:
        report()


if __name__ == "__main__":
    main()
