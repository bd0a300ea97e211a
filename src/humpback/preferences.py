"""Preference pairs from a model's own answers (Self-Rewarding LMs, Yuan et al. 2024).

For every prompt the policy model samples ``num_answers`` answers under the inference tag; a judge
values each one with curation's rubric (any rating mode that gives a value: the expected score of
the logprob read by default, the generated score averaged over ``judge_samples`` reads, or a
likelihood signal); the best and the worst answer make a chosen/rejected pair. A prompt whose best
and worst answers have the same value, or with fewer than two valued answers, gives no pair: it is
a reject with its reason, counted. The pairs are TRL's conversational preference format (``prompt``
with the tag as the model was trained, ``chosen``, ``rejected``), every answer and value kept, so
``humpback train --kind dpo`` (TRL's DPOTrainer) reads them as they are.

A sharded, resumable stage like the others; the judge is the policy itself unless ``judge_model``
names another (a served 70B judge with ``judge.engine: openai``).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from .config import ExecutorConfig, PreferencesConfig, fields_with
from .engines import Engine, SamplingParams, check_refusals
from .executor import refuse_engine_object
from .outputs import input_fingerprint, stage_input, stage_output
from .records import PreferencePair, Reject
from .scoring import rating_mode
from .shards import EngineShards, reject, run_sharded, stable_id
from .signals import selection_value
from .tags import INFERENCE_TAGS, tagged_prompt

OUTPUT_FIELDS = fields_with(PreferencesConfig, "output")


def preference_shard(
    prompts: list[Mapping[str, Any]],
    shard_index: int,
    engine: Engine,
    cfg: PreferencesConfig,
    policy_model: str,
    judge_model: str,
    judge_engine: Engine | None = None,
) -> tuple[list[PreferencePair], list[Reject], Counter]:
    """One shard: n answers per prompt from ``engine``, valued by ``judge_engine`` (else the same
    engine), the best against the worst."""
    n = cfg.num_answers
    tag = INFERENCE_TAGS[cfg.tag]
    chats = [tagged_prompt(p["instruction"], tag, cfg.tag_placement) for p in prompts]
    done = engine.complete([chat for chat in chats for _ in range(n)], SamplingParams.from_config(cfg, shard_index))
    check_refusals(engine, done, cfg, f"preferences shard {shard_index}")
    judge = judge_engine or engine
    answered = [(i // n, c.text.strip()) for i, c in enumerate(done) if c.text and c.text.strip()]
    values = judge_values([(prompts[p]["instruction"], text) for p, text in answered], judge, cfg, shard_index)
    by_prompt: dict[int, list[dict]] = {}
    for (p, text), reads in zip(answered, values):
        valued = [v for v in reads if v is not None]
        value = statistics.fmean(valued) if valued else None
        by_prompt.setdefault(p, []).append({"text": text, "value": value, "reads": reads})
    pairs: list[PreferencePair] = []
    rejects: list[Reject] = []
    counts: Counter = Counter(prompts=len(prompts), answers=len(answered))
    for p, prompt in enumerate(prompts):
        answers = by_prompt.get(p, [])
        ranked = sorted((a for a in answers if a["value"] is not None), key=lambda a: a["value"])
        source = str(prompt.get("source") or prompt["id"])
        if len(ranked) < 2:
            counts["too_few_valued"] += 1
            why = f"{len(ranked)} of {n} answers written and valued: a pair needs two"
            rejects.append(reject("preferences", source, why, dict(prompt)))
            continue
        worst, best = ranked[0], ranked[-1]
        if best["value"] == worst["value"]:  # nothing to prefer: a tie teaches DPO nothing
            counts["tied"] += 1
            rejects.append(
                reject("preferences", source, f"its best and worst answers are valued the same ({best['value']:.4g})")
            )
            continue
        counts["pairs"] += 1
        pairs.append(
            PreferencePair(
                id=str(prompt["id"]),
                instruction=prompt["instruction"],
                prompt=chats[p],
                chosen=[{"role": "assistant", "content": best["text"]}],
                rejected=[{"role": "assistant", "content": worst["text"]}],
                chosen_value=round(best["value"], 6),
                rejected_value=round(worst["value"], 6),
                answers=answers,
                policy_model=policy_model,
                judge_model=judge_model,
                judge_mode=cfg.judge.mode,
            )
        )
    return pairs, rejects, counts


def judge_values(
    pairs: list[tuple[str, str]], judge: Engine, cfg: PreferencesConfig, shard_index: int = 0
) -> list[list[float | None]]:
    """Per (instruction, answer), the judge's value from each of ``judge_samples`` reads (the
    value a selection rule ranks by: a combination, a likelihood signal, the expected score, the
    score; None where the judge gave none)."""
    if not pairs:
        return []
    mode = rating_mode(cfg.judge.mode)
    template = mode.template(cfg.judge)
    candidates = [{"id": str(i), "instruction": q, "output": a} for i, (q, a) in enumerate(pairs)]
    reads: list[list[float | None]] = [[] for _ in pairs]
    for k in range(cfg.judge_samples):  # another seed per read: a sampling judge reads differently
        rated = mode.rate(candidates, judge, cfg.judge, template, shard_index * cfg.judge_samples + k)
        for i, rating in enumerate(rated):
            reads[i].append(selection_value(rating))
    return reads


class PreferenceWorker(EngineShards):
    """The policy's engine, and the judge's when it is another model, held across a process's shards."""

    def __init__(self, model_path: str, cfg: PreferencesConfig, engine=None, judge_engine=None, **context):
        super().__init__(preference_shard, model_path, cfg, engine, **context)
        self.hold("judge_engine", judge_engine, cfg.judge_model, cfg.judge)

    def engine_config(self, cfg: PreferencesConfig) -> PreferencesConfig:
        # a prompt's n answers decode in one batch: batch_size counts prompts
        return cfg.model_copy(update={"batch_size": cfg.batch_size * cfg.num_answers})


