"""Is the curated data worth training on? Ablations of a finished run (the paper's Figures 3 and 7,
Table 8 and its data-scaling fit, at the run's own scale).

Every arm is a forward model trained from the base, as M_i is, on one variant of the run's data,
with several training seeds; each model's loss on held-out answers (the run's probe pairs, and any
prompt set with reference answers) is read per pair. An arm's value is its per-token answer loss
(lower is better) with a bootstrap interval over prompts and seeds, and each arm is compared with
"seed + a random sample of the candidates of the same size", paired on the same prompts: is
curation better than chance selection, and by how much. Each model is a stage of its own, so a
rerun resumes arm by arm.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .config import AblateConfig, EvalConfig, RunConfig, load_yaml
from .evaluate import answer, judge, load_prompt_set
from .files import write_json
from .models import check_model
from .outputs import output_lock, stage_output
from .probe import answer_losses
from .records import SeedPair
from .report import build_report
from .shards import read_jsonl, read_stage
from .train import train_forward

ARMS = ("seed", "curated", "random", "all", "curated_only", "untagged")


def arm_data(
    arm: str,
    seed: list[SeedPair],
    curated: list[dict],
    candidates: list[dict],
    draw: int,
) -> tuple[list[SeedPair], list[dict], str | None]:
    """(seed part, augmented part, tag placement or None for the run's) of one arm. ``draw`` seeds
    the random arm's sample and the subsamples (``curated@N``: seed + N of the curated set)."""
    if arm == "seed":
        return seed, [], None
    if arm == "curated":
        return seed, curated, None
    if arm == "random":  # as many candidates as were curated, drawn without looking at any value
        return seed, random.Random(draw).sample(candidates, min(len(curated), len(candidates))), None
    if arm == "all":
        return seed, candidates, None
    if arm == "curated_only":
        return [], curated, None
    if arm == "untagged":
        return seed, curated, "none"
    if arm.startswith("curated@"):
        size = int(arm.split("@", 1)[1])
        return seed, random.Random(draw).sample(curated, min(size, len(curated))), None
    raise ValueError(f"unknown ablation arm {arm!r}: {', '.join(ARMS)}, or curated@N")


def arm_names(cfg: AblateConfig) -> list[str]:
    for arm in cfg.arms:
        if arm not in ARMS:
            raise ValueError(f"unknown ablation arm {arm!r}: {', '.join(ARMS)} (sizes go in --sizes)")
    return list(dict.fromkeys([*cfg.arms, *(f"curated@{n}" for n in sorted(cfg.sizes))]))


def mean_loss(losses: Sequence[Sequence[tuple[float, int]]], pairs: Sequence[int], seeds: Sequence[int]) -> float:
    """Per-token loss over the chosen pairs (rows of each seed's per-pair losses) and seeds."""
    nll = sum(losses[s][p][0] for s in seeds for p in pairs)
    tokens = sum(losses[s][p][1] for s in seeds for p in pairs)
    return nll / max(1, tokens)


def bootstrap(
    arm: Sequence[Sequence[tuple[float, int]]],
    against: Sequence[Sequence[tuple[float, int]]] | None,
    rounds: int,
    seed: int,
) -> tuple[float, float]:
    """A 95% percentile interval of the arm's loss (or, with ``against``, of the arm's loss minus
    that arm's on the same resampled prompts), resampling prompts and training seeds."""
    rng = random.Random(seed)
    n_pairs, n_seeds = len(arm[0]), len(arm)
    values = []
    for _ in range(rounds):
        pairs = rng.choices(range(n_pairs), k=n_pairs)
        seeds = rng.choices(range(n_seeds), k=n_seeds)
        value = mean_loss(arm, pairs, seeds)
        if against is not None:
            value -= mean_loss(against, pairs, rng.choices(range(len(against)), k=len(against)))
        values.append(value)
    values.sort()
    return round(values[int(0.025 * rounds)], 4), round(values[int(0.975 * rounds) - 1], 4)


def fit_log_slope(points: Sequence[tuple[int, float]]) -> dict | None:
    """Least squares of value = alpha log N + C over (N, value) points; None under two sizes."""
    points = [(n, v) for n, v in points if n > 0]
    if len({n for n, _ in points}) < 2:
        return None
    xs, ys = [math.log(n) for n, _ in points], [v for _, v in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    alpha = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return {"alpha": round(alpha, 4), "c": round(my - alpha * mx, 4), "points": [[n, round(v, 4)] for n, v in points]}


def _run_data(run: Path) -> tuple[RunConfig, list[SeedPair], list[dict], list[dict], list[dict]]:
    """The run's config, training seed, last curated set (as trained: decontaminated), candidates,
    and probe pairs."""
    if not (run / "config.yaml").is_file() or not (run / "final" / "train.jsonl").is_file():
        raise FileNotFoundError(f"{run} is not a finished humpback run (no config.yaml or final/train.jsonl)")
    config = RunConfig.model_validate(load_yaml(run / "config.yaml"))
    seed: list[Any] = list(read_jsonl(run / "seed" / "part-00000.jsonl"))
    last = run / f"iter{config.iterations}"
    trained = {row["id"] for row in read_jsonl(last / "train.jsonl") if row.get("origin") == "augmented"}
    curated = [r for r in read_jsonl(last / "curated" / "part-00000.jsonl") if r["id"] in trained]
    candidates = list(read_stage(run / "candidates"))
    probe_file = run / "probe" / "pairs.jsonl"
    held = list(read_jsonl(probe_file)) if probe_file.is_file() else []
    return config, seed, curated, candidates, held


def ablate(run_dir: Path | str, cfg: AblateConfig | None = None, recompute: bool = False) -> dict:
    """Train and measure every arm into ``RUN/ablate`` (resumable model by model; a model made with
    other settings stops the rerun, or with ``recompute`` is redone); the summary in
    ``RUN/ablate/ablations.json``."""
    cfg = cfg or AblateConfig()
    run = Path(run_dir)
    arms = arm_names(cfg)
    config, seed, curated, candidates, held = _run_data(run)
    references: list[Mapping] = list(held)
    if cfg.prompts is not None:
        prompts, _ = load_prompt_set(cfg.prompts, cfg.limit, cfg.random_seed)
        references += [p for p in prompts if isinstance(p.get("output"), str) and p["output"].strip()]
    if not references:
        raise ValueError(
            f"nothing to measure on: {run} held no probe pairs out (probe_share 0); give --prompts with "
            "reference answers (AlpacaEval's set carries them)"
        )
    base_model = check_model(config.model)  # 'smollm2-135m' and the like: the converted checkpoint
    forward = config.forward
    if cfg.max_steps is not None:
        forward = forward.model_copy(update={"max_steps": cfg.max_steps, "num_epochs": None})
    with stage_output(run / "ablate", "ablate") as out:
        losses: dict[str, list[list[tuple[float, int]]]] = {}
        preferences: dict[str, list[dict[str, float]]] = {}  # per seed: prompt -> preference over M_0
        sizes: dict[str, int] = {}
        m0: list[dict] | None = None
        for arm in arms:
            losses[arm], preferences[arm] = [], []
            for s in range(cfg.seeds):
                seed_part, augmented, placement = arm_data(arm, seed, curated, candidates, cfg.random_seed + s)
                sizes[arm] = len(augmented)
                arm_cfg = forward.model_copy(
                    update={
                        "random_seed": forward.random_seed + s,
                        "tag_placement": placement or forward.tag_placement,
                    }
                )
                model = out / arm / f"seed{s}"
                info = train_forward(seed_part, augmented, base_model, model, arm_cfg, recompute=recompute)
                losses[arm].append(_measured(model, info, references, arm_cfg.tag_placement))
                if cfg.judge.enabled:
                    m0 = m0 or _m0_answers(run, config, references, cfg, out)
                    preferences[arm].append(_judged(model, info, arm_cfg.tag_placement, references, m0, cfg))
        result = summarize(losses, sizes, len(curated), cfg)
        if cfg.judge.enabled:
            result["win_rate_over_m0"] = {
                arm: win_rate_summary(per_seed, cfg) for arm, per_seed in preferences.items() if per_seed
            }
        result |= {"run": str(run), "references": len(references), "probe_pairs": len(held), "seeds": cfg.seeds}
        write_json(out / "ablations.json", result)
    if (run / "stats.json").is_file():  # the run's report gains the ablations table and figure
        with output_lock(run):
            build_report(run)
    return result


def _measured(model: Path, info: dict, references: list[Mapping], placement: str) -> list:
    """The model's per-pair losses, kept beside it and reused while the model is the same one."""
    path = model.with_name(f"{model.name}.losses.json")
    key = [info.get("examples_digest"), len(references)]
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("key") == key:
            return [tuple(v) for v in saved["losses"]]
    found = answer_losses(references, str(model), placement=placement)
    write_json(path, {"key": key, "losses": found})
    return found


def _m0_answers(run: Path, config: RunConfig, prompts: list[Mapping], cfg: AblateConfig, out: Path) -> list[dict]:
    """M_0's answers to the prompts (what every arm is judged against), kept in OUT/m0_answers.json."""
    path = out / "m0_answers.json"
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if [a["instruction"] for a in saved] == [p["instruction"] for p in prompts]:
            return saved
    asked = EvalConfig(tag_placement=config.forward.tag_placement, max_new_tokens=cfg.answer_max_new_tokens)
    outputs, _ = answer([dict(p) for p in prompts], str(run / "models" / "m0"), asked, "m0")
    write_json(path, outputs)
    return outputs


def _judged(
    model: Path, info: dict, placement: str, prompts: list[Mapping], m0: list[dict], cfg: AblateConfig
) -> dict[str, float]:
    """The model's answers judged against M_0's: prompt -> the judge's mean preference for the
    model's answer (1 win, 0.5 tie); kept beside the model, reused while it is the same one."""
    path = model.with_name(f"{model.name}.judged.json")
    key = [info.get("examples_digest"), cfg.judge.model_dump(mode="json"), [a["instruction"] for a in m0]]
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("key") == key:
            return saved["preferences"]
    asked = EvalConfig(tag_placement=placement, max_new_tokens=cfg.answer_max_new_tokens)
    outputs, _ = answer([dict(p) for p in prompts], str(model), asked, model.parent.name)
    judged_dir = model.with_name(f"{model.name}.judge")
    judge(outputs, {a["instruction"]: a for a in m0}, cfg.judge, judged_dir, model.parent.name, "m0")
    per_prompt: dict[str, list[float]] = {}
    for j in read_jsonl(judged_dir / "judgements.jsonl"):
        if j["preference"] is not None:
            per_prompt.setdefault(j["instruction"], []).append(j["preference"])
    preferences = {k: sum(v) / len(v) for k, v in per_prompt.items()}
    write_json(path, {"key": key, "preferences": preferences})
    return preferences


def win_rate_summary(per_seed: list[dict[str, float]], cfg: AblateConfig) -> dict:
    """Mean win rate over M_0 (percent) over prompts and seeds, with a bootstrap interval."""
    prompts = sorted(set().union(*per_seed))
    if not prompts:
        return {"win_rate": None, "interval": (None, None), "prompts": 0}

    def rate(chosen: Sequence[str], seeds: Sequence[int]) -> float:
        values = [per_seed[s][p] for s in seeds for p in chosen if p in per_seed[s]]
        return 100 * sum(values) / max(1, len(values))

    rng = random.Random(cfg.random_seed)
    draws = sorted(
        rate(rng.choices(prompts, k=len(prompts)), rng.choices(range(len(per_seed)), k=len(per_seed)))
        for _ in range(cfg.bootstrap_rounds)
    )
    interval = (round(draws[int(0.025 * len(draws))], 2), round(draws[int(0.975 * len(draws)) - 1], 2))
    return {"win_rate": round(rate(prompts, range(len(per_seed))), 2), "interval": interval, "prompts": len(prompts)}


def summarize(losses: dict[str, list[list[tuple[float, int]]]], sizes: dict[str, int], curated: int, cfg) -> dict:
    """Each arm's loss with its interval, its paired difference from the random arm, and the
    data-scaling fit over the curated@N arms (and the whole curated set)."""
    arms: dict[str, dict[str, Any]] = {}
    loss: dict[str, float] = {}
    for arm, per_seed in losses.items():
        everything = range(len(per_seed[0]))
        loss[arm] = round(mean_loss(per_seed, everything, range(len(per_seed))), 4)
        arms[arm] = {
            "augmented_examples": sizes[arm],
            "answer_loss": loss[arm],
            "interval": bootstrap(per_seed, None, cfg.bootstrap_rounds, cfg.random_seed),
            "per_seed": [round(mean_loss(per_seed, everything, [s]), 4) for s in range(len(per_seed))],
        }
        if "random" in losses and arm != "random":
            random_arm = losses["random"]
            diff = loss[arm] - mean_loss(random_arm, everything, range(len(random_arm)))
            arms[arm]["minus_random"] = round(diff, 4)
            arms[arm]["minus_random_interval"] = bootstrap(per_seed, random_arm, cfg.bootstrap_rounds, cfg.random_seed)
    points = [(sizes[a], loss[a]) for a in arms if a.startswith("curated@")]
    if "curated" in arms:
        points.append((curated, loss["curated"]))
    return {
        "measure": "per-token loss on held-out reference answers (lower is better)",
        "arms": arms,
        "scaling": fit_log_slope(points),
    }
