"""make bench-quality: how well each way of scoring tells good pairs from bad, on human-written data.

Probes (humpback.probe) are built from ../shared/data: the Self-Instruct seed tasks (the part
defaults are chosen on) and the AlpacaEval prompts with their reference answers (kept aside: the
number reported for the chosen default). Each scoring mode (the rubric's logprob read, and the
likelihood signals yes and pmi) scores every probe pair with the embedded model, untrained and,
with --m0, as M_0 trained on Self-Instruct pairs outside the probe. Near instructions
(probe.near_instruction) come from every instruction of the same source.

A second test is real candidates, (instruction, web segment) pairs a backward model wrote, labelled
good or bad by hand: the demo's 42 (bench/results/demo_candidates_labelled.jsonl, labelled with the
values in view) and 48 from the shared web pages (bench/web_candidates.py; labelled blind, page
text found again by segmenting the pages). Each mode's value of every candidate (for features:
under the detectors fitted on the Self-Instruct probe) is ranked against the labels: the AUC says
how well the probe's verdict carries over to the defects real candidates have, and the seconds
per candidate are what rating a corpus of them costs. Writes bench/results/quality.{json,md}: AUC
overall and per negative kind with bootstrap intervals, and seconds per pair.
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
    sources = {"self-instruct (choose on)": seed[: args.pairs]}
    pools = {"self-instruct (choose on)": [p["instruction"] for p in seed]}
    alpaca = json.loads((SHARED / "alpaca_eval" / "text_davinci_003_outputs.json").read_text())
    alpaca = [
        {"id": f"a{i}", "instruction": r["instruction"], "output": r["output"].strip()}
        for i, r in enumerate(alpaca)
        if r["output"].strip() and len(r["output"]) < 2500
    ]
    sources["alpaca-eval references (held out)"] = random.Random(1).sample(alpaca, args.pairs)
    pools["alpaca-eval references (held out)"] = [p["instruction"] for p in alpaca]
    real_sets = {
        "demo candidates": [
            json.loads(line) for line in (RESULTS / "demo_candidates_labelled.jsonl").open(encoding="utf-8")
        ],
        "shared web candidates": web_candidates(),
    }

    judges = {"untrained": resolve_model("smollm2-135m")}
    if args.m0:
        from humpback.train import train_forward

        m0 = ROOT / "bench" / ".work" / "m0"
        train_forward(seed[args.pairs :], [], judges["untrained"], m0, ForwardConfig())
        judges["M_0"] = str(m0)

    cfg = CurateConfig(mode="logprob", dtype="bfloat16", batch_size=8)
    results, real = [], []
    for judge_name, model in judges.items():
        engine = TransformersEngine(model, dtype="bfloat16", batch_size=8)
        for source, pairs in sources.items():
            for mode in args.modes.split(","):
                start = time.time()
                probe = probe_judge(pairs, model, cfg, mode=mode, engine=engine, instruction_pool=pools[source])
                report = dict(probe.report)
                report.update(judge=judge_name, source=source, wall_seconds=round(time.time() - start, 1))
                results.append(report)
                print(
                    f"{judge_name:9s} {source:34s} {mode:8s} AUC {report['auc']} {report['auc_interval']} "
                    f"({report['seconds_per_pair']} s/pair)",
                    flush=True,
                )
                if source.startswith("self-instruct"):
                    for name, labelled in real_sets.items():
                        real.append(
                            {
                                "judge": judge_name,
                                "set": name,
                                "mode": mode,
                                **real_candidates(labelled, engine, mode, cfg, probe),
                            }
                        )
                        print(
                            f"{judge_name:9s} {name:34s} {mode:8s} AUC {real[-1]['auc']} "
                            f"{real[-1]['auc_interval']} ({real[-1]['seconds_per_candidate']} s/candidate)",
                            flush=True,
                        )
        engine.close()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "quality.json").write_text(
        json.dumps({"pairs_per_source": args.pairs, "results": results, "real_candidates": real}, indent=1)
    )
    lines = [
        "# Judge probe: AUC per scoring mode (embedded model, this machine)",
        "",
        f"{args.pairs} human-written pairs per source, each with up to six negatives; 0.5 is chance.",
        "",
        "| judge | source | mode | AUC (95% interval) | " + " | ".join(NEGATIVE_KINDS) + " | s/pair |",
        "|---|---|---|---|" + "---|" * len(NEGATIVE_KINDS) + "---|",
    ]
    for r in results:
        low, high = r["auc_interval"]
        kinds = " | ".join(str(r["by_kind"][k]["auc"]) for k in NEGATIVE_KINDS)
        lines.append(
            f"| {r['judge']} | {r['source']} | {r['mode']} | {r['auc']} ({low}-{high}) | {kinds} | "
            f"{r['seconds_per_pair']} |"
        )
    sizes = "; ".join(f"{name}: {len(rows)}, {sum(r['good'] for r in rows)} good" for name, rows in real_sets.items())
    lines += [
        "",
        f"Real candidates labelled by hand ({sizes}); AUC of each mode's value against the labels (features: "
        "detectors fitted on the Self-Instruct probe; per detector in the last column); seconds per candidate of "
        "the rating alone.",
        "",
        "| judge | set | mode | AUC (95% interval) | s/candidate | per detector |",
        "|---|---|---|---|---|---|",
    ]
    for r in real:
        low, high = r["auc_interval"]
        detectors = ", ".join(f"{k} {v}" for k, v in r.get("by_detector", {}).items()) or "-"
        lines.append(
            f"| {r['judge']} | {r['set']} | {r['mode']} | {r['auc']} ({low}-{high}) | "
            f"{r['seconds_per_candidate']} | {detectors} |"
        )
    (RESULTS / "quality.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def web_candidates() -> list[dict]:
    """The labelled shared-web candidates with their segments' text, found by sha1 in a fresh
    segmentation of the pages (a label whose segment the segmenter no longer makes is left out, said)."""
    import tempfile

    from web_candidates import web_segments

    labels = [json.loads(line) for line in (RESULTS / "web_candidates_labels.jsonl").open(encoding="utf-8")]
    with tempfile.TemporaryDirectory() as work:
        text = {s["sha1"]: s["text"] for s in web_segments(Path(work))}
    missing = [r["source"] for r in labels if r["sha1"] not in text]
    if missing:
        print(f"{len(missing)} labelled web candidates left out: the segmenter no longer makes them ({missing[:3]})")
    return [{**r, "output": text[r["sha1"]]} for r in labels if r["sha1"] in text]


def real_candidates(labelled: list[dict], engine, mode: str, cfg, probe) -> dict:
    """AUC of the mode's value of each labelled candidate against its hand label (``probe``: the
    judge's probe.JudgeProbe, whose detectors value the features)."""
    from humpback.probe import auc, bootstrap_auc
    from humpback.scoring import MODES, rating_mode

    labels = [r["good"] for r in labelled]
    out = {"candidates": len(labelled), "good": sum(labels)}

    def ranked(values):
        good = [v for v, y in zip(values, labels) if y and v is not None]
        bad = [v for v, y in zip(values, labels) if not y and v is not None]
        value = auc(good, bad)
        return None if value is None else round(value, 4), bootstrap_auc(good, bad)

    start = time.time()  # the rating alone: what curating a corpus of such candidates costs per candidate
    if mode == "features":
        features = [
            None if v is None else v["features"] for v in MODES[mode].read(labelled, engine, cfg.system_prompt)
        ]
        values = [None if f is None else probe.detectors.value(f) for f in features]
    else:
        values = rating_mode(mode).probe_values(labelled, engine, cfg)[0]
    out["seconds_per_candidate"] = round((time.time() - start) / len(labelled), 4)
    if mode == "features":
        out["by_detector"] = {
            kind: ranked([None if f is None else detector.value(f) for f in features])[0]
            for kind, detector in probe.detectors.by_kind.items()
        }
    out["auc"], out["auc_interval"] = ranked(values)
    return out


if __name__ == "__main__":
    main()
