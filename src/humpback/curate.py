"""Self-curation: the judge values every candidate; a selection rule keeps the best (A_k: scores >= k).

How a candidate is valued is the mode (``CurateConfig.mode``): by the rubric, read as generated text
or as the probability of each score (``generate``, the paper's, and ``logprob``: rubric.py), or by
the candidate's likelihood under the judge (``yes``, ``pmi``, ``features``: signals.py, with the
detectors fitted on the probe: probe.py). This module runs a mode over the candidates of a stage,
shard by shard, and selects from the ratings.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import cast

from .config import CurateConfig, ExecutorConfig, fields_with
from .engines import Engine, engine_for
from .executor import refuse_engine_object
from .files import write_json, write_jsonl
from .labels import calibrate_on_labels, describe, estimate_good_share, labels_path, read_labels
from .outputs import input_fingerprint, stage_input, stage_output
from .probe import JudgeProbe, calibrate, probe_judge
from .records import Candidate, Rating, Reject
from .rubric import load_template, rate_generate, rate_logprob
from .scoring import MODES, SELECTION_RULES, check_selection, rating_mode
from .shards import EngineShards, read_stage, reject, run_sharded
from .signals import selection_value
from .stats import agreement

log = logging.getLogger("humpback")

# The fields that decide what a rating is (config.py declares each field's effect; k and the other
# selection fields do not: A_k is selected from the ratings after).
RATING_FIELDS = fields_with(CurateConfig, "output")


def rate_shard(
    candidates: list[Candidate],
    shard_index: int,
    engine: Engine,
    cfg: CurateConfig,
    template: str,
    judge_model: str,
    iteration: int,
):
    """One shard: a Rating for every candidate the judge behind ``engine`` ran (refusals: rejects)."""
    fields = rating_mode(cfg.mode).rate(candidates, engine, cfg, template, shard_index)
    ratings: list[Rating] = []
    rejects: list[Reject] = []
    counts: Counter = Counter()
    for candidate, rated in zip(candidates, fields):
        score = rated["score"]
        if rated.pop("refused", False):  # counted apart from unparsed ratings, kept as a reject
            counts["refused"] += 1
            rejects.append(
                reject("curate", candidate.get("source", candidate["id"]), rated["refusal_reason"], candidate)
            )
            continue
        counts[f"score_{score}" if score else ("signal" if "signal" in rated else "unparsed")] += 1
        counts["low_choice_mass"] += rated.get("unparsed_reason") == "low_choice_mass"
        counts["score_line_prompted"] += rated.get("score_line_prompted", False)
        ratings.append(
            cast(  # the mode's rate gave the rating's fields (score and the mode's own)
                Rating,
                {**candidate, **rated, "rating_mode": cfg.mode, "judge_model": judge_model, "iteration": iteration},
            )
        )
    return ratings, rejects, counts


def rate(
    candidates: Iterable[Candidate] | Path,
    judge_model: str,
    out_dir: Path,
    cfg: CurateConfig | None = None,
    iteration: int = 1,
    engine: Engine | None = None,
    executor: ExecutorConfig | None = None,
    recompute: bool = False,
) -> dict:
    """Rate every candidate into ``out_dir/part-*`` (resumable, shard by shard; on Ray with ``executor``).
    A rerun resumes only ratings made of the same candidates, by the same judge, the same way."""
    cfg = cfg or CurateConfig()
    out_dir = Path(out_dir)
    template = rating_mode(cfg.mode).template(cfg)  # a bad template fails here, before any engine starts
    refuse_engine_object(engine, executor, "curate")
    candidates, source = stage_input(candidates)
    fields = {
        "candidates": source,
        "judge_model": input_fingerprint(judge_model) if engine is None else None,
        "template": template,
        "iteration": iteration,
        "config": cfg.model_dump(mode="json", include=RATING_FIELDS),
    }
    with stage_output(out_dir, "ratings", fields, recompute):
        worker = partial(
            EngineShards,
            rate_shard,
            judge_model,
            cfg,
            engine,
            template=template,
            judge_model=str(judge_model),
            iteration=iteration,
        )
        return run_sharded(
            candidates,
            out_dir,
            cfg.records_per_shard,
            worker,
            desc=f"curate (iteration {iteration}, {cfg.mode})",
            executor=executor,
        )


def calibrated_threshold(
    values: list[float | None],
    ids: list[str],
    probe: JudgeProbe | None,
    labels: dict[str, bool] | None,
    estimate: bool,
    target: float,
    good_share: float | None,
) -> tuple[float | None, str]:
    """The value threshold of the calibrated rule and how it was set (said in ``selected_by``):
    from labels of the candidates when there are any; else from the probe's values, at the good
    share estimated from the candidates' values (``estimate``) or at ``good_share``."""
    if labels:
        labelled = [(v, labels[i]) for v, i in zip(values, ids) if i in labels]
        found = calibrate_on_labels([v for v, _ in labelled], [good for _, good in labelled], target)
        if found["labelled"]:
            return found["threshold"], describe(found) + "; "
    if probe is None:
        return None, "calibrated: no judge probe and no labels to calibrate on; "
    positive, negative = probe.report["values"]["positive"], probe.report["values"]["negative"]
    share, said = good_share, f"{good_share}"
    if estimate:
        estimated = estimate_good_share(values, positive, negative)
        if estimated is not None:
            share, said = (
                estimated,
                f"{estimated} (estimated from the candidates' values against the probe's made-up negatives)",
            )
    calibrated = calibrate(positive + negative, [1] * len(positive) + [0] * len(negative), target, share)
    if calibrated["threshold"] is None:
        return None, "calibrated: no threshold reaches the target precision on the judge probe; "
    # the rule's name and what the probe promised, so the report says how the set was chosen
    return calibrated["threshold"], (
        f"calibrated: precision {calibrated['precision']} on the probe at good share {said}, recall "
        f"{calibrated['recall']} (estimated from the probe's made-up bad pairs; label candidates to measure it); "
    )


