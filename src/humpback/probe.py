"""The judge probe: can this judge tell a good pair from a bad one, before it curates?

Positives are human-written (instruction, answer) pairs that no training saw; negatives are made
from them in the ways the rubric's score 1 describes: another pair's answer (``off_topic``), the
answer starting mid-way (``starts_mid_way``), the answer cut off early (``cut_off_early``), web
boilerplate lines mixed into the answer (``boilerplate``), the instruction repeated as its own
answer (``instruction_as_answer``). The judge scores every pair one way (a rating mode of
curate.py, or a likelihood signal of signals.py); the AUC says how often a positive outscores a
negative (0.5: chance), overall and per kind, with a bootstrap interval.
"""

from __future__ import annotations

import random
import statistics
import time
from collections import Counter

from .engines import Engine, engine_for

NEGATIVE_KINDS = ("off_topic", "starts_mid_way", "cut_off_early", "boilerplate", "instruction_as_answer")
BOILERPLATE = ["Share this article on Facebook and Twitter.", "Subscribe to our newsletter for weekly updates!",
               "© 2023 All rights reserved. Privacy Policy | Terms of Use", "Click here to read more stories like this.",
               "We use cookies to improve your experience. Accept all cookies?", "Related posts: 10 tips you need to know"]
MIN_WORDS_TO_CUT = 8  # an answer shorter than this cannot be cut into something clearly partial


