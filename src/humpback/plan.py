"""``humpback plan``: each stage's tokens, time and cost, estimated before anything runs.

What it counts is what a run's accounting (stats.json ``accounting``) counts, stage by stage:
prompts, prompt tokens, generated tokens, tokens read without generating, and for training the
tokens trained. The counts come from the inputs themselves: the corpus is counted (or its size
given) and a sample of its documents segmented with the run's filters, giving segments per
document and their length in the model's tokens; the seed gives the length of instructions and
answers; the rubric, the backward prompt and the paper's step table give the rest. Time is tokens
over a throughput per stage: measured by a finished run's accounting on your hardware
(``--from-run``), or given (``--throughput FILE``); cost is the run's prices. What it cannot know
before a run (how many candidates are selected, how long the judge reasons) is an assumption the
plan names.
"""

from __future__ import annotations

import itertools
import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .config import RunConfig
from .records import SeedPair, Segment

# The share of candidates the paper's curation kept: A_5 of iteration 2, 41.8k of 502k (Table 2).
PAPER_SELECTED_SHARE = 41_821 / 502_133
JUDGE_WORDS = 60  # what a generate-mode judge writes before its Score line, when no run measured it


@dataclass
class StagePlan:
    """One stage's estimate: what the run's accounting would count, and the time and cost it implies."""

    stage: str
    prompts: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    read_tokens: int = 0
    trained_tokens: int = 0
    tokens_per_second: float | None = None
    seconds: float | None = None
    cost: float | None = None
    assumes: list[str] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.generated_tokens + self.read_tokens + self.trained_tokens


def _mean(xs: list[int]) -> float:
    return statistics.fmean(xs) if xs else 0.0


def corpus_sample(config: RunConfig, sample: int, documents: int | None) -> dict:
    """Segment the first ``sample`` documents with the run's filters: segments per document and
    their lengths; the corpus's document count (counted unless given)."""
    from .corpus import Document, read_corpus
    from .segment import segment_documents

    def docs():
        return read_corpus(
            str(config.corpus),
            config.segment.text_field,
            config.segment.max_document_chars,
            config.segment.url_field,
            config.segment.id_field,
        )

    head = list(itertools.islice((d for d in docs() if isinstance(d, Document)), sample))
    kept, _, _ = segment_documents(list(head), config.segment)
    total = documents if documents is not None else sum(1 for d in docs() if isinstance(d, Document))
    return {
        "documents": total,
        "sampled_documents": len(head),
        "segments_per_document": len(kept) / len(head) if head else 0.0,
        "segment_texts": [s["text"] for s in kept],
        "counted": documents is None,
    }