def prompt_rows(rows: Iterable[Mapping[str, Any]]) -> Iterable[dict]:
    """Prompts as the stage reads them: an id (made from the text when missing) and the instruction."""
    for row in rows:
        instruction = row.get("instruction") or row.get("prompt")
        if isinstance(instruction, str) and instruction.strip():
            yield {**row, "instruction": instruction, "id": str(row.get("id") or stable_id("prompt", instruction))}


def preferences(
    prompts: Iterable[Mapping[str, Any]] | Path,
    model: str,
    out_dir: Path,
    cfg: PreferencesConfig | None = None,
    engine: Engine | None = None,
    judge_engine: Engine | None = None,
    executor: ExecutorConfig | None = None,
    recompute: bool = False,
) -> dict:
    """Write ``out_dir/part-*`` preference pairs for the prompts (records with ``instruction`` or
    ``prompt``; a stage folder such as a run's candidates/) from ``model``'s answers. Resumable
    shard by shard; a rerun resumes only what the same prompts, models and settings made."""
    cfg = cfg or PreferencesConfig()
    out_dir = Path(out_dir)
    refuse_engine_object(engine, executor, "preferences")
    refuse_engine_object(judge_engine, executor, "preferences")
    rating_mode(cfg.judge.mode).template(cfg.judge)  # a bad rubric file fails now, before any engine starts
    rows, source = stage_input(prompts)
    judge_name = str(cfg.judge_model or model)
    fields = {
        "prompts": source,
        "model": input_fingerprint(model) if engine is None else "engine object",
        "judge_model": input_fingerprint(judge_name) if judge_engine is None else "engine object",
        "config": cfg.model_dump(mode="json", include=OUTPUT_FIELDS),
    }
    with stage_output(out_dir, "preferences", fields, recompute):
        items: Iterable[dict] = prompt_rows(rows)
        if cfg.max_prompts is not None:
            import itertools

            items = itertools.islice(items, cfg.max_prompts)
        worker = partial(
            PreferenceWorker, model, cfg, engine, judge_engine, policy_model=str(model), judge_model=judge_name
        )
        return run_sharded(items, out_dir, cfg.records_per_shard, worker, desc="preferences", executor=executor)