def probe_pairs(pairs: list[dict], seed: int = 0) -> list[dict]:
    """The probe: every pair as a positive (``label`` 1, ``kind`` "positive"), and from each the
    negatives it allows (``label`` 0, ``kind`` one of NEGATIVE_KINDS), seeded."""
    rng = random.Random(seed)
    order = list(range(len(pairs)))
    rng.shuffle(order)
    other = {order[i]: order[(i + 1) % len(order)] for i in range(len(order))}  # another pair, never itself
    probe = []
    for i, pair in enumerate(pairs):
        instruction, output = pair["instruction"], pair["output"]
        probe.append({"id": f"{pair.get('id', i)}", "kind": "positive", "label": 1, "instruction": instruction,
                      "output": output})
        words = output.split()
        negatives = {"instruction_as_answer": instruction}
        if len(pairs) > 1 and pairs[other[i]]["output"].strip() != output.strip():
            negatives["off_topic"] = pairs[other[i]]["output"]
        if len(words) >= MIN_WORDS_TO_CUT:
            cut = max(3, len(words) * 2 // 5)
            negatives["starts_mid_way"] = " ".join(words[cut:])
            negatives["cut_off_early"] = " ".join(words[:len(words) - cut])
        lines = output.splitlines() or [output]
        junk = rng.sample(BOILERPLATE, 3)
        mixed = [junk[0]] + lines[:1] + [junk[1]] + lines[1:] + [junk[2]]
        negatives["boilerplate"] = "\n".join(mixed)
        for kind in NEGATIVE_KINDS:
            if kind in negatives:
                probe.append({"id": f"{pair.get('id', i)}:{kind}", "kind": kind, "label": 0,
                              "instruction": instruction, "output": negatives[kind]})
    return probe


def auc(positives: list[float], negatives: list[float]) -> float | None:
    """P(a positive scores above a negative), ties counting half (Mann-Whitney); None when a side is empty."""
    if not positives or not negatives:
        return None
    ranked = sorted([(v, 1) for v in positives] + [(v, 0) for v in negatives])
    rank_sum, i = 0.0, 0
    while i < len(ranked):  # average ranks over ties
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        rank_sum += sum(label for _, label in ranked[i:j]) * (i + j + 1) / 2
        i = j
    n_pos, n_neg = len(positives), len(negatives)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def bootstrap_auc(positives: list[float], negatives: list[float], rounds: int = 1000,
                  seed: int = 0) -> tuple[float | None, float | None]:
    """A 95% percentile interval of the AUC, resampling positives and negatives (seeded)."""
    if not positives or not negatives:
        return None, None
    rng = random.Random(seed)
    values = sorted(auc(rng.choices(positives, k=len(positives)), rng.choices(negatives, k=len(negatives)))
                    for _ in range(rounds))
    return round(values[int(0.025 * rounds)], 4), round(values[int(0.975 * rounds) - 1], 4)


def score_probe(probe: list[dict], engine: Engine, mode: str, cfg) -> list[float | None]:
    """One number per probe pair, higher = better: the expected score (logprob mode), the parsed
    score (generate mode) or the signal (yes, pmi)."""
    from .curate import _rate_generate, _rate_logprob, load_template
    from .signals import SIGNALS, signal_values

    if mode in SIGNALS:
        return [None if v is None else v["signal"] for v in signal_values(mode, probe, engine, cfg.system_prompt)]
    if mode == "logprob":
        rated = _rate_logprob(probe, engine, load_template(cfg.template, "logprob"), cfg)
        return [r.get("expected_score") for r in rated]  # below the mass floor too: the probe measures the read
    rated = _rate_generate(probe, engine, cfg, load_template(cfg.template, "generate"))
    return [r["score"] for r in rated]


def probe_report(probe: list[dict], values: list[float | None], seed: int = 0) -> dict:
    """AUC overall and per negative kind with bootstrap intervals, and the value histograms."""
    scored = [(p, v) for p, v in zip(probe, values) if v is not None]
    positives = [v for p, v in scored if p["label"] == 1]
    report = {"pairs": len(probe), "positives": sum(p["label"] for p in probe), "unscored": len(probe) - len(scored)}
    everything = [v for p, v in scored if p["label"] == 0]
    value = auc(positives, everything)
    report["auc"] = None if value is None else round(value, 4)
    report["auc_interval"] = bootstrap_auc(positives, everything, seed=seed)
    report["by_kind"] = {}
    for kind in NEGATIVE_KINDS:
        negatives = [v for p, v in scored if p["kind"] == kind]
        value = auc(positives, negatives)
        report["by_kind"][kind] = {"negatives": len(negatives), "auc": None if value is None else round(value, 4),
                                   "auc_interval": bootstrap_auc(positives, negatives, seed=seed)}
    report["histogram"] = {"positive": _histogram(positives), "negative": _histogram(everything)}
    return report


def _histogram(values: list[float]) -> dict:
    if not values:
        return {}
    if all(float(v).is_integer() for v in values):
        return {str(int(k)): n for k, n in sorted(Counter(values).items())}
    return {"mean": round(statistics.fmean(values), 4), "quartiles": [round(q, 4) for q in statistics.quantiles(values, n=4)]}


def probe_judge(pairs: list[dict], judge_model: str, cfg, mode: str | None = None, engine: Engine | None = None,
                seed: int = 0) -> dict:
    """Score the probe made of ``pairs`` with the judge, one mode (default: cfg.mode); the report."""
    mode = mode or cfg.mode
    probe = probe_pairs(pairs, seed)
    start = time.time()
    with engine_for(judge_model, cfg, engine) as engine:
        values = score_probe(probe, engine, mode, cfg)
    seconds = time.time() - start
    report = {"judge_model": str(judge_model), "mode": mode, **probe_report(probe, values, seed),
              "seconds_per_pair": round(seconds / max(1, len(probe)), 4)}
    report["verdict"] = verdict(report["auc"], cfg.min_probe_auc)
    return report


def verdict(value: float | None, floor: float) -> str:
    if value is None:
        return "no verdict: the probe had no scored pairs on one side"
    if value < floor:
        return (f"near chance (AUC {value:.2f} < {floor}): curation with this judge and mode selects pairs about as "
                f"well as a coin; try another mode (humpback curate --compare), a larger judge, or a served one")
    return f"the judge separates good pairs from bad (AUC {value:.2f})"
