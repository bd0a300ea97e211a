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
4. ``python bench/yield.py fits``: with every sample of a segment labelled, which fit signal picks
   the good one (pmi over more or fewer of the segment's tokens, the backward model's own
   likelihood), chosen on even pages and reported on odd ones, in bench/results/yield_fits.{json,md}.
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
from humpback.config import NUM_INSTRUCTIONS as NUM  # noqa: E402 - the default n, whose arm the judge is measured on


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
        rows.append(
            {"id": c["id"], "sha1": sha[c["id"]], "source": c["source"], "options": options, "output": c["output"]}
        )
    (WORK / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    # what the repository keeps: the model-written instructions and their fit, no page text
    (RESULTS / "yield_samples.jsonl").write_text(
        "".join(json.dumps({k: v for k, v in r.items() if k != "output"}) + "\n" for r in rows)
    )
    (RESULTS / "yield_sampling.json").write_text(
        json.dumps({"segments": len(rows), "samples": SAMPLES, "seconds": round(seconds, 1)}, indent=1) + "\n"
    )
    sheet = {}
    for r in rows:
        for arm in ARMS:
            choice = arm_choice(r, arm)
            if choice is not None:
                sheet.setdefault(
                    sha1(r["sha1"] + choice), {"sha1": r["sha1"], "instruction": choice, "output": r["output"]}
                )
    items = list(sheet.values())
    random.Random(7).shuffle(items)
    (WORK / "sheet.jsonl").write_text(
        "".join(json.dumps({"id": f"y{i:03d}", **item}) + "\n" for i, item in enumerate(items))
    )
    print(
        f"{len(rows)} segments, {SAMPLES} samples each, in {seconds:.0f} s; {len(items)} distinct candidates to "
        f"label in {WORK / 'sheet.jsonl'}"
    )


def arm_choice(row: dict, arm: str) -> str | None:
    """The instruction an arm keeps for a segment: of the samples drawn among its first n, the best
    fitting (n = 1: the first sample; None when that sample was unusable, as augment would reject it)."""
    first = [o for o in row["options"] if o["sample"] < ARMS[arm]]
    if not first:
        return None
    return max(first, key=lambda o: -math.inf if o["fit"] is None else o["fit"])["instruction"]


def every_draw(rows: list[dict], scores: dict) -> dict:
    """Where every sample of a segment is labelled: the good share of one draw on average (the
    n = 1 arm without the luck of the first draw), of the best choice any signal could make (the
    ceiling of best-of-n), and how well the fit ranks a segment's own samples (AUC of the fit
    minus the segment's mean fit, good against not)."""
    from humpback.labels import wilson
    from humpback.probe import auc

    full = []
    for r in rows:
        usable = [o for o in r["options"] if o["instruction"] and o["fit"] is not None]
        if usable and all((r["sha1"], o["instruction"]) in scores for o in usable):
            full.append([(o["fit"], scores[(r["sha1"], o["instruction"])] >= 4) for o in usable])
    if not full:
        return {"segments": 0}
    mean_share = sum(sum(g for _, g in draws) / len(draws) for draws in full) / len(full)
    ceiling = sum(any(g for _, g in draws) for draws in full)
    good, bad = [], []
    for draws in full:
        centre = sum(f for f, _ in draws) / len(draws)
        for fit, is_good in draws:
            (good if is_good else bad).append(fit - centre)
    within = auc(good, bad)
    return {
        "segments": len(full),
        "samples": sum(len(d) for d in full),
        "good_samples": sum(g for d in full for _, g in d),
        "one_draw_good_share": round(mean_share, 4),
        "ceiling_good_share": round(ceiling / len(full), 4),
        "ceiling_interval": wilson(ceiling, len(full)),
        "segments_never_good": len(full) - ceiling,
        "fit_auc_within_segment": None if within is None else round(within, 4),
    }


def report() -> None:
    from web_candidates import web_segments

    from humpback.config import CurateConfig
    from humpback.curate import select
    from humpback.engines.transformers import TransformersEngine
    from humpback.labels import calibrate_on_labels, estimate_good_share, wilson
    from humpback.probe import auc, bootstrap_auc, probe_judge
    from humpback.seed import load_seed
    from humpback.signals import features_signal

    backward, m0, held_out = demo_models()
    text = {s["sha1"]: s["text"] for s in web_segments(WORK / "pages")}
    rows = [json.loads(line) for line in (RESULTS / "yield_samples.jsonl").open()]
    rows = [{**r, "output": text[r["sha1"]]} for r in rows if r["sha1"] in text]
    scores = {}
    for line in LABELS.open():
        label = json.loads(line)
        scores[(label["sha1"], label["instruction"])] = label["score"]
    result = {"segments": len(rows), "labelled_candidates": len(scores), "arms": {}}
    for arm in ARMS:
        chosen = [(r, arm_choice(r, arm)) for r in rows]
        labelled = [scores[(r["sha1"], c)] for r, c in chosen if c is not None and (r["sha1"], c) in scores]
        good = sum(v >= 4 for v in labelled)
        result["arms"][arm] = {
            "candidates": len(labelled),
            "good": good,
            "good_share": round(good / len(labelled), 4) if labelled else None,
            "good_share_interval": wilson(good, len(labelled)),
            "score_at_least_3": sum(v >= 3 for v in labelled),
            "mean_score": round(sum(labelled) / len(labelled), 3) if labelled else None,
        }

    result["draws"] = every_draw(rows, scores)

    # the judge as `humpback run` uses it: M_0's features, combined by detectors fitted on the run's probe
    cfg = CurateConfig(mode="features", select="calibrated", system_prompt="")
    seed, _ = load_seed("demo")
    probe = probe_judge(held_out, m0, cfg, instruction_pool=[p["instruction"] for p in seed])
    default_arm = f"best-of-{NUM}" if NUM > 1 else "n=1"
    candidates = [
        {"id": r["sha1"], "instruction": arm_choice(r, default_arm), "output": r["output"]}
        for r in rows
        if arm_choice(r, default_arm) is not None and (r["sha1"], arm_choice(r, default_arm)) in scores
    ]
    truth = {c["id"]: scores[(c["id"], c["instruction"])] >= 4 for c in candidates}
    engine = TransformersEngine(m0, dtype="auto", batch_size=8)
    features = features_signal(candidates, engine, cfg.system_prompt)
    engine.close()
    ratings = [
        {"id": c["id"], "signal": f["signal"], "features": f["features"]}
        for c, f in zip(candidates, features)
        if f is not None
    ]
    for r in ratings:
        r["combined"] = probe.detectors.value(r["features"])
    # the values behind every rule below, to try a rule without re-reading (bench/.work only)
    (WORK / "ratings.json").write_text(
        json.dumps(
            {
                "ratings": [
                    {"id": r["id"], "combined": r["combined"], "features": r["features"], "good": truth[r["id"]]}
                    for r in ratings
                ],
                "probe": probe.report["values"],
            }
        )
    )

    def ranked(key):
        good = [r[key] for r in ratings if truth[r["id"]]]
        bad = [r[key] for r in ratings if not truth[r["id"]]]
        return {
            "auc": None if auc(good, bad) is None else round(auc(good, bad), 4),
            "auc_interval": bootstrap_auc(good, bad),
        }

    result["judge"] = {
        "arm": default_arm,
        "candidates": len(ratings),
        "good": sum(truth[r["id"]] for r in ratings),
        "features (M_0, run's probe detectors)": ranked("combined"),
        "pmi (M_0)": ranked("signal"),
        "probe_auc": probe.report["auc"],
    }

    def measured(chosen: list[dict], how: str) -> dict:
        hits = sum(truth[r["id"]] for r in chosen)
        total_good = sum(truth[r["id"]] for r in ratings)
        return {
            "rule": how,
            "selected": len(chosen),
            "precision": round(hits / len(chosen), 4) if chosen else None,
            "precision_interval": wilson(hits, len(chosen)),
            "recall": round(hits / max(1, total_good), 4),
            "selected_by": chosen[0]["selected_by"] if chosen else None,
        }

    rules = [
        measured(
            select(
                ratings,
                5,
                "calibrated",
                probe=probe,
                estimate=False,
                target=0.8,
                good_share=0.2,
            ),
            "calibrated, good_share 0.2 (fixed)",
        ),
        measured(
            select(ratings, 5, "calibrated", probe=probe, estimate=True, target=0.8),
            "calibrated, good share estimated from the values",
        ),
        measured(select(ratings, 5, "top_fraction", fraction=0.25), "top 25% by value"),
    ]
    # labels: the threshold set on one half's labels, measured on the other half (two folds, each way)
    order = sorted(ratings, key=lambda r: r["id"])
    halves = [order[0::2], order[1::2]]
    picked, how = [], []
    for fit_on, apply_to in (halves, halves[::-1]):
        found = calibrate_on_labels([r["combined"] for r in fit_on], [truth[r["id"]] for r in fit_on], 0.8)
        how.append(found)
        if found["threshold"] is not None:
            picked += [
                {**r, "selected_by": "labels of the other half"}
                for r in apply_to
                if r["combined"] >= found["threshold"]
            ]
    rules.append(measured(picked, "calibrated on labels (threshold from the other half's labels)"))
    values = [r["combined"] for r in ratings]
    result["good_share_estimate"] = estimate_good_share(
        values, probe.report["values"]["positive"], probe.report["values"]["negative"]
    )
    result["selection"] = rules
    (RESULTS / "yield.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        "# Yield on real pages: good candidates per arm, labelled blind (bench/yield.py)",
        "",
        f"{result['segments']} segments drawn from the 70 shared web pages; 4 instructions sampled per segment by "
        f"the demo's backward model; {result['labelled_candidates']} distinct candidates labelled blind "
        "(bench/LABELLING.md: 1-5 by the rubric, good = 4 or 5).",
        "",
        "| arm | candidates | good | good share (95% interval) | score >= 3 | mean score |",
        "|---|---|---|---|---|---|",
    ]
    for arm, a in result["arms"].items():
        lines.append(
            f"| {arm} | {a['candidates']} | {a['good']} | {a['good_share']} {a['good_share_interval']} | "
            f"{a['score_at_least_3']} | {a['mean_score']} |"
        )
    d = result["draws"]
    if d["segments"]:
        lines += [
            "",
            f"Every sample labelled on {d['segments']} segments ({d['samples']} samples, {d['good_samples']} good): "
            f"one draw is good {d['one_draw_good_share']} of the time on average (the n=1 row is the first draw); "
            f"the best choice among the samples would be good on {d['ceiling_good_share']} {d['ceiling_interval']} "
            f"of the segments ({d['segments_never_good']} segments have no good sample); the fit ranks a segment's "
            f"own samples at AUC {d['fit_auc_within_segment']}.",
        ]
    j = result["judge"]
    lines += [
        "",
        f"Judge on the {j['arm']} candidates ({j['candidates']}, {j['good']} good): features AUC "
        f"{j['features (M_0, run' + chr(39) + 's probe detectors)']['auc']} "
        f"{j['features (M_0, run' + chr(39) + 's probe detectors)']['auc_interval']}, pmi AUC {j['pmi (M_0)']['auc']} "
        f"{j['pmi (M_0)']['auc_interval']}; the probe's own AUC {j['probe_auc']}. Good share estimated from the "
        f"values: {result['good_share_estimate']}.",
        "",
        "| selection rule | selected | precision (95% interval) | recall |",
        "|---|---|---|---|",
    ]
    for r in rules:
        lines.append(f"| {r['rule']} | {r['selected']} | {r['precision']} {r['precision_interval']} | {r['recall']} |")
    (RESULTS / "yield.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


FIT_TOKENS = (16, 32, 64, 128, 256, 512)


def fit_reads(rows: list[dict], text: dict[str, str], m0: str, backward: str) -> dict:
    """Per sample: M_0's token log-probabilities of the segment's first 512 tokens after the
    instruction (and once per segment after none), and the backward model's of the instruction
    after the segment. Cached in bench/.work/yield/fit_reads.json (about 13 minutes here)."""
    cache = WORK / "fit_reads.json"
    if cache.exists():
        return json.loads(cache.read_text())
    from humpback.backward import backward_prompt
    from humpback.config import BackwardConfig
    from humpback.engines.transformers import TransformersEngine
    from humpback.models import end_of_turn_ids
    from humpback.signals import answer_span

    items = [(r["sha1"], [o["instruction"] for o in r["options"] if o["instruction"]]) for r in rows]
    out: dict = {}
    for name, path in (("m0", m0), ("backward", backward)):
        engine = TransformersEngine(path, dtype="auto", batch_size=8)
        tokenizer, stops = engine.tokenizer, set(end_of_turn_ids(engine.tokenizer))
        reads, keys = [], []
        for sha, instructions in items:
            if name == "m0":
                for instruction in ["", *instructions]:
                    full, start, _ = answer_span(
                        tokenizer, [{"role": "user", "content": instruction}], text[sha], stops
                    )
                    reads.append((full[: start + max(FIT_TOKENS)], start))
                    keys.append(f"{sha}\t{instruction}")
            else:
                prompt = backward_prompt(text[sha], BackwardConfig().system_prompt)
                for instruction in instructions:
                    full, start, _ = answer_span(tokenizer, prompt, instruction, stops)
                    reads.append((full, start))
                    keys.append(f"{sha}\t{instruction}")
        out[name] = dict(zip(keys, engine.token_logprobs(reads)))
        engine.close()
    cache.write_text(json.dumps(out))
    return out


def fits() -> None:
    """Which fit signal picks a segment's good sample: pmi over the segment's first k tokens under
    M_0 (k = FIT_TOKENS; 64 is the default), the backward model's own likelihood of the
    instruction, and pmi with that added; on every sample of the fully labelled segments, chosen
    on even pages and reported on odd ones. Writes bench/results/yield_fits.{json,md}."""
    from web_candidates import web_segments

    from humpback.probe import auc

    backward, m0, _ = demo_models()
    text = {s["sha1"]: s["text"] for s in web_segments(WORK / "pages")}
    rows = [json.loads(line) for line in (RESULTS / "yield_samples.jsonl").open()]
    rows = [r for r in rows if r["sha1"] in text]
    scores = {(x["sha1"], x["instruction"]): x["score"] for x in map(json.loads, LABELS.open())}
    reads = fit_reads(rows, text, m0, backward)

    def pmi(sha: str, instruction: str, k: int) -> float:
        with_it, without = reads["m0"][f"{sha}\t{instruction}"], reads["m0"][f"{sha}\t"]
        n = min(len(with_it), len(without), k)
        return sum(with_it[:n]) / n - sum(without[:n]) / n

    def own(sha: str, instruction: str) -> float:
        values = reads["backward"][f"{sha}\t{instruction}"]
        return sum(values) / len(values)

    signals = {
        f"pmi, first {k} tokens" + (" (default)" if k == 64 else ""): (lambda s, i, k=k: pmi(s, i, k))
        for k in FIT_TOKENS
    }
    signals["backward model's mean log-probability of the instruction"] = own
    for weight in (0.025, 0.05, 0.1, 0.2):
        signals[f"pmi (64) + {weight} x the backward model's"] = lambda s, i, w=weight: pmi(s, i, 64) + w * own(s, i)
    pages = sorted({r["source"].split("#")[0] for r in rows})
    even = {p for k, p in enumerate(pages) if k % 2 == 0}
    segments = []
    for r in rows:
        usable = [o for o in r["options"] if o["instruction"] and o["fit"] is not None]
        if usable and all((r["sha1"], o["instruction"]) in scores for o in usable):
            segments.append((r, usable, "even" if r["source"].split("#")[0] in even else "odd"))

    def measure(signal, part: str) -> dict:
        chosen_good = count = 0
        good, bad = [], []
        for r, usable, side in segments:
            if part != "all" and side != part:
                continue
            values = [signal(r["sha1"], o["instruction"]) for o in usable]
            best = max(range(len(usable)), key=lambda j: values[j])
            chosen_good += scores[(r["sha1"], usable[best]["instruction"])] >= 4
            count += 1
            centre = sum(values) / len(values)
            for o, v in zip(usable, values):
                (good if scores[(r["sha1"], o["instruction"])] >= 4 else bad).append(v - centre)
        within = auc(good, bad)
        return {
            "segments": count,
            "best_good": chosen_good,
            "within_auc": None if within is None else round(within, 4),
        }

    result = {name: {part: measure(f, part) for part in ("even", "odd", "all")} for name, f in signals.items()}
    chosen = max(result, key=lambda name: (result[name]["even"]["best_good"], result[name]["even"]["within_auc"]))
    (RESULTS / "yield_fits.json").write_text(
        json.dumps({"chosen_on_even_pages": chosen, "signals": result}, indent=1) + "\n"
    )
    lines = [
        "# Which fit picks the good sample (bench/yield.py fits)",
        "",
        f"{len(segments)} segments with all 4 samples labelled blind; a signal picks each segment's highest-valued "
        "sample. Good: the picked sample is labelled 4 or 5. Within-segment AUC: the signal minus its segment's "
        "mean, good samples against the others. Chosen on the even pages, reported on the odd ones.",
        "",
        "| fit signal | good picks, even pages | good picks, odd pages (held out) | within AUC, odd "
        "| good picks, all | within AUC, all |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in result.items():
        lines.append(
            f"| {name} | {r['even']['best_good']}/{r['even']['segments']} "
            f"| {r['odd']['best_good']}/{r['odd']['segments']} | {r['odd']['within_auc']} "
            f"| {r['all']['best_good']}/{r['all']['segments']} | {r['all']['within_auc']} |"
        )
    default = next(name for name in result if "(default)" in name)
    lines += [
        "",
        f"Best on the even pages: {chosen}; on the held-out odd pages it picks {result[chosen]['odd']['best_good']}/"
        f"{result[chosen]['odd']['segments']} good, the default {result[default]['odd']['best_good']}/"
        f"{result[default]['odd']['segments']}.",
    ]
    (RESULTS / "yield_fits.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def cost(count: int) -> None:
    """Seconds per segment of augmentation at n = 1 and at n = 4 (fit reads included), the same
    segments and models, one process, this machine."""
    from web_candidates import web_segments

    from humpback.augment import augment
    from humpback.config import AugmentConfig

    backward, m0, _ = demo_models()
    segments = random.Random(5).sample(web_segments(WORK / "pages"), count)
    segments = [{k: v for k, v in s.items() if k != "sha1"} for s in segments]
    seconds = {}
    for n in (1, SAMPLES):
        out = WORK / f"cost-n{n}-{time.strftime('%H%M%S')}"
        start = time.time()
        augment(segments, backward, out, AugmentConfig(num_instructions=n, fit_model=m0))
        seconds[n] = round(time.time() - start, 1)
    result = {
        "segments": count,
        "seconds": seconds,
        "per_segment": {n: round(t / count, 2) for n, t in seconds.items()},
        "ratio": round(seconds[SAMPLES] / seconds[1], 2),
    }
    (RESULTS / "yield_cost.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["sample", "report", "cost", "fits"])
    parser.add_argument("--segments", type=int, default=80)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    if args.step == "sample":
        sample(args.segments)
    elif args.step == "cost":
        cost(min(args.segments, 24))
    elif args.step == "fits":
        fits()
    else:
        report()


if __name__ == "__main__":
    main()