def measure_throughput(
    config: RunConfig, texts: list[str], seed: list[SeedPair], items: int = 8, steps: int = 3
) -> dict:
    """A short measured sample on this machine, with the run's engines and base model: tokens per
    second of augmentation (the augment stage over ``items`` segments, n instructions each and their
    fit reads; the base model stands in for the backward model and M_0, the same size), of rating
    (``items`` candidates, segments under seed instructions, in the run's mode), and of training
    (``steps`` optimizer steps on the seed, from the base). Engine loads are left out; the first
    calls of rating and training are included, so a sample this short errs slow there."""
    import tempfile

    from .augment import augment
    from .backward import backward_prompt
    from .engines import SamplingParams, make_engine
    from .engines.metered import Metered
    from .models import check_model
    from .scoring import rating_mode
    from .shards import stage_usage
    from .train import train_forward

    base = check_model(config.model)
    sample = texts[:items] or [seed[i % len(seed)]["output"] for i in range(items)]
    rates: dict[str, float] = {}
    # augmentation: the stage itself (n samples per segment and, with n > 1, the fit reads), the base
    # model standing in for the backward model and M_0, after one short warm-up call, so the first
    # call's one-off costs do not count against a sample this short
    engine = make_engine(base, config.augment)
    try:
        engine.complete([backward_prompt(sample[0], config.backward.system_prompt)], SamplingParams(max_new_tokens=1))
        with tempfile.TemporaryDirectory(prefix="humpback-plan-") as tmp:
            segments = [Segment(id=f"plan-{i}", source="plan", header="", text=t) for i, t in enumerate(sample)]
            # the base writes as long as the seed's instructions, as the plan assumes the backward
            # model will: a base that rambles to max_new_tokens would time a decode-heavy mix
            seed_tokens = _mean([len(engine.tokenizer(p["instruction"])["input_ids"]) for p in seed[:64]])
            cap = min(config.augment.max_new_tokens, max(4, round(seed_tokens)))
            augment_cfg = config.augment.model_copy(
                update={"records_per_shard": max(1, len(segments)), "max_new_tokens": cap}
            )
            augmented = Path(tmp) / "candidates"
            augment(
                segments, base, augmented, augment_cfg, config.backward.system_prompt, engine=engine, fit_engine=engine
            )
            usage = stage_usage(augmented) or {}
        if usage.get("seconds"):
            tokens = sum(usage.get(k, 0) for k in ("prompt_tokens", "generated_tokens", "read_tokens"))
            rates["augment"] = tokens / usage["seconds"]
    finally:
        engine.close()
    engine = Metered(make_engine(base, config.curate))
    try:
        mode = rating_mode(config.curate.mode)
        candidates = [
            {"id": str(i), "source": "plan", "instruction": seed[i % len(seed)]["instruction"], "output": t}
            for i, t in enumerate(sample)
        ]
        mode.rate(candidates, engine, config.curate, mode.template(config.curate))
        rates["curate"] = engine.usage.tokens / engine.usage.seconds
        if engine.usage.generated_tokens:
            rates["judge_generated_per_prompt"] = engine.usage.generated_tokens / len(candidates)
    finally:
        engine.close()
    with tempfile.TemporaryDirectory(prefix="humpback-plan-") as tmp:
        cfg = config.forward.model_copy(update={"max_steps": steps, "num_epochs": None})
        info = train_forward(seed, [], base, Path(tmp) / "model", cfg)
        if info.get("tokens_trained") and info.get("train_seconds"):
            rates["train"] = info["tokens_trained"] / info["train_seconds"]
    return rates


def throughput_from_run(run: Path) -> dict[str, float]:
    """Tokens per second by stage kind (augment, curate, train, preferences) from a finished run's
    accounting: the measured throughput of this hardware, engine and model."""
    stats = json.loads((Path(run) / "stats.json").read_text(encoding="utf-8"))
    rates: dict[str, list[float]] = {}
    for name, row in (stats.get("accounting") or {}).items():
        kind = name.split()[0]
        if row.get("tokens_per_second"):
            rates.setdefault(kind, []).append(float(row["tokens_per_second"]))
        if kind == "segment" and row.get("seconds"):
            docs = (stats.get("segment_funnel") or {}).get("documents")
            if docs:
                rates.setdefault("segment_documents", []).append(docs / row["seconds"])
    # what a generate-mode judge wrote per candidate (a likelihood mode writes nothing: not a measure of it)
    rows = [
        r
        for n, r in (stats.get("accounting") or {}).items()
        if n.startswith("curate") and r.get("prompts") and r.get("generated_tokens")
    ]
    if rows:
        rates["judge_generated_per_prompt"] = [_mean([r["generated_tokens"] / r["prompts"] for r in rows])]
    return {kind: statistics.fmean(values) for kind, values in rates.items()}


