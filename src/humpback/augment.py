"""Self-augmentation: the backward model writes instructions for every segment; the best is kept.

The paper samples one instruction per segment. A small backward model often writes one that
does not fit its segment (a poem request for a table, a coding task for an article about coding
mistakes), so with ``num_instructions`` = n it samples n (one prefill of the segment, n decodes),
values each by how much it helps a forward model predict the segment's start (``fit``: pmi under
``fit_model``, by default M_0), and keeps the best. Every (instruction, segment) pair kept is a
candidate; its id is the segment's id; the other instructions stay on it as ``alternatives``.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable
from functools import partial
from pathlib import Path

from .backward import backward_prompt
from .config import AugmentConfig, BackwardConfig, ExecutorConfig, fields_with
from .engines import Engine, SamplingParams, check_refusals
from .executor import refuse_engine_object
from .filters import quoted_answer
from .models import end_of_turn_ids
from .outputs import input_fingerprint, stage_input, stage_output
from .records import Candidate, Reject, Segment
from .shards import EngineShards, reject, run_sharded
from .signals import PMI_TOKENS, answer_span

# The fields that decide what augmentation writes (config.py declares each field's effect).
OUTPUT_FIELDS = fields_with(AugmentConfig, "output")


def augment_shard(
    segments: list[Segment],
    shard_index: int,
    engine: Engine,
    cfg: AugmentConfig,
    system_prompt: str,
    backward_model: str,
    fit_engine: Engine | None = None,
):
    """One shard: n instructions for every segment by the backward model behind ``engine``; the
    one ``fit_engine`` values highest is the candidate (n = 1: the one sampled)."""
    n = cfg.num_instructions
    prompts = [backward_prompt(s["text"], system_prompt) for s in segments for _ in range(n)]
    params = SamplingParams.from_config(cfg, seed_offset=shard_index)
    sampled = engine.complete(prompts, params)
    check_refusals(engine, sampled, cfg, f"augment shard {shard_index}")
    instructions = [c.text for c in sampled]
    reasons = {i: c.refusal for i, c in enumerate(sampled) if c.refusal}
    cut_off = {i for i, c in enumerate(sampled) if c.cut_off}  # instructions that reached max_new_tokens
    candidates: list[Candidate] = []
    rejects: list[Reject] = []
    counts: Counter = Counter()
    options: list[tuple[Segment, list[dict]]] = []  # per segment, its usable instructions
    for s, segment in enumerate(segments):
        usable: list[dict] = []
        why: list[tuple[str, str]] = []
        for i in range(s * n, s * n + n):
            written = instructions[i]
            problem = _instruction_problem(written, segment, cfg, reasons.get(i))
            if problem is not None:
                why.append(problem)
            elif written is not None and written.strip() not in [u["instruction"] for u in usable]:
                usable.append({"instruction": written.strip(), "cut_off": i in cut_off, "sample": i - s * n})
        if not usable:  # every sample failed: the segment is a reject, for its first sample's reason
            kind, text = why[0]
            counts[kind] += 1
            record = (
                {"instruction": (instructions[s * n] or "").strip(), "segment_id": segment["id"]}
                if kind == "quotes_answer"
                else segment
            )
            rejects.append(reject("augment", segment["source"], text, record))
            continue
        counts["instructions_dropped"] += len(why)
        options.append((segment, usable))
    if n > 1 and options:
        assert fit_engine is not None, "AugmentWorker gives best-of-n a fit engine"
        fits = fit_values([(seg["text"], [u["instruction"] for u in usable]) for seg, usable in options], fit_engine)
        for (_, usable), values in zip(options, fits):
            for u, value in zip(usable, values):
                u["fit"] = value
    for segment, usable in options:
        best = max(usable, key=lambda u: -math.inf if u.get("fit") is None else u["fit"]) if n > 1 else usable[0]
        candidate = Candidate(
            id=segment["id"],
            source=segment["source"],
            instruction=best["instruction"],
            output=segment["text"],
            backward_model=backward_model,
        )
        if n > 1:
            candidate["fit"], candidate["sample"] = best.get("fit"), best["sample"]
            candidate["alternatives"] = [
                {"instruction": u["instruction"], "fit": u.get("fit"), "sample": u["sample"]}
                for u in usable
                if u is not best
            ]
        if best["cut_off"]:
            candidate["instruction_cut_off"] = True
            counts["instruction_cut_off"] += 1
        candidates.append(candidate)
    counts["candidates"] = len(candidates)
    return candidates, rejects, counts


def _instruction_problem(
    instruction: str | None, segment: Segment, cfg: AugmentConfig, refusal: str | None
) -> tuple[str, str] | None:
    """(counter, reason) when a sampled instruction cannot make a candidate, else None."""
    if instruction is None:
        return "refused", refusal or "the engine refused the prompt"
    if not instruction.strip():
        return "empty_instruction", "backward model wrote an empty instruction"
    quoted = quoted_answer(instruction, segment["text"], cfg.max_quoted_words)
    if quoted:  # the pair would teach copying the answer out of the instruction
        return "quotes_answer", f'the instruction quotes its answer: "{quoted}"'
    return None


def fit_values(items: list[tuple[str, list[str]]], engine: Engine) -> list[list[float | None]]:
    """For each (segment, instructions): each instruction's fit, the pmi of the segment's first
    PMI_TOKENS tokens after it (mean log-probability per token, minus after an empty instruction,
    read once per segment). None where the engine refused a read."""
    tokenizer = engine.tokenizer
    stops = set(end_of_turn_ids(tokenizer))
    reads, where = [], []
    for text, instructions in items:
        for instruction in ["", *instructions]:
            full, start, _ = answer_span(tokenizer, [{"role": "user", "content": instruction}], text, stops)
            reads.append((full[: start + PMI_TOKENS], start))
        where.append(len(reads) - len(instructions) - 1)
    values = engine.token_logprobs(reads)
    out = []
    for (_, instructions), first in zip(items, where):
        without = values[first]
        row = []
        for j in range(len(instructions)):
            with_it = values[first + 1 + j]
            shared = min(len(with_it or []), len(without or []))
            row.append(
                None if not shared else round(sum(with_it[:shared]) / shared - sum(without[:shared]) / shared, 6)
            )
        out.append(row)
    return out


class AugmentWorker(EngineShards):
    """The backward model's engine, and with n > 1 the fit model's, held across a process's shards."""

    def __init__(
        self,
        model_path: str,
        cfg: AugmentConfig,
        engine: Engine | None = None,
        fit_engine: Engine | None = None,
        **context,
    ):
        super().__init__(augment_shard, model_path, cfg, engine, **context)
        fit_model = cfg.fit_model if cfg.num_instructions > 1 else None
        self.hold("fit_engine", fit_engine, fit_model, cfg.model_copy(update={"batch_size": cfg.fit_batch_size}))

    def engine_config(self, cfg: AugmentConfig) -> AugmentConfig:
        # A decoding step on a small batch costs about the same whatever its rows (it reads all the
        # weights once), so batch_size counts segments: their n samples decode in the same batch.
        return cfg.model_copy(update={"batch_size": cfg.batch_size * cfg.num_instructions})


