"""Self-curation: the model rates every candidate on a 5-point rubric; A_k keeps scores >= k.

The rubric has the paper's five levels and criteria (its Table 1), in our own words. Two ways to
rate (``CurateConfig.mode``):

- ``generate`` (the paper's): the judge reasons briefly, then ends with ``Score: N``.
  ``parse_score`` is strict on purpose: only a final ``Score: N`` line with N in 1..5 counts, so a
  "Score: 10" is never read as 1 and a rambling answer is never guessed at. Unparsed ratings keep
  the judge's raw text and are counted.
- ``logprob``: the judge is asked for the rating only and its answer is started for it with
  ``Score:``; the probability of each of the texts " 1" .. " 5" written next is read teacher-forced
  (the same whichever way a tokenizer splits them, see engines.base.ChoicePlan). The rating is the
  most likely score; the expected score, the five probabilities and the share of the judge's
  probability they had (``score_mass``) are kept too. Below ``min_choice_mass`` the judge wanted
  to write something else, and the rating is unparsed (``low_choice_mass``), never selected.
"""

from __future__ import annotations

import logging
import math
import random
import re
from collections import Counter
from functools import partial
from pathlib import Path
from collections.abc import Iterable

from .config import CurateConfig, ExecutorConfig
from .engines import Engine, SamplingParams, check_refusals, engine_for
from .executor import refuse_engine_object
from .outputs import input_fingerprint, stage_input, stage_output
from .files import write_json, write_jsonl
from .records import Candidate, Rating
from .shards import EngineShards, read_stage, reject, run_sharded
from .stats import agreement

log = logging.getLogger("humpback")

RUBRIC_SCALE = """\
Below is an instruction from a user and a candidate answer. Judge whether the answer is a good \
example of how an AI assistant should reply to the instruction, using this 5-point scale:

1: The answer is incomplete, vague, off-topic, controversial, or not what the user asked for. \
For example, content seems to be missing, a numbered list starts in the middle, or the answer \
opens by repeating the question. Also score 1 if it is written from another person's point of \
view with their personal experiences (such as a blog post), reads like a forum reply, or \
contains promotions, navigation text or other irrelevant material.
2: The answer covers most of what the user asked, but does not answer the question directly. \
For example, it describes a general approach instead of giving the exact solution.
3: The answer is helpful and complete: it covers every basic request and stands on its own. It \
is not written as an AI assistant would write it, though; it reads like an excerpt from a blog, \
a web page or search results, for example with personal experience or opinion, or mentions of \
a comments section or sharing on social media.
4: The answer is written from an AI assistant's point of view and is clearly focused on the \
instruction. It is complete, clear and thorough, with nothing missing or irrelevant, well \
organised, self-contained and helpful in tone. It could still be a little more concise or focused.
5: The answer is a perfect reply from an AI assistant: written for this very instruction, with \
no irrelevant sentence, expert and high-quality content, clear and logical writing that is easy \
to follow, engaging and insightful."""

ASK_REASONING = """\
First explain your judgement in a few sentences. Then write the rating on the last line, in \
exactly this form: "Score: <rating>", where <rating> is 1, 2, 3, 4 or 5."""

ASK_SCORE_ONLY = """\
Reply with the rating only, in exactly this form: "Score: <rating>", where <rating> is 1, 2, 3, 4 or 5."""

CANDIDATE = """\
Instruction:
{instruction}

Answer:
{output}"""

# The candidate comes last, so every rating prompt shares the whole rubric as a prefix: engines
# encode it once (transformers engine) or cache it (vLLM).
RUBRIC = f"{RUBRIC_SCALE}\n\n{ASK_REASONING}\n\n{CANDIDATE}"
"""The judge's prompt in generate mode (the paper's)."""
LOGPROB_RUBRIC = f"{RUBRIC_SCALE}\n\n{ASK_SCORE_ONLY}\n\n{CANDIDATE}"
"""The judge's prompt in logprob mode; its answer is started with SCORE_PREFIX."""
SCORES = ["1", "2", "3", "4", "5"]
SCORE_CHOICES = [" " + s for s in SCORES]  # what is read after "Score:" (templates may trim a trailing space)