def select(
    ratings: Iterable[Rating],
    k: int,
    rule: str = "score_at_least",
    threshold: float | None = None,
    fraction: float = 0.25,
    probe: JudgeProbe | None = None,
    labels: dict[str, bool] | None = None,
    estimate: bool = False,
    target: float = 0.8,
    good_share: float | None = 0.2,
) -> list[dict]:
    """The curated set, by ``rule``; every record keeps its values and gets ``selected_by``.

    - ``score_at_least``: A_k, the candidates rated at least k (the paper's). Unparsed ratings are
      never selected.
    - ``expected_at_least``: the expected score (logprob mode) >= threshold, default 4.5 (the paper's
      "score >= 4.5" for A_5).
    - ``value_at_least``: selection_value >= threshold (a signal or combination, on its own scale).
    - ``top_fraction``: the ``fraction`` of rated candidates with the highest selection_value.
    - ``calibrated``: selection_value at least the threshold that reaches ``target`` precision: on
      the labelled candidates when ``labels`` ({id: good?}) are given, else on the judge ``probe``'s
      values at the good share estimated from the candidates' values (``estimate``) or
      ``good_share`` (None: the probe's own mix); nothing without either.
    With a probe that fitted detectors (features mode), each rating's features are first valued by
    them (``combined``).
    """
    if probe is not None and probe.detectors is not None:
        ratings = [
            {**r, "combined": probe.detectors.value(r["features"])} if r.get("features") else r for r in ratings
        ]
    else:
        ratings = list(ratings)
    if rule == "calibrated":
        rule, threshold, calibrated_by = (
            "value_at_least",
            *calibrated_threshold(
                [selection_value(r) for r in ratings],
                [r["id"] for r in ratings],
                probe,
                labels,
                estimate,
                target,
                good_share,
            ),
        )
        if threshold is None:
            log.warning("curate.select %s: nothing selected", calibrated_by.rstrip("; "))
            return []
    else:
        calibrated_by = ""
    if rule == "score_at_least":
        chosen = [r for r in ratings if (score := r.get("score")) is not None and score >= k]
        how = f"score >= {k}"
    elif rule == "expected_at_least":
        threshold = 4.5 if threshold is None else threshold
        chosen = [r for r in ratings if (expected := r.get("expected_score")) is not None and expected >= threshold]
        how = f"expected score >= {threshold}"
    elif rule == "value_at_least":
        if threshold is None:
            raise ValueError("curate.select value_at_least needs curate.select_threshold")
        chosen = [r for r in ratings if (v := selection_value(r)) is not None and v >= threshold]
        how = f"value >= {threshold}"
    elif rule == "top_fraction":
        valued = sorted(
            (r for r in ratings if selection_value(r) is not None),
            key=lambda r: selection_value(r) or 0.0,
            reverse=True,
        )
        keep = round(fraction * len(valued))
        position = {id(r): i for i, r in enumerate(ratings)}  # not ratings.index: quadratic at 500k rows
        chosen = sorted(valued[:keep], key=lambda r: position[id(r)]) if keep else []
        how = f"top {fraction:.0%} by value"
    else:
        raise ValueError(f"unknown selection rule {rule!r}: {', '.join(SELECTION_RULES)}")
    return [{**r, "selected_by": calibrated_by + how} for r in chosen]


