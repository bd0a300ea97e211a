"""Self-augmentation: the backward model writes one instruction for every segment.

Every (instruction, segment) pair is a candidate; its id is the segment's id.
"""

from __future__ import annotations

import itertools
from functools import partial
from collections import Counter
from pathlib import Path
from typing import Iterable

from .backward import backward_prompt
from .config import AugmentConfig, BackwardConfig, ExecutorConfig
from .engines import Engine, SamplingParams, check_refusals
from .executor import refuse_engine_object
from .filters import quoted_answer
from .outputs import input_fingerprint, stage_input, stage_output
from .records import Candidate, Segment
from .shards import EngineShards, reject, run_sharded

# The fields that decide what augmentation writes (the others: how fast, where).
OUTPUT_FIELDS = {"engine", "dtype", "served_model", "temperature", "top_p", "max_new_tokens", "records_per_shard",
                 "max_segments", "random_seed", "chat_template", "continue_with", "max_quoted_words"}


def augment_shard(segments: list[Segment], shard_index: int, engine: Engine, cfg: AugmentConfig,
                  system_prompt: str, backward_model: str):
    """One shard: an instruction for every segment, by the backward model behind ``engine``."""
    prompts = [backward_prompt(s["text"], system_prompt) for s in segments]
    params = SamplingParams.from_config(cfg, seed_offset=shard_index)
    instructions = engine.generate(prompts, params)
    check_refusals(engine, instructions, cfg, f"augment shard {shard_index}")
    reasons = getattr(engine, "refusal_reasons", {})
    cut_off = getattr(engine, "cut_off", set())  # instructions that reached max_new_tokens
    candidates, rejects, counts = [], [], Counter()
    for i, (segment, instruction) in enumerate(zip(segments, instructions)):
        if instruction is None:
            rejects.append(reject("augment", segment["source"], reasons.get(i, "the engine refused the prompt"), segment))
            counts["refused"] += 1
            continue
        if not instruction.strip():
            rejects.append(reject("augment", segment["source"], "backward model wrote an empty instruction", segment))
            counts["empty_instruction"] += 1
            continue
        quoted = quoted_answer(instruction, segment["text"], cfg.max_quoted_words)
        if quoted:  # the pair would teach copying the answer out of the instruction
            rejects.append(reject("augment", segment["source"], f"the instruction quotes its answer: \"{quoted}\"",
                                  {"instruction": instruction.strip(), "segment_id": segment["id"]}))
            counts["quotes_answer"] += 1
            continue
        candidate = Candidate(id=segment["id"], source=segment["source"], instruction=instruction.strip(),
                              output=segment["text"], backward_model=backward_model)
        if i in cut_off:
            candidate["instruction_cut_off"] = True
            counts["instruction_cut_off"] += 1
        candidates.append(candidate)
    counts["candidates"] = len(candidates)
    return candidates, rejects, counts


def augment(segments: Iterable[dict] | Path, backward_model: str, out_dir: Path,
            cfg: AugmentConfig | None = None, system_prompt: str | None = None,
            engine: Engine | None = None, executor: ExecutorConfig | None = None, recompute: bool = False) -> dict:
    """Write ``out_dir/part-*`` candidates; segments is an iterable or a segments directory.
    ``executor`` runs the shards on Ray (then ``engine`` cannot be given: each actor loads its own).
    A rerun resumes only what the same segments, model and settings made (see outputs.py)."""
    cfg = cfg or AugmentConfig()
    system_prompt = system_prompt or BackwardConfig().system_prompt
    out_dir = Path(out_dir)
    refuse_engine_object(engine, executor, "augment")
    segments, source = stage_input(segments)
    fields = {"segments": source, "backward_model": input_fingerprint(backward_model) if engine is None else None,
              "system_prompt": system_prompt, "config": cfg.model_dump(mode="json", include=OUTPUT_FIELDS)}
    with stage_output(out_dir, "candidates", fields, recompute):
        if cfg.max_segments is not None:
            segments = itertools.islice(segments, cfg.max_segments)
        worker = partial(EngineShards, augment_shard, backward_model, cfg, engine, system_prompt=system_prompt,
                         backward_model=str(backward_model))
        return run_sharded(segments, out_dir, cfg.records_per_shard, worker, desc="augment", executor=executor)