# The fields that decide what a rating is (k does not: A_k is selected from the ratings after).
RATING_FIELDS = {
    "engine",
    "dtype",
    "served_model",
    "mode",
    "max_new_tokens",
    "finish_score_line",
    "temperature",
    "top_p",
    "records_per_shard",
    "random_seed",
    "chat_template",
    "continue_with",
    "min_choice_mass",
    "system_prompt",
}

_SCORE_LINE = re.compile(r"^\W*score\W*:", re.IGNORECASE)  # anything that looks like a score line
_FINAL_SCORE = re.compile(r"^\s*\**\s*Score\s*\**\s*:\s*\**\s*([1-5])\s*\**\s*[.,;!]?\s*$", re.IGNORECASE)
SCORE_PREFIX = "Score:"


def parse_score(text: str) -> int | None:
    """The rating in a judge's answer, or None.

    Counts only when the last non-empty line is ``Score: N`` with N in 1..5 (letter case,
    markdown bold and one closing punctuation mark aside) and no other line claims a score.
    "Score: 10", "score 4", "Score: 4.5", two score lines, or a score buried mid-text are all
    None: unparsed, never coerced.
    """
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    if not lines:
        return None
    match = _FINAL_SCORE.match(lines[-1])
    if not match:
        return None
    if sum(1 for line in lines if _SCORE_LINE.match(line)) != 1:
        return None
    return int(match.group(1))


def load_template(path: Path | None, mode: str = "generate") -> str:
    if path is None or mode in ("yes", "pmi", "features"):  # the likelihood signals use no rubric
        return LOGPROB_RUBRIC if mode == "logprob" else RUBRIC
    template = Path(path).read_text(encoding="utf-8")
    for field in ("{instruction}", "{output}"):
        if field not in template:
            raise ValueError(f"rubric template {path} must contain {field}")
    return template


def rating_prompt(
    candidate: dict, template: str = RUBRIC, mode: str = "generate", system_prompt: str = ""
) -> list[dict]:
    # str.replace, not format(): web text is full of braces.
    text = template.replace("{instruction}", candidate["instruction"]).replace("{output}", candidate["output"])
    prompt = [{"role": "system", "content": system_prompt}] if system_prompt else []
    prompt.append({"role": "user", "content": text})
    if mode == "logprob":  # the judge's answer starts for it; the score is what it writes next
        prompt.append({"role": "assistant", "content": SCORE_PREFIX})
    return prompt


def has_score_line(text: str) -> bool:
    return any(_SCORE_LINE.match(line) for line in (text or "").splitlines())


def finish_with_score_line(prompts: list[list[dict]], answers: list[str], engine: Engine) -> list[str]:
    """Judges that reasoned but never wrote a Score line get their own answer back, followed by
    'Score:', and write the number themselves (greedy, a few tokens). Small models rarely keep
    the format on their own; the result still goes through the strict parser."""
    todo = [i for i, a in enumerate(answers) if a is not None and not has_score_line(a)]
    if not todo:
        return answers
    continued = [
        prompts[i] + [{"role": "assistant", "content": f"{answers[i].rstrip()}\n{SCORE_PREFIX}"}] for i in todo
    ]
    endings = engine.generate(continued, SamplingParams(temperature=0.0, max_new_tokens=3))
    answers = list(answers)
    for i, ending in zip(todo, endings):
        ending = ending or ""
        answers[i] = f"{answers[i].rstrip()}\n{SCORE_PREFIX}{ending.splitlines()[0] if ending.strip() else ''}"
    return answers


def score_distribution(logprobs: dict[str, float], min_mass: float = 0.0) -> dict:
    """Rating, expected score and probabilities from the log-probabilities of " 1" .. " 5".

    The probabilities are renormalised over the five scores; ``score_mass`` is how much of the
    judge's probability they had before that. Below ``min_mass`` the judge wanted to say something
    else and its rating means little: the score is None with ``unparsed_reason: low_choice_mass``."""
    probs = [math.exp(logprobs.get(c, -math.inf)) for c in SCORE_CHOICES]
    mass = sum(probs)
    if mass == 0:
        return {
            "score": None,
            "expected_score": None,
            "score_probs": None,
            "score_mass": 0.0,
            "unparsed_reason": "low_choice_mass",
        }
    probs = [p / mass for p in probs]
    best = max(range(5), key=lambda i: probs[i])
    rated = {
        "score": best + 1,
        "expected_score": round(sum((i + 1) * p for i, p in enumerate(probs)), 4),
        "score_probs": [round(p, 4) for p in probs],
        "score_mass": round(mass, 4),
    }
    if mass < min_mass:
        rated.update(score=None, unparsed_reason="low_choice_mass")
    return rated


