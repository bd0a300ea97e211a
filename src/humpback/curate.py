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
from collections.abc import Iterable
from functools import partial
from pathlib import Path

from .config import CurateConfig, ExecutorConfig, fields_with
from .engines import Engine, check_refusals, engine_for
from .executor import refuse_engine_object
from .files import write_json, write_jsonl
from .outputs import input_fingerprint, stage_input, stage_output
from .records import Candidate, Rating
from .rubric import load_template, rate_generate, rate_logprob
from .shards import EngineShards, read_stage, reject, run_sharded
from .signals import selection_value
from .stats import agreement

log = logging.getLogger("humpback")

# The fields that decide what a rating is (config.py declares each field's effect; k and the other
# selection fields do not: A_k is selected from the ratings after).
RATING_FIELDS = fields_with(CurateConfig, "output")


def _rate_signal(candidates: list[Candidate], engine: Engine, cfg: CurateConfig):
    """A likelihood signal (signals.py) per candidate; no 1..5 score: selected by value (cfg.select)."""
    from .signals import signal_values

    values = signal_values(cfg.mode, candidates, engine, cfg.system_prompt)
    check_refusals(engine, values, cfg, "rating")
    reasons = engine.refusal_reasons
    return [
        {"score": None, **v}
        if v is not None
        else {"score": None, "refused": True, "refusal_reason": reasons.get(i, "the engine refused the prompt")}
        for i, v in enumerate(values)
    ]


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
    if cfg.mode == "logprob":
        fields = rate_logprob(candidates, engine, template, cfg)
    elif cfg.mode in ("yes", "pmi", "features"):
        fields = _rate_signal(candidates, engine, cfg)
    else:
        fields = rate_generate(candidates, engine, cfg, template, shard_index)
    ratings, rejects, counts = [], [], Counter()
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
            Rating(**candidate, **rated, rating_mode=cfg.mode, judge_model=judge_model, iteration=iteration)
        )
    return ratings, rejects, counts


def rate(
    candidates: Iterable[dict] | Path,
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
    template = load_template(cfg.template, cfg.mode)  # a bad template fails here, before any engine starts
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
    ratings: list[dict], probe: dict | None, labels: dict[str, bool] | None, estimate: bool, target: float
) -> tuple[float | None, str]:
    """The value threshold of the calibrated rule and how it was set (said in ``selected_by``):
    from labels of the candidates when there are any; else from the probe, at the good share
    estimated from the candidates' values (``estimate``) or at the probe's configured share."""
    from .labels import calibrate_on_labels, describe, estimate_good_share
    from .probe import calibrate

    if labels:
        labelled = [r for r in ratings if r["id"] in labels]
        found = calibrate_on_labels(
            [selection_value(r) for r in labelled], [labels[r["id"]] for r in labelled], target
        )
        if found["labelled"]:
            return found["threshold"], describe(found) + "; "
    calibrated = (probe or {}).get("calibrated") or {}
    probe_values = (probe or {}).get("values")
    if estimate and probe_values:
        share = estimate_good_share(
            [selection_value(r) for r in ratings], probe_values["positive"], probe_values["negative"]
        )
        if share is not None:
            values = probe_values["positive"] + probe_values["negative"]
            marks = [1] * len(probe_values["positive"]) + [0] * len(probe_values["negative"])
            calibrated = {
                **calibrate(values, marks, target, share),
                "good_share": f"{share} (estimated from the candidates' values against the probe's made-up negatives)",
            }
    if calibrated.get("threshold") is None:
        return None, "calibrated: no threshold reaches the target precision on the judge probe; "
    # the rule's name and what the probe promised, so the report says how the set was chosen
    return calibrated["threshold"], (
        f"calibrated: precision {calibrated.get('precision')} on the probe at good share "
        f"{calibrated.get('good_share')}, recall {calibrated.get('recall')} (estimated "
        f"from the probe's made-up bad pairs; label candidates to measure it); "
    )