def plan(
    config: RunConfig,
    sample: int = 200,
    documents: int | None = None,
    throughput: dict[str, float] | None = None,
    selected_share: float = PAPER_SELECTED_SHARE,
    seed: list[SeedPair] | None = None,
    measure: bool = False,
    segments: int | None = None,
) -> dict:
    """Every stage's estimate for ``config`` (see the module's docstring). With ``measure``, the
    throughput is first measured here (``measure_throughput``, and the segmentation of the sample);
    rates in ``throughput`` take precedence over measured ones. ``segments``, when given, is the
    number of segments the run will augment (the corpus sample then gives only their length)."""
    from .backward import backward_prompt
    from .engines import encode_chat
    from .models import check_model, load_tokenizer
    from .rubric import rating_prompt
    from .scoring import rating_mode
    from .seed import load_seed
    from .signals import PMI_TOKENS
    from .tags import SEED_TAG
    from .trainer import paper_batch_size, paper_steps

    throughput = throughput or {}
    base = check_model(config.model)
    tokenizer = load_tokenizer(base, chat_template=config.chat_template)
    if seed is None:
        seed, _ = load_seed(config.seed, config.max_seed_examples)
    started = time.perf_counter()
    corpus = corpus_sample(config, sample, documents)
    if measure:
        measured = measure_throughput(config, corpus["segment_texts"], seed)
        if corpus["sampled_documents"]:
            measured["segment_documents"] = corpus["sampled_documents"] / (time.perf_counter() - started)
        throughput = {**measured, **throughput}

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    texts = corpus["segment_texts"]
    segment_tokens = _mean([count(t) for t in texts])
    instruction_tokens = _mean([count(p["instruction"]) for p in seed])
    output_tokens = _mean([count(p["output"]) for p in seed])
    segments_given = segments
    if segments is None:
        segments = round(corpus["documents"] * corpus["segments_per_document"])
    if config.augment.max_segments is not None:  # augment reads only the first ones (a demo's budget)
        segments = min(segments, config.augment.max_segments)
    stages: list[StagePlan] = []
    scale = (
        f"segments: {corpus['segments_per_document']:.2f} per document in the first "
        f"{corpus['sampled_documents']} documents, before deduplication"
        if segments_given is None
        else f"segments: {segments_given} given; their length from the first {corpus['sampled_documents']} documents"
    )

    # augment: n prompts per segment (the whole segment), an instruction each; with n > 1 the fit reads
    n = config.augment.num_instructions
    overhead = len(encode_chat(tokenizer, backward_prompt("", config.backward.system_prompt)))
    augment = StagePlan(
        "augment",
        prompts=segments * n,
        prompt_tokens=round(segments * n * (segment_tokens + overhead)),
        generated_tokens=round(segments * n * instruction_tokens),
        assumes=[scale, "instructions as long as the seed's"],
    )
    if n > 1:  # the segment's start read after each instruction and after none (augment.fit_values)
        augment.read_tokens = round(segments * (n + 1) * (min(segment_tokens, 64) + instruction_tokens + overhead))
    stages.append(augment)

    # curate: each iteration's judge reads every candidate once (the rubric) or its likelihoods
    mode = config.curate.mode
    rubric = rating_mode(mode).template(config.curate)
    per_candidate = instruction_tokens + segment_tokens
    if rubric:
        empty = {"instruction": "", "output": ""}
        per_candidate += len(encode_chat(tokenizer, rating_prompt(empty, rubric, mode, config.curate.system_prompt)))
    judged = throughput.get("judge_generated_per_prompt", float(JUDGE_WORDS))
    for i in range(1, config.iterations + 1):
        row = StagePlan(f"curate iter{i}", prompts=segments)
        if mode == "generate":
            row.prompt_tokens, row.generated_tokens = round(segments * per_candidate), round(segments * judged)
            row.assumes.append(f"the judge writes {judged:.0f} tokens per candidate")
        elif mode in ("logprob", "yes"):
            row.read_tokens = round(segments * per_candidate)
        else:  # pmi, features (signals.py): the whole answer after its instruction, its first PMI_TOKENS after none
            turn = len(encode_chat(tokenizer, [{"role": "user", "content": ""}]))
            row.read_tokens = round(segments * (per_candidate + 2 * turn + min(segment_tokens, PMI_TOKENS)))
        stages.append(row)

    # training: the paper's schedule over seed (+ the selected share of the candidates)
    held_out = min(config.probe_max_pairs, max(config.probe_min_pairs, round(config.probe_share * len(seed))))
    trained_seed = len(seed) - (held_out if config.probe_share > 0 else 0)

    def chat_overhead(system: str) -> int:  # what the chat template adds around a trained pair
        return len(encode_chat(tokenizer, [{"role": "system", "content": system}, {"role": "user", "content": ""}]))

    pair = instruction_tokens + output_tokens
    backward_pair = pair + chat_overhead(config.backward.system_prompt)
    forward_pair = pair + chat_overhead(SEED_TAG if config.forward.tag_placement == "system" else "")
    for name, examples, length in [
        ("train backward", trained_seed, backward_pair),
        ("train m0", trained_seed, forward_pair),
    ] + [
        (f"train m{i}", trained_seed + round(selected_share * segments), forward_pair)
        for i in range(1, config.iterations + 1)
    ]:
        cfg = config.backward if name == "train backward" else config.forward
        batch = cfg.batch_size or paper_batch_size(examples)
        steps = cfg.max_steps or paper_steps(examples)
        if cfg.num_epochs:
            steps = round(cfg.num_epochs * examples / batch)
        row = StagePlan(name, prompts=examples, trained_tokens=round(steps * batch * min(length, cfg.max_length)))
        if name.startswith("train m") and name != "train m0":
            row.assumes.append(f"{selected_share:.1%} of candidates selected")
        stages.append(row)

    for row in stages:
        kind = row.stage.split()[0]
        rate = throughput.get(kind)
        if rate:
            row.tokens_per_second = round(rate, 1)
            row.seconds = round(row.tokens / rate, 1)
        if config.price_per_million_tokens is not None and kind != "train":
            row.cost = round(row.tokens / 1e6 * config.price_per_million_tokens, 2)
        if config.price_per_hour is not None and row.seconds is not None:
            row.cost = round((row.cost or 0.0) + row.seconds / 3600 * config.price_per_hour, 2)
    segment_rate = throughput.get("segment_documents")
    total_seconds = [r.seconds for r in stages]
    return {
        "model": str(config.model),
        "corpus": str(config.corpus),
        "documents": corpus["documents"],
        "documents_counted": corpus["counted"],
        "segments": segments,
        "segment_seconds": round(corpus["documents"] / segment_rate, 1) if segment_rate else None,
        "mean_tokens": {
            "segment": round(segment_tokens, 1),
            "instruction": round(instruction_tokens, 1),
            "output": round(output_tokens, 1),
        },
        "stages": [{**asdict(r), "tokens": r.tokens} for r in stages],
        "total_tokens": sum(r.tokens for r in stages),
        "total_seconds": round(sum(s for s in total_seconds if s), 1) if all(total_seconds) else None,
        "total_cost": round(sum(r.cost or 0.0 for r in stages), 2)
        if config.price_per_million_tokens is not None or config.price_per_hour is not None
        else None,
        "throughput": throughput,
    }


