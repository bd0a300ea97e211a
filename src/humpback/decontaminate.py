"""Decontamination: no training pair may contain a prompt of the sets the model is evaluated on.

The seed may be oasst1, whose prompts overlap AlpacaEval's, and web text quotes benchmarks. A
training pair (seed or curated, instruction and output) is removed when it shares a run of
``n`` consecutive words with a benchmark prompt (13 by default, the n-gram length GPT-3's and
later contamination studies used) or when its instruction IS a benchmark prompt (exact match
after lower-casing and dropping punctuation, which also catches prompts shorter than n words).

One index of the benchmark's n-grams (a dict from the n-gram to the item), then one pass over
the training pairs: linear in both, no pairwise comparison (bench/decontaminate.py: a million
pairs).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from .files import safe_name
from .filters import words
from .records import Reject

DEFAULT_N = 13


class BenchmarkIndex:
    """The n-grams and normalised prompts of one or more prompt sets, each pointing at its item."""

    def __init__(self, items: Iterable[dict], n: int = DEFAULT_N):
        self.n = n
        self.items: list[dict] = []
        self.grams: dict[tuple[str, ...], int] = {}
        self.exact: dict[str, int] = {}
        for item in items:
            index = len(self.items)
            self.items.append(item)
            said = words(item["instruction"])
            if said:
                self.exact.setdefault(" ".join(said), index)
            for i in range(len(said) - n + 1):
                self.grams.setdefault(tuple(said[i : i + n]), index)

    def match(self, instruction: str, output: str) -> dict | None:
        """What a pair shares with the benchmark (the first match), or None."""
        said = words(instruction)
        if said and " ".join(said) in self.exact:
            return {"how": "exact_instruction", "text": instruction, "item": self.items[self.exact[" ".join(said)]]}
        grams, n = self.grams, self.n
        for field, text in (("instruction", said), ("output", words(output))):
            for i in range(len(text) - n + 1):
                hit = grams.get(tuple(text[i : i + n]))
                if hit is not None:
                    return {
                        "how": f"{self.n}-gram in {field}",
                        "text": " ".join(text[i : i + self.n]),
                        "item": self.items[hit],
                    }
        return None


def load_benchmarks(paths: Iterable[Path]) -> list[dict]:
    """Every prompt of the given sets (AlpacaEval JSON, JSONL/JSON of instructions, plain text),
    each tagged with the file it came from."""
    from .evaluate import load_prompt_set

    items: list[dict] = []
    for path in paths:
        prompts, _ = load_prompt_set(Path(path))
        if not prompts:  # checking against nothing would report a clean set: false assurance
            raise ValueError(
                f"prompt set {safe_name(path)} yields no prompts (give a JSON list of prompts or of records "
                f"with 'instruction'/'prompt', JSONL of such records, or a text file with one per line)"
            )
        items.extend(
            {"benchmark": str(path), "id": p.get("id") or f"prompt {i}", "instruction": p["instruction"]}
            for i, p in enumerate(prompts, 1)
        )
    return items


def decontaminate(
    pairs: list[dict], index: BenchmarkIndex, stage: str = "decontaminate"
) -> tuple[list[dict], list[Reject], Counter]:
    """(kept pairs, rejects naming the matching text and the benchmark item, counters)."""
    from .shards import reject

    kept: list[dict] = []
    rejects: list[Reject] = []
    counts: Counter[str] = Counter()
    for pair in pairs:
        found = index.match(pair["instruction"], pair["output"])
        if found is None:
            kept.append(pair)
            continue
        counts[f"contaminated_{found['how'].split()[0].replace('-gram', '_gram')}"] += 1
        item = found["item"]
        rejects.append(
            reject(
                stage,
                str(pair.get("source") or pair.get("id")),
                f'overlaps {item["benchmark"]} item {item.get("id")!r} ({found["how"]}: "{found["text"]}")',
                pair,
            )
        )
    counts["kept"] = len(kept)
    counts["removed"] = len(rejects)
    return kept, rejects, counts


def message_text(content: object) -> str | None:
    """A chat message's text: a string, or the OpenAI multi-part form (a list of parts, whose
    ``{"type": "text", "text": ...}`` parts are joined); None for anything else."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [part.get("text") if isinstance(part, dict) else part for part in content]
        texts = [t for t in parts if isinstance(t, str)]
        return "\n".join(texts) if texts else None
    return None