def select(
    ratings: Iterable[dict],
    k: int,
    rule: str = "score_at_least",
    threshold: float | None = None,
    fraction: float = 0.25,
    probe: dict | None = None,
    labels: dict[str, bool] | None = None,
    estimate: bool = False,
    target: float = 0.8,
) -> list[dict]:
    """The curated set, by ``rule``; every record keeps its values and gets ``selected_by``.

    - ``score_at_least``: A_k, the candidates rated at least k (the paper's). Unparsed ratings are
      never selected.
    - ``expected_at_least``: the expected score (logprob mode) >= threshold, default 4.5 (the paper's
      "score >= 4.5" for A_5).
    - ``value_at_least``: selection_value >= threshold (a signal or combination, on its own scale).
    - ``top_fraction``: the ``fraction`` of rated candidates with the highest selection_value.
    - ``calibrated``: selection_value at least the threshold that reaches ``target`` precision: on
      the labelled candidates when ``labels`` ({id: good?}) are given, else on the judge ``probe``
      (its report: probe.probe_judge) at the good share estimated from the candidates' values
      (``estimate``) or the probe's own; nothing without either.
    With a probe whose mode was ``features``, each rating's features are first combined by the
    weights fitted there (``combined``).
    """
    from .probe import combined_value

    combination = (probe or {}).get("combination")
    ratings = [
        ({**r, "combined": combined_value(r["features"], combination)} if combination and r.get("features") else r)
        for r in ratings
    ]
    if rule == "calibrated":
        rule, threshold, calibrated_by = (
            "value_at_least",
            *calibrated_threshold(ratings, probe, labels, estimate, target),
        )
        if threshold is None:
            log.warning("curate.select calibrated: %s: nothing selected", calibrated_by.rstrip("; "))
            return []
    else:
        calibrated_by = ""
    if rule == "score_at_least":
        chosen = [r for r in ratings if r.get("score") is not None and r["score"] >= k]
        how = f"score >= {k}"
    elif rule == "expected_at_least":
        threshold = 4.5 if threshold is None else threshold
        chosen = [r for r in ratings if r.get("expected_score") is not None and r["expected_score"] >= threshold]
        how = f"expected score >= {threshold}"
    elif rule == "value_at_least":
        if threshold is None:
            raise ValueError("curate.select value_at_least needs curate.select_threshold")
        chosen = [r for r in ratings if (v := selection_value(r)) is not None and v >= threshold]
        how = f"value >= {threshold}"
    elif rule == "top_fraction":
        valued = sorted((r for r in ratings if selection_value(r) is not None), key=selection_value, reverse=True)
        keep = round(fraction * len(valued))
        position = {id(r): i for i, r in enumerate(ratings)}  # not ratings.index: quadratic at 500k rows
        chosen = sorted(valued[:keep], key=lambda r: position[id(r)]) if keep else []
        how = f"top {fraction:.0%} by value"
    else:
        raise ValueError(
            f"unknown selection rule {rule!r}: score_at_least, expected_at_least, value_at_least, "
            "top_fraction or calibrated"
        )
    return [{**r, "selected_by": calibrated_by + how} for r in chosen]


def curate(
    candidates: Iterable[dict] | Path,
    judge_model: str,
    out_dir: Path,
    cfg: CurateConfig | None = None,
    iteration: int = 1,
    engine: Engine | None = None,
    executor: ExecutorConfig | None = None,
    recompute: bool = False,
    probe: dict | None = None,
) -> list[dict]:
    """Rate into ``out_dir/ratings`` and write the curated set to ``out_dir/curated/part-00000.jsonl``
    (selected anew from the ratings every time, by cfg.select; ``probe``: the judge's probe report,
    for the calibrated rule and the fitted combination of features)."""
    cfg = cfg or CurateConfig()
    with stage_output(out_dir, "curate") as out_dir:
        rate(candidates, judge_model, out_dir / "ratings", cfg, iteration, engine, executor, recompute)
        labels = None
        if cfg.labels is not None:
            from .labels import labels_path, read_labels

            labels, _ = read_labels(labels_path(cfg.labels))
        curated = select(
            read_stage(out_dir / "ratings"),
            cfg.k,
            cfg.select,
            cfg.select_threshold,
            cfg.select_fraction,
            probe,
            labels=labels,
            estimate=cfg.estimate_good_share,
            target=cfg.target_precision,
        )
        write_jsonl(out_dir / "curated" / "part-00000.jsonl", curated)
    return curated


RATING_MODES = ("generate", "logprob", "yes", "pmi", "features")


def compare_modes(
    candidates: Iterable[dict] | Path,
    judge_model: str,
    cfg: CurateConfig | None = None,
    out_path: Path | None = None,
    engine: Engine | None = None,
    probe_pairs: list[dict] | None = None,
    modes: Iterable[str] = RATING_MODES,
) -> dict:
    """Rate a seeded sample of ``cfg.compare_sample`` candidates both ways with the same judge and
    report how often the two ratings agree: exactly, and within one point (over the candidates
    both modes rated). With ``probe_pairs`` (human-written pairs no training saw), also probe the
    judge in every mode of ``modes`` (probe.probe_judge): which way of rating tells good pairs from
    bad, by AUC, side by side. Writes the report, with every pair of ratings, to ``out_path`` if given."""
    from .probe import probe_judge

    cfg = cfg or CurateConfig()
    if isinstance(candidates, (str, Path)):
        candidates = read_stage(Path(candidates))
    pool = list(candidates)
    sample = random.Random(cfg.random_seed).sample(pool, min(cfg.compare_sample, len(pool)))
    with engine_for(judge_model, cfg, engine) as engine:
        generated = rate_generate(sample, engine, cfg, load_template(cfg.template, "generate"))
        by_logprob = rate_logprob(sample, engine, load_template(cfg.template, "logprob"), cfg)
        probes = (
            [probe_judge(probe_pairs, judge_model, cfg, mode, engine, cfg.random_seed) for mode in modes]
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