def augment(
    segments: Iterable[Segment] | Path,
    backward_model: str,
    out_dir: Path,
    cfg: AugmentConfig | None = None,
    system_prompt: str | None = None,
    engine: Engine | None = None,
    executor: ExecutorConfig | None = None,
    recompute: bool = False,
    fit_engine: Engine | None = None,
) -> dict:
    """Write ``out_dir/part-*`` candidates; segments is an iterable or a segments directory.
    ``executor`` runs the shards on Ray (then ``engine`` cannot be given: each actor loads its own).
    With ``cfg.num_instructions`` > 1 the fit is read by ``fit_engine`` or, when not given, by an
    engine on ``cfg.fit_model``. A rerun resumes only what the same segments, models and settings
    made (see outputs.py)."""
    cfg = cfg or AugmentConfig()
    system_prompt = system_prompt or BackwardConfig().system_prompt
    out_dir = Path(out_dir)
    refuse_engine_object(engine, executor, "augment")
    refuse_engine_object(fit_engine, executor, "augment")
    if cfg.num_instructions > 1 and fit_engine is None and cfg.fit_model is None:
        raise ValueError(
            f"augment.num_instructions={cfg.num_instructions} values each instruction's fit with a "
            f"forward model: give augment.fit_model (--fit-model: the base model or M_0), or "
            f"--num-instructions 1"
        )
    segments, source = stage_input(segments)
    fit_model = None
    if cfg.num_instructions > 1:
        fit_model = "engine object" if fit_engine is not None else input_fingerprint(str(cfg.fit_model))
    fields = {
        "segments": source,
        "backward_model": input_fingerprint(backward_model) if engine is None else None,
        "system_prompt": system_prompt,
        "config": cfg.model_dump(mode="json", include=OUTPUT_FIELDS),
        "fit_model": fit_model,
    }
    with stage_output(out_dir, "candidates", fields, recompute):
        if cfg.max_segments is not None:
            segments = itertools.islice(segments, cfg.max_segments)
        worker = partial(
            AugmentWorker,
            backward_model,
            cfg,
            engine,
            fit_engine,
            system_prompt=system_prompt,
            backward_model=str(backward_model),
        )
        return run_sharded(segments, out_dir, cfg.records_per_shard, worker, desc="augment", executor=executor)
