"""Answers rewritten from their web text (Back-and-forth translation, Nguyen et al. 2024).

Backtranslation keeps the web segment as the answer, with the page's framing: a blog's asides, a
shop's calls to action, a wiki's table syntax. After curation a rewriter model (the run's own M_i,
or a served aligned model) writes an assistant's answer to each curated instruction from the
original text, told to keep its facts and drop the framing. A faithfulness gate keeps a rewrite
only when it stays on the original's content: the share of its content words found in the
original (or the instruction) must reach ``min_overlap``; otherwise, and when the rewriter wrote
nothing usable, the original answer is kept and the row says why. Every row keeps both texts
(``output``: the answer training uses, ``original_output``, ``rewrite``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from .config import ExecutorConfig, RewriteConfig, fields_with
from .engines import Engine, SamplingParams, check_refusals
from .executor import refuse_engine_object
from .outputs import input_fingerprint, stage_input, stage_output
from .records import Reject
from .shards import EngineShards, run_sharded

OUTPUT_FIELDS = fields_with(RewriteConfig, "output")

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
# Words that carry no content of their own: a rewrite may add them freely.
STOPWORDS = frozenset(
    """a about above after again all also am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just let me more
    most my myself no nor not now of off on once only or other our ours ourselves out over own same she
    should so some such than that the their theirs them themselves then there these they this those
    through to too under until up very was we were what when where which while who whom why will with
    would you your yours yourself yourselves one two use used using make made many much may might must
    get got like well way need needs first next new also however therefore here's it's you're don't""".split()
)


def content_words(text: str) -> list[str]:
    """The words of a text that carry content: lowercased, stopwords and one-letter words left out
    (numbers kept: a changed number is a changed fact)."""
    return [w for w in (m.group(0).lower() for m in _WORD.finditer(text)) if w not in STOPWORDS and len(w) > 1]


def overlap(rewrite: str, original: str, instruction: str = "") -> float | None:
    """The share of the rewrite's content words that the original (or the instruction) has, by
    word and by a shared 5-letter stem (``brewing`` in the rewrite is found by ``brew`` ... ``brewed``);
    None for a rewrite with no content words."""
    words = content_words(rewrite)
    if not words:
        return None
    known = set(content_words(original + " " + instruction))
    stems = {w[:5] for w in known if len(w) >= 5}
    found = sum(w in known or (len(w) >= 5 and w[:5] in stems) for w in words)
    return round(found / len(words), 4)


def rewrite_prompt(instruction: str, original: str, cfg: RewriteConfig) -> list[dict]:
    """The rewriter's prompt: the instruction stays whole and first; the original text follows."""
    user = cfg.prompt.format(instruction=instruction.strip(), original=original.strip())
    if instruction.strip() not in user:  # a user's prompt that lost the instruction would rewrite blind
        raise ValueError("rewrite.prompt must contain {instruction} and {original}")
    return ([{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []) + [
        {"role": "user", "content": user}
    ]


def rewrite_shard(
    pairs: list[Mapping[str, Any]], shard_index: int, engine: Engine, cfg: RewriteConfig, rewriter_model: str
) -> tuple[list[dict], list[Reject], Counter]:
    """One shard: a rewrite for every pair, gated; the row's ``output`` is the rewrite when it passed."""
    prompts = [rewrite_prompt(p["instruction"], p["output"], cfg) for p in pairs]
    done = engine.complete(prompts, SamplingParams.from_config(cfg, shard_index))
    check_refusals(engine, done, cfg, f"rewrite shard {shard_index}")
    rows: list[dict] = []
    counts: Counter = Counter()
    for pair, written in zip(pairs, done):
        text = (written.text or "").strip()
        share = overlap(text, pair["output"], pair["instruction"]) if text else None
        if written.text is None:
            why = f"the rewriter refused it ({written.refusal or 'no reason given'})"
        elif not text:
            why = "the rewriter wrote nothing"
        elif written.cut_off:
            why = f"the rewrite was cut off at max_new_tokens={cfg.max_new_tokens}"
        elif len(text) < cfg.min_length_ratio * len(pair["output"]):
            why = f"the rewrite keeps under {cfg.min_length_ratio:.0%} of the original's length"
        elif share is None or share < cfg.min_overlap:
            why = (
                f"the rewrite says what the original does not ({share or 0:.0%} of its content words "
                f"are the original's; min_overlap {cfg.min_overlap:.0%})"
            )
        else:
            why = None
        counts[
            "rewritten" if why is None else ("gate_rejected" if share is not None and text else "not_rewritten")
        ] += 1
        rows.append(
            {
                **pair,
                "output": text if why is None else pair["output"],
                "original_output": pair["output"],
                "rewrite": text or None,
                "rewritten": why is None,
                "rewrite_overlap": share,
                "kept_original_because": why,
                "rewriter_model": rewriter_model,
            }
        )
    return rows, [], counts


def rewrite(
    pairs: Iterable[Mapping[str, Any]] | Path,
    rewriter_model: str,
    out_dir: Path,
    cfg: RewriteConfig | None = None,
    engine: Engine | None = None,
    executor: ExecutorConfig | None = None,
    recompute: bool = False,
) -> dict:
    """Write ``out_dir/part-*``: every pair (a curated/ folder, or records with ``instruction`` and
    ``output``) with its answer rewritten by ``rewriter_model`` where the gate lets it through.
    Resumable shard by shard, like every stage."""
    cfg = cfg or RewriteConfig()
    out_dir = Path(out_dir)
    refuse_engine_object(engine, executor, "rewrite")
    rewrite_prompt("x", "y", cfg)  # a prompt without its fields fails now, before any engine starts
    rows, source = stage_input(pairs)
    fields = {
        "pairs": source,
        "rewriter_model": input_fingerprint(rewriter_model) if engine is None else "engine object",
        "config": cfg.model_dump(mode="json", include=OUTPUT_FIELDS),
    }
    with stage_output(out_dir, "rewritten", fields, recompute):
        worker = partial(EngineShards, rewrite_shard, rewriter_model, cfg, engine, rewriter_model=str(rewriter_model))
        return run_sharded(rows, out_dir, cfg.records_per_shard, worker, desc="rewrite", executor=executor)