def pair_of(row: dict) -> dict | None:
    """(instruction, output) of a training row: seed shape, or a chat (the last user and assistant turns)."""
    if isinstance(row.get("instruction"), str) and isinstance(row.get("output"), str):
        return {"instruction": row["instruction"], "output": row["output"]}
    messages = row.get("messages")
    if isinstance(messages, list):
        user = [message_text(m.get("content")) for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        reply = [
            message_text(m.get("content")) for m in messages if isinstance(m, dict) and m.get("role") == "assistant"
        ]
        if user and reply and user[-1] is not None and reply[-1] is not None:
            return {"instruction": user[-1], "output": reply[-1]}
    return None


def decontaminate_file(data: Path, against: list[Path], out: Path, n: int = DEFAULT_N) -> dict:
    """`humpback decontaminate`: the rows of ``data`` (JSONL, seed or chat shape) that overlap no
    prompt of ``against`` go to OUT/clean.jsonl as they were; the others, and lines that are not a
    pair, to OUT/rejects.jsonl with why; OUT/summary.json counts them."""
    import time

    from .files import BadLine, jsonl_lines, write_json, write_jsonl
    from .shards import reject

    start = time.perf_counter()
    index = BenchmarkIndex(load_benchmarks(against), n)
    rows: list[dict] = []
    pairs: list[dict] = []
    rejects: list[Reject] = []
    for where, row in jsonl_lines(data):
        pair = pair_of(row) if isinstance(row, dict) else None  # a BadLine is no dict
        if not isinstance(row, dict) or pair is None:
            why = row.reason if isinstance(row, BadLine) else "not an (instruction, output) pair or a chat"
            rejects.append(reject("decontaminate", where, why))
            continue
        rows.append(row)
        pairs.append({**pair, "source": where, "index": len(rows) - 1})
    kept, removed, counts = decontaminate(pairs, index)
    write_jsonl(out / "clean.jsonl", [rows[p["index"]] for p in kept])
    write_jsonl(out / "rejects.jsonl", [*rejects, *removed])
    summary = {
        "data": str(data),
        "against": [str(p) for p in against],
        "benchmark_prompts": len(index.items),
        "ngram": n,
        "rows": len(rows) + len(rejects),
        "kept": len(kept),
        "removed": len(removed),
        "unreadable": len(rejects),
        **{k: v for k, v in counts.items() if k.startswith("contaminated_")},
        "seconds": round(time.perf_counter() - start, 2),
    }
    write_json(out / "summary.json", summary)
    return summary


def check_run(run: Path, prompts: Path, n: int = DEFAULT_N) -> dict:
    """How many rows of a run's final training set overlap an evaluation prompt set (what `humpback
    eval --run` says before it evaluates): a model is not evaluated on prompts it trained on unknowingly."""
    import logging

    from .files import jsonl_lines

    index = BenchmarkIndex(load_benchmarks([prompts]), n)
    pairs = [
        p
        for _, row in jsonl_lines(Path(run) / "final" / "train.jsonl")
        if isinstance(row, dict)
        for p in [pair_of(row)]
        if p is not None
    ]
    quiet = logging.getLogger("humpback")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # one line says it all here, not a warning per row
    try:
        _, rejects, _ = decontaminate(pairs, index, stage="eval")
    finally:
        quiet.setLevel(level)
    return {
        "training_rows": len(pairs),
        "overlapping": len(rejects),
        "ngram": n,
        "prompts": str(prompts),
        "examples": [r["reason"] for r in rejects[:5]],
    }