def plan_lines(result: dict) -> list[str]:
    """The plan as a table, one line per stage, and what it assumed."""

    def n(x: float | None) -> str:
        if x is None:
            return "-"
        return (
            f"{x / 1e9:.2f}B"
            if x >= 1e9
            else f"{x / 1e6:.1f}M"
            if x >= 1e6
            else f"{x / 1e3:.1f}k"
            if x >= 1e4
            else f"{x:.0f}"
        )

    def t(seconds: float | None) -> str:
        if seconds is None:
            return "-"
        return (
            f"{seconds / 3600:.1f} h"
            if seconds >= 3600
            else f"{seconds / 60:.1f} min"
            if seconds >= 60
            else f"{seconds:.0f} s"
        )

    def cost(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    header = ("stage", "prompts", "prompt tok", "generated", "read", "trained", "tok/s", "time", "cost")
    lines = [
        f"{n(result['documents'])} documents ({'counted' if result['documents_counted'] else 'given'}) -> "
        f"~{n(result['segments'])} segments; mean tokens: segment {result['mean_tokens']['segment']}, "
        f"instruction {result['mean_tokens']['instruction']}, answer {result['mean_tokens']['output']}",
        "{:<15} {:>9} {:>11} {:>10} {:>10} {:>10} {:>8} {:>9} {:>8}".format(*header),
    ]
    for r in result["stages"]:
        lines.append(
            f"{r['stage']:<15} {n(r['prompts']):>9} {n(r['prompt_tokens']):>11} {n(r['generated_tokens']):>10} "
            f"{n(r['read_tokens']):>10} {n(r['trained_tokens']):>10} {n(r['tokens_per_second']):>8} "
            f"{t(r['seconds']):>9} {cost(r['cost']):>8}"
        )
    lines.append(
        f"total: {n(result['total_tokens'])} tokens, {t(result['total_seconds'])}"
        + (f", cost {result['total_cost']:.2f}" if result["total_cost"] is not None else "")
        + (f"; segmenting {t(result['segment_seconds'])}" if result["segment_seconds"] else "")
    )
    assumed = sorted({a for r in result["stages"] for a in r["assumes"]})
    lines += [f"assumed: {a}" for a in assumed]
    if not result["throughput"]:
        lines.append(
            "no throughput given: --from-run RUN (a finished run on this hardware) or --throughput FILE for times"
        )
    return lines