def _rate_generate(
    candidates: list[Candidate], engine: Engine, cfg: CurateConfig, template: str, seed_offset: int = 0
):
    prompted: set[int] = set()

    def score_line_please(index: int, text: str) -> str | None:
        """In the same pass (engines that support it): a judge that stopped without a Score line
        is handed 'Score:' to finish, as finish_with_score_line does in a second pass."""
        if has_score_line(text):
            return None
        prompted.add(index)
        return f"\n{SCORE_PREFIX}"

    params = SamplingParams.from_config(
        cfg, seed_offset=seed_offset, follow_up=score_line_please if cfg.finish_score_line else None
    )
    prompts = [rating_prompt(c, template, "generate", cfg.system_prompt) for c in candidates]
    judged = engine.generate(prompts, params)
    check_refusals(engine, judged, cfg, "rating")
    reasons = getattr(engine, "refusal_reasons", {})
    judged = [_end_at_score_line(a) if i in prompted and a is not None else a for i, a in enumerate(judged)]
    finished = finish_with_score_line(prompts, judged, engine) if cfg.finish_score_line else judged
    fields = []
    for i, (first, judge_output) in enumerate(zip(judged, finished)):
        rated = {
            "score": parse_score(judge_output),
            "judge_output": judge_output,
            "score_line_prompted": i in prompted or judge_output != first,
            "refused": judge_output is None,
        }
        if judge_output is None:
            rated["refusal_reason"] = reasons.get(i, "the engine refused the prompt")
        fields.append(rated)
    return fields


def _end_at_score_line(text: str) -> str:
    """A prompted judgement ends with the line its Score is on (it may have written on)."""
    start = text.rfind(SCORE_PREFIX)
    end = text.find("\n", start)
    return text if start < 0 or end < 0 else text[:end]


def _rate_logprob(candidates: list[Candidate], engine: Engine, template: str, cfg: CurateConfig | None = None):
    cfg = cfg or CurateConfig()
    prompts = [rating_prompt(c, template, "logprob", cfg.system_prompt) for c in candidates]
    read = engine.choice_logprobs(prompts, SCORE_CHOICES)
    check_refusals(engine, read, cfg, "rating")
    reasons = getattr(engine, "refusal_reasons", {})
    fields = []
    for i, logprobs in enumerate(read):
        if logprobs is None:  # refused: not an unparsed rating, a prompt the engine did not run
            fields.append(
                {
                    "score": None,
                    "expected_score": None,
                    "score_probs": None,
                    "score_mass": 0.0,
                    "refused": True,
                    "refusal_reason": reasons.get(i, "the engine refused the prompt"),
                }
            )
        else:
            fields.append(score_distribution(logprobs, cfg.min_choice_mass))
    return fields


def _rate_signal(candidates: list[Candidate], engine: Engine, cfg: CurateConfig):
    """A likelihood signal (signals.py) per candidate; no 1..5 score: selected by value (cfg.select)."""
    from .signals import signal_values

    values = signal_values(cfg.mode, candidates, engine, cfg.system_prompt)
    check_refusals(engine, values, cfg, "rating")
    reasons = getattr(engine, "refusal_reasons", {})
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
        fields = _rate_logprob(candidates, engine, template, cfg)
    elif cfg.mode in ("yes", "pmi", "features"):
        fields = _rate_signal(candidates, engine, cfg)
    else:
        fields = _rate_generate(candidates, engine, cfg, template, shard_index)
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


def selection_value(rating: dict) -> float | None:
    """What the value rules rank by: the probe-fitted combination of the likelihood features, else a
    likelihood signal, else the expected score, else the score."""
    for field in ("combined", "signal", "expected_score", "score"):
        if rating.get(field) is not None:
            return float(rating[field])
    return None


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
        generated = _rate_generate(sample, engine, cfg, load_template(cfg.template, "generate"))
        by_logprob = _rate_logprob(sample, engine, load_template(cfg.template, "logprob"), cfg)
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
