"""Run statistics: the segment funnel, score histograms, the paper's Table 2, timings; and the
one-screen summary printed at the end of a run."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Iterable

from .shards import read_jsonl, read_stage, stage_counters, stage_info


def table2(records: Iterable[dict]) -> dict:
    """Count and mean/std of instruction and output length in characters (paper, Table 2)."""
    ins, outs = [], []
    for r in records:
        ins.append(len(r["instruction"]))
        outs.append(len(r["output"]))

    def mean_std(xs: list[int]) -> dict:
        if not xs:
            return {"mean": None, "std": None}
        return {"mean": round(statistics.fmean(xs), 1), "std": round(statistics.pstdev(xs), 1)}

    return {"count": len(ins), "instruction_chars": mean_std(ins), "output_chars": mean_std(outs)}


def histogram(ratings: Iterable[dict]) -> dict:
    counts = {str(s): 0 for s in range(1, 6)} | {"unparsed": 0}
    for r in ratings:
        counts[str(r["score"]) if r.get("score") else "unparsed"] += 1
    return counts


def run_stats(out: Path, iterations: int, k: int) -> dict:
    out = Path(out)
    seed = list(read_jsonl(out / "seed" / "part-00000.jsonl"))
    candidates = table2(read_stage(out / "candidates"))
    stats: dict = {
        "segment_funnel": dict(stage_counters(out / "segments")),
        "segments": stage_info(out / "segments").get("records", 0),
        "candidates": candidates["count"],
        "table2": {"seed": table2(seed), "candidates": candidates},
        "iterations": {},
        "seconds": {},
    }
    for i in range(1, iterations + 1):
        ratings_dir = out / f"iter{i}" / "ratings"  # streamed: ratings carry whole segments
        hist = histogram(read_stage(ratings_dir))
        total = sum(hist.values())
        a_k = table2(r for r in read_stage(ratings_dir) if r.get("score") and r["score"] >= k)
        a_4 = table2(r for r in read_stage(ratings_dir) if r.get("score") and r["score"] >= 4)
        stats["iterations"][str(i)] = {
            "judge": f"m{i - 1}", "ratings": total, "histogram": hist,
            "parse_rate": round((total - hist["unparsed"]) / total, 4) if total else None,
            "score_line_prompted": sum(1 for r in read_stage(ratings_dir) if r.get("score_line_prompted")),
            f"A_{k}": a_k["count"], "A_4": a_4["count"],
        }
        stats["table2"][f"A_{k} (iteration {i})"] = a_k
        if k != 4:
            stats["table2"][f"A_4 (iteration {i})"] = a_4
    stage_dirs = {"segment": "segments", "train backward": "models/backward", "augment": "candidates",
                  "train m0": "models/m0"}
    for i in range(1, iterations + 1):
        stage_dirs[f"curate iter{i}"] = f"iter{i}/ratings"
        stage_dirs[f"train m{i}"] = f"models/m{i}"
    for name, rel in stage_dirs.items():
        info = stage_info(out / rel)
        stats["seconds"][name] = info.get("seconds")
        if name.startswith("train"):
            stats.setdefault("training", {})[name.split()[-1]] = {
                key: info.get(key) for key in ("examples", "steps", "learning_rate", "first_loss", "last_loss")}
    return stats


def print_summary(stats: dict, out: Path, k: int) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    funnel = stats["segment_funnel"]
    removed = ", ".join(f"{key.removeprefix('removed_')} {v}" for key, v in sorted(funnel.items()) if key.startswith("removed_"))
    console.rule(f"[bold]humpback run: {out}")
    console.print(f"documents {funnel.get('documents', 0)} (rejected {funnel.get('documents_rejected', 0)}) -> "
                  f"segments found {funnel.get('segments_found', 0)} -> kept {funnel.get('segments_kept', 0)}")
    console.print(f"  removed: {removed or 'none'}; boilerplate lines dropped {funnel.get('boilerplate_lines_dropped', 0)}")
    console.print(f"candidates {stats['candidates']}   rejects {stats.get('rejects', 0)} (see rejects.jsonl)")

    scores = Table(title="Ratings per iteration", box=None)
    for col in ["iter", "judge", "parsed", "1", "2", "3", "4", "5", "unparsed", "prompted", f"|A_{k}|", "|A_4|"]:
        scores.add_column(col, justify="right")
    for i, it in stats["iterations"].items():
        h = it["histogram"]
        rate = f"{100 * it['parse_rate']:.0f}%" if it["parse_rate"] is not None else "-"
        scores.add_row(i, it["judge"], rate, *(str(h[s]) for s in "12345"), str(h["unparsed"]),
                       str(it["score_line_prompted"]), str(it[f"A_{k}"]), str(it["A_4"]))
    console.print(scores)
    console.print("  prompted: ratings whose Score line the judge wrote only after being handed 'Score:'")

    t2 = Table(title="Table 2 (lengths in characters, mean ± std)", box=None)
    for col in ["set", "count", "instruction", "output"]:
        t2.add_column(col, justify="right" if col != "set" else "left")
    for name, row in stats["table2"].items():
        def fmt(d: dict) -> str:
            return "-" if d["mean"] is None else f"{d['mean']:.0f} ± {d['std']:.0f}"
        t2.add_row(name, str(row["count"]), fmt(row["instruction_chars"]), fmt(row["output_chars"]))
    console.print(t2)

    times = "  ".join(f"{name} {sec:.0f}s" for name, sec in stats["seconds"].items() if sec is not None)
    console.print(f"time: {times}")
    console.print(f"dataset  {stats['final_dataset']}\nmodel    {stats['final_model']}\nsummary  {out / 'stats.json'}")