def curate(
    candidates: Iterable[Candidate] | Path,
    judge_model: str,
    out_dir: Path,
    cfg: CurateConfig | None = None,
    iteration: int = 1,
    engine: Engine | None = None,
    executor: ExecutorConfig | None = None,
    recompute: bool = False,
    probe: JudgeProbe | None = None,
) -> list[dict]:
    """Rate into ``out_dir/ratings`` and write the curated set to ``out_dir/curated/part-00000.jsonl``
    (selected anew from the ratings every time, by cfg.select; ``probe``: the judge's probe, for the
    calibrated rule and the detectors of features mode). A mode and rule that cannot select
    anything together stop here, before any rating (scoring.check_selection)."""
    cfg = cfg or CurateConfig()
    check_selection(cfg, has_probe=probe is not None)
    with stage_output(out_dir, "curate") as out_dir:
        rate(candidates, judge_model, out_dir / "ratings", cfg, iteration, engine, executor, recompute)
        labels = read_labels(labels_path(cfg.labels))[0] if cfg.labels is not None else None
        curated = select(
            cast(Iterator[Rating], read_stage(out_dir / "ratings")),  # the records rate wrote
            cfg.k,
            cfg.select,
            cfg.select_threshold,
            cfg.select_fraction,
            probe,
            labels=labels,
            estimate=cfg.estimate_good_share,
            target=cfg.target_precision,
            good_share=cfg.good_share,
        )
        write_jsonl(out_dir / "curated" / "part-00000.jsonl", curated)
    return curated


def compare_modes(
    candidates: Iterable[Candidate] | Path,
    judge_model: str,
    cfg: CurateConfig | None = None,
    out_path: Path | None = None,
    engine: Engine | None = None,
    probe_pairs: Sequence[Mapping] | None = None,
    modes: Iterable[str] = tuple(MODES),
) -> dict:
    """Rate a seeded sample of ``cfg.compare_sample`` candidates both ways with the same judge and
    report how often the two ratings agree: exactly, and within one point (over the candidates
    both modes rated). With ``probe_pairs`` (human-written pairs no training saw), also probe the
    judge in every mode of ``modes`` (probe.probe_judge): which way of rating tells good pairs from
    bad, by AUC, side by side. Writes the report, with every pair of ratings, to ``out_path`` if given."""
    cfg = cfg or CurateConfig()
    pool: list[Candidate] = list(
        cast(Iterator[Candidate], read_stage(Path(candidates))) if isinstance(candidates, (str, Path)) else candidates
    )
    sample = random.Random(cfg.random_seed).sample(pool, min(cfg.compare_sample, len(pool)))
    with engine_for(judge_model, cfg, engine) as engine:
        generated = rate_generate(sample, engine, cfg, load_template(cfg.template, "generate"))
        by_logprob = rate_logprob(sample, engine, load_template(cfg.template, "logprob"), cfg)
        probes = (
            [probe_judge(probe_pairs, judge_model, cfg, mode, engine, cfg.random_seed).report for mode in modes]
            if probe_pairs
            else []
        )
    pairs = [
        {"id": c["id"], "generate": g["score"], "logprob": lp["score"], "expected_score": lp["expected_score"]}
        for c, g, lp in zip(sample, generated, by_logprob)
    ]
    both = [p for p in pairs if p["generate"] is not None and p["logprob"] is not None]
    agreed = agreement([p["generate"] for p in both], [p["logprob"] for p in both])
    report = {
        "judge_model": str(judge_model),
        "sampled": len(sample),
        "both_rated": len(both),
        "generate_unparsed": sum(p["generate"] is None for p in pairs),
        "exact_agreement": agreed["exact"],
        "within_one": agreed["within_one"],
        "generate_histogram": dict(sorted(Counter(p["generate"] for p in both).items())),
        "logprob_histogram": dict(sorted(Counter(p["logprob"] for p in both).items())),
        "probe": probes,
        "pairs": pairs,
    }
    if out_path is not None:
        write_json(Path(out_path), report)
    return report
