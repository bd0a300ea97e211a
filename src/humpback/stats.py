"""Run statistics: the segment funnel, score histograms, the paper's Table 2, timings; and the
one-screen summary printed at the end of a run."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from pathlib import Path

from .probe import REPORT_FILE, JudgeProbe
from .records import Reject
from .shards import read_jsonl, read_stage, stage_counters, stage_examples, stage_info, stage_usage
from .signals import selection_value


def _mean_std(xs: list[int]) -> dict:
    if not xs:
        return {"mean": None, "std": None}
    return {"mean": round(statistics.fmean(xs), 1), "std": round(statistics.pstdev(xs), 1)}


def table2(records: Iterable[dict], tokenizer=None) -> dict:
    """Count and mean/std of instruction and output length in characters, and in tokens of the
    run's model when a tokenizer is given (paper, Table 2)."""
    records = list(records)
    row = {
        "count": len(records),
        "instruction_chars": _mean_std([len(r["instruction"]) for r in records]),
        "output_chars": _mean_std([len(r["output"]) for r in records]),
    }
    if tokenizer is not None:
        for field in ("instruction", "output"):
            texts = [r[field] for r in records]
            ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
            row[f"{field}_tokens"] = _mean_std([len(i) for i in ids])
    return row


def agreement(x: list[int], y: list[int]) -> dict:
    """How two ratings of the same candidates agree: the share equal, and within one point."""
    if not x:
        return {"exact": None, "within_one": None}
    return {
        "exact": round(sum(p == q for p, q in zip(x, y)) / len(x), 4),
        "within_one": round(sum(abs(p - q) <= 1 for p, q in zip(x, y)) / len(x), 4),
    }


def rater_agreement(scores_by_iteration: dict[str, dict[str, int]]) -> list[dict]:
    """For each pair of iterations, how the two judges' scores agree on the candidates both
    scored: exact, within one point, and Spearman's rank correlation."""
    from scipy.stats import spearmanr

    rows = []
    names = sorted(scores_by_iteration)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            both = sorted(set(scores_by_iteration[a]) & set(scores_by_iteration[b]))
            x = [scores_by_iteration[a][c] for c in both]
            y = [scores_by_iteration[b][c] for c in both]
            row = {"iterations": [a, b], "candidates": len(both), **agreement(x, y), "spearman": None}
            if len(set(x)) > 1 and len(set(y)) > 1:
                row["spearman"] = round(float(spearmanr(x, y).statistic), 4)
            rows.append(row)
    return rows


def read_labels(path: Path) -> tuple[dict[str, bool], list[Reject]]:
    """Quality labels (humpback.labels.read_labels): {id: good?} and the rejects."""
    from .labels import read_labels as read

    return read(path)


def precision_recall(scores: dict[str, int | None], labels: dict[str, bool], threshold: int) -> dict:
    """Of the labelled candidates, those scored >= threshold are "selected": precision is the
    share of selected that are good, recall the share of good that are selected (Table 7)."""
    labelled = [c for c in scores if c in labels]
    selected = [c for c in labelled if (score := scores[c]) is not None and score >= threshold]
    good = [c for c in labelled if labels[c]]
    hits = sum(labels[c] for c in selected)
    return {
        "threshold": threshold,
        "labelled": len(labelled),
        "selected": len(selected),
        "good": len(good),
        "precision": round(hits / len(selected), 4) if selected else None,
        "recall": round(hits / len(good), 4) if good else None,
    }


def score_examples(ratings: Iterable[dict], per_level: int = 2, max_chars: int = 600) -> dict[str, list[dict]]:
    """The first few candidates (by id) at each score level, texts cut to max_chars."""
    examples: dict[str, list[dict]] = {str(s): [] for s in range(1, 6)}
    for r in sorted(ratings, key=lambda r: r["id"]):
        level = examples.get(str(r.get("score")))
        if level is not None and len(level) < per_level:
            level.append(
                {
                    "id": r["id"],
                    "instruction": r["instruction"][:max_chars],
                    "output": r["output"][:max_chars],
                    "expected_score": r.get("expected_score"),
                }
            )
    return examples


def _probe(out: Path, iteration: int) -> JudgeProbe | None:
    """The judge probe of an iteration (pipeline: probe/iterN/), or None."""
    path = out / "probe" / f"iter{iteration}"
    return JudgeProbe.load(path) if (path / REPORT_FILE).is_file() else None


def _selection_of(curated_file: Path) -> tuple[str, float | None]:
    """How an iteration's curated set was chosen (its records' ``selected_by``; '' when none) and
    the lowest value it kept, in one pass over the file."""
    by, lowest = "", None
    for r in read_jsonl(curated_file) if curated_file.exists() else []:
        by = by or r.get("selected_by") or ""
        value = selection_value(r)
        if value is not None and (lowest is None or value < lowest):
            lowest = value
    return by, lowest


def histogram(ratings: Iterable[dict]) -> dict:
    counts = {str(s): 0 for s in range(1, 6)} | {"unparsed": 0}
    for r in ratings:
        counts[str(r["score"]) if r.get("score") else "unparsed"] += 1
    return counts


def set_name(selected_by: str | None, k: int) -> str:
    """What the report calls an iteration's curated set: A_k when scores >= k chose it (the paper's
    name), else the rule that did ("calibrated: value >= 0.41", "top 25% by value")."""
    if not selected_by or selected_by.startswith("score >="):
        return f"A_{k}"
    rule = selected_by.rsplit("; ", 1)[-1]
    return f"calibrated: {rule}" if selected_by.startswith("calibrated") or "labels" in selected_by else rule


def value_bins(values: list[float], probe_values: dict | None, threshold: float | None, bins: int = 30) -> dict | None:
    """The candidates' values (and the probe's good and bad pairs', when there is a probe) counted
    over one set of bins, with the selection threshold: what the report draws for a value mode."""
    if not values:
        return None
    probe_values = probe_values or {}
    every = values + list(probe_values.get("positive", [])) + list(probe_values.get("negative", []))
    low, high = min(every), max(every)
    width = (high - low) / bins or 1.0
    edges = [round(low + b * width, 6) for b in range(bins + 1)]

    def count(xs) -> list[int]:
        counts = [0] * bins
        for x in xs:
            counts[min(bins - 1, int((x - low) / width))] += 1
        return counts

    return {
        "edges": edges,
        "candidates": count(values),
        "probe_good": count(probe_values.get("positive", [])),
        "probe_bad": count(probe_values.get("negative", [])),
        "threshold": threshold,
    }


def run_stats(
    out: Path,
    iterations: int,
    k: int,
    tokenizer=None,
    labels: dict[str, bool] | None = None,
    answers: str = "rewritten",
) -> dict:
    out = Path(out)
    seed = list(read_jsonl(out / "seed" / "part-00000.jsonl"))
    candidates = table2(read_stage(out / "candidates"), tokenizer)
    stats: dict = {
        "segment_funnel": dict(stage_counters(out / "segments")),
        "segment_filter_examples": stage_examples(out / "segments"),
        "k": k,
        "segments": stage_info(out / "segments").get("records", 0),
        "candidates": candidates["count"],
        "table2": {"seed": table2(seed, tokenizer), "candidates": candidates},
        "iterations": {},
        "seconds": {},
    }
    scores: dict[str, dict[str, int | None]] = {}
    for i in range(1, iterations + 1):
        ratings_dir = out / f"iter{i}" / "ratings"
        # one streamed pass (ratings carry whole segments): scores by id, and the texts of A_min(k,4) only
        by_id, prompted, low_mass, valued, selected = {}, 0, 0, 0, []
        probe = _probe(out, i)
        probe_report = probe.report if probe else None
        values: list[float] = []  # what a value rule ranks by (features: valued as curate values them)
        for r in read_stage(ratings_dir):
            by_id[r["id"]] = r.get("score")
            value = probe.value(r) if probe else r.get("signal")
            if r.get("signal") is not None and value is not None:
                values.append(float(value))
            valued += r.get("signal") is not None  # a likelihood mode: a value, no 1..5 score
            prompted += bool(r.get("score_line_prompted"))
            low_mass += r.get("unparsed_reason") == "low_choice_mass"
            if r.get("score") and r["score"] >= min(k, 4):
                selected.append({"instruction": r["instruction"], "output": r["output"], "score": r["score"]})
        scores[str(i)] = by_id
        hist = histogram({"score": s} for s in by_id.values())
        total = sum(hist.values())
        curated_file = out / f"iter{i}" / "curated" / "part-00000.jsonl"
        # the curated set as selected (curate.select may rank by expected score or a signal)
        a_k = table2(
            read_jsonl(curated_file) if curated_file.exists() else (r for r in selected if r["score"] >= k), tokenizer
        )
        a_4 = table2((r for r in selected if r["score"] >= 4), tokenizer)
        stats["iterations"][str(i)] = {
            "judge": f"m{i - 1}",
            "ratings": total,
            "histogram": hist,
            "parse_rate": round((total - hist["unparsed"]) / total, 4) if total else None,
            "score_line_prompted": prompted,
            "low_choice_mass": low_mass,
            f"A_{k}": a_k["count"],
            "A_4": a_4["count"],
            "valued": valued,
        }
        if (out / f"iter{i}" / "rewritten").is_dir():  # rewrite.enabled: what the gate let through
            counted = stage_counters(out / f"iter{i}" / "rewritten")
            stats["iterations"][str(i)]["rewrite"] = {
                key: counted.get(key, 0) for key in ("rewritten", "gate_rejected", "not_rewritten")
            } | {"answers": answers}
        by, lowest = _selection_of(curated_file)
        name = set_name(by, k)
        value_rule = bool(by) and not by.startswith(("score >=", "expected"))
        stats["iterations"][str(i)].update(
            selected_by=by or None,
            set_name=name,
            values=value_bins(
                values, probe_report["values"] if probe_report else None, lowest if value_rule else None
            ),
        )
        # the set under the name of the rule that chose it; A_4 only where there are 1..5 scores
        stats["table2"][f"{name} (iteration {i})"] = a_k
        if k != 4 and not valued:
            stats["table2"][f"A_4 (iteration {i})"] = a_4
        if labels:
            stats["iterations"][str(i)]["precision_recall"] = [
                precision_recall(scores[str(i)], labels, t) for t in sorted({k, 4})
            ]
    stats["rater_agreement"] = rater_agreement(
        {i: {c: s for c, s in by_id.items() if s is not None} for i, by_id in scores.items()}
    )
    if iterations:
        stats["score_examples"] = score_examples(read_stage(out / f"iter{iterations}" / "ratings"))
    stage_dirs = {
        "segment": "segments",
        "train backward": "models/backward",
        "augment": "candidates",
        "train m0": "models/m0",
    }
    for i in range(1, iterations + 1):
        stage_dirs[f"curate iter{i}"] = f"iter{i}/ratings"
        if (out / f"iter{i}" / "rewritten").is_dir():
            stage_dirs[f"rewrite iter{i}"] = f"iter{i}/rewritten"
        stage_dirs[f"train m{i}"] = f"models/m{i}"
    stats["accounting"] = {}
    for name, rel in stage_dirs.items():
        info = stage_info(out / rel)
        stats["seconds"][name] = info.get("seconds")
        stats["accounting"][name] = stage_accounting(out / rel, info)
        if name.startswith("train"):
            stats.setdefault("training", {})[name.split()[-1]] = {
                key: info.get(key)
                for key in (
                    "examples",
                    "steps",
                    "learning_rate",
                    "first_loss",
                    "last_loss",
                    "dropped_too_long",
                    "truncated",
                    "gradient_checkpointing",
                )
            }
    stats["probe"] = {}
    for i in range(1, iterations + 1):  # the judge probe of each iteration (pipeline: probe/iterN/)
        probe = _probe(out, i)
        if probe is not None:
            report = probe.report
            stats["probe"][str(i)] = {
                key: report.get(key)
                for key in (
                    "judge_model",
                    "mode",
                    "auc",
                    "auc_interval",
                    "verdict",
                    "positives",
                    "pairs",
                    "by_kind",
                    "values",
                )
            }
    stats["instructions_cut_off"] = stage_counters(out / "candidates").get("instruction_cut_off", 0)
    stats["quotes_answer"] = stage_counters(out / "candidates").get("quotes_answer", 0)
    stats["refused"] = {
        "augment": stage_counters(out / "candidates").get("refused", 0),
        **{
            f"curate iter{i}": stage_counters(out / f"iter{i}" / "ratings").get("refused", 0)
            for i in range(1, iterations + 1)
        },
    }
    return stats


def stage_accounting(stage_dir: Path, info: dict) -> dict:
    """One stage's tokens and time: for a stage with an engine what it asked of the model
    (shards.stage_usage), for a training its examples, steps and tokens; tokens per second of the
    engine's (or the trainer's) own time; the stage's wall seconds."""
    row: dict = {"seconds": info.get("seconds")}
    usage = stage_usage(stage_dir)
    if usage is not None:
        tokens = usage.get("prompt_tokens", 0) + usage.get("generated_tokens", 0) + usage.get("read_tokens", 0)
        row.update(usage, tokens=tokens, seconds=info.get("seconds", usage.get("seconds")))
        row["engine_seconds"] = usage.get("seconds")
        row["tokens_per_second"] = round(tokens / usage["seconds"], 1) if usage.get("seconds") else None
    elif "steps" in info:  # a training
        tokens = info.get("tokens_trained")
        row.update(
            examples=info.get("examples"),
            steps=info.get("steps"),
            tokens=tokens,
            device=info.get("distributed_type"),
            tokens_per_second=round(tokens / info["train_seconds"], 1)
            if tokens and info.get("train_seconds")
            else None,
        )
    return row


def add_cost(accounting: dict, per_million_tokens: float | None, per_hour: float | None) -> None:
    """Each stage's cost at a price per million tokens (what a served model bills) or per hour of
    the machine (a GPU's rent, over the stage's wall time), written into its row."""
    for row in accounting.values():
        cost = 0.0
        if per_million_tokens is not None and row.get("tokens"):
            cost += row["tokens"] / 1e6 * per_million_tokens
        if per_hour is not None and row.get("seconds"):
            cost += row["seconds"] / 3600 * per_hour
        if per_million_tokens is not None or per_hour is not None:
            row["cost"] = round(cost, 4)


def _count(n: float | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e4 else f"{n:.0f}"


def accounting_lines(accounting: dict) -> list[str]:
    """One line per stage: what it read and wrote in tokens, its time and speed (and cost)."""
    lines = []
    for name, row in accounting.items():
        if row.get("seconds") is None:
            continue
        if "prompts" in row:
            what = (
                f"{row['prompts']} prompts, {_count(row.get('prompt_tokens'))} prompt + "
                f"{_count(row.get('generated_tokens'))} generated + {_count(row.get('read_tokens'))} read tokens"
            )
            where = f"{row.get('engine') or '?'} on {row.get('device') or '?'}"
        elif "steps" in row:
            what = f"{row.get('examples')} examples, {row.get('steps')} steps, {_count(row.get('tokens'))} tokens"
            where = "trainer"
        else:
            what, where = "no model", ""
        speed = f", {row['tokens_per_second']:.0f} tok/s" if row.get("tokens_per_second") else ""
        cost = f", cost {row['cost']:.2f}" if "cost" in row else ""
        lines.append(f"{name:<15} {what}; {row['seconds']:.0f}s{speed}{' (' + where + ')' if where else ''}{cost}")
    return lines


def print_summary(stats: dict, out: Path, k: int) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    funnel = stats["segment_funnel"]
    removed = ", ".join(
        f"{key.removeprefix('removed_')} {v}" for key, v in sorted(funnel.items()) if key.startswith("removed_")
    )
    console.rule(f"[bold]humpback run: {out}")
    console.print(
        f"documents {funnel.get('documents', 0)} (rejected {funnel.get('documents_rejected', 0)}) -> "
        f"segments found {funnel.get('segments_found', 0)} -> kept {funnel.get('segments_kept', 0)}"
    )
    console.print(
        f"  removed: {removed or 'none'}; boilerplate lines dropped {funnel.get('boilerplate_lines_dropped', 0)}"
        f"; files skipped {funnel.get('files_skipped', 0)}"
    )
    refused = sum((stats.get("refused") or {}).values())
    cut = stats.get("instructions_cut_off", 0)
    console.print(
        f"candidates {stats['candidates']}   rejects {stats.get('rejects', 0)} (see rejects.jsonl)"
        + (f"   prompts refused by the engine {refused}" if refused else "")
        + (f"   instructions cut off at augment.max_new_tokens {cut}" if cut else "")
        + (
            f"   instructions that quote their answer (removed) {stats['quotes_answer']}"
            if stats.get("quotes_answer")
            else ""
        )
    )
    if stats.get("decontamination"):
        d = stats["decontamination"]
        console.print(
            f"decontamination against {', '.join(d['against'])} ({d['ngram']}-grams, exact instructions): "
            + ", ".join(f"{k} {v} removed" for k, v in d["removed"].items())
        )
    trained = stats.get("training") or {}
    dropped = {name: t["dropped_too_long"] for name, t in trained.items() if t.get("dropped_too_long")}
    checkpointed = [name for name, t in trained.items() if t.get("gradient_checkpointing")]
    if dropped or checkpointed:
        console.print(
            "training: "
            + "; ".join(
                ([f"examples dropped for filling max_length: {dropped}"] if dropped else [])
                + ([f"gradient checkpointing on for {', '.join(checkpointed)} (memory)"] if checkpointed else [])
            )
        )

    scored = any(sum(it["histogram"][s] for s in "12345") for it in stats["iterations"].values())
    scores = Table(title="Ratings per iteration", box=None)
    # a likelihood mode gives each candidate a value, not a 1..5 score: its table has no score columns
    columns = (
        ["iter", "judge", "parsed", "1", "2", "3", "4", "5", "unparsed", "low mass", "prompted"]
        if scored
        else ["iter", "judge", "valued", "not valued"]
    )
    for col in columns + ["curated set", "size"] + (["|A_4|"] if scored else []):
        scores.add_column(col, justify="right")
    for i, it in stats["iterations"].items():
        h = it["histogram"]
        rate = f"{100 * it['parse_rate']:.0f}%" if it["parse_rate"] is not None else "-"
        unparsed = str(h["unparsed"])
        if it.get("valued"):  # likelihood modes give a value, not a score: nothing is unparsed
            rate, unparsed = f"{it['valued']}v", str(h["unparsed"] - it["valued"])
        name = it.get("set_name") or f"A_{k}"
        if scored:
            cells = [
                rate,
                *(str(h[s]) for s in "12345"),
                unparsed,
                str(it.get("low_choice_mass", 0)),
                str(it["score_line_prompted"]),
            ]
            scores.add_row(i, it["judge"], *cells, name, str(it[f"A_{k}"]), str(it["A_4"]))
        else:
            scores.add_row(i, it["judge"], str(it.get("valued", 0)), unparsed, name, str(it[f"A_{k}"]))
    console.print(scores)
    rules = {i: it.get("selected_by") for i, it in stats["iterations"].items() if it.get("selected_by")}
    if rules:
        console.print("  the curated set, selected by: " + "; ".join(f"iteration {i}: {r}" for i, r in rules.items()))
    for i, it in stats["iterations"].items():
        if not it.get(f"A_{k}"):
            console.print(
                f"[bold red]iteration {i} selected nothing[/]: M_{i} was trained on the seed alone "
                "(see the judge probe below, or choose another curate.select)"
            )
    preset = stats.get("preset")
    if preset:
        console.print(f"preset {preset['name']}; what still differs:")
        for line in preset["differences"]:
            console.print(f"  - {line}")
        if preset["changed"]:
            console.print(f"  changed from the preset: {'; '.join(preset['changed'])}")
    for i, probe in (stats.get("probe") or {}).items():
        low, high = probe["auc_interval"] or (None, None)
        console.print(
            f"judge probe, iteration {i} ({probe['mode']}, {probe['positives']} held-out pairs): AUC "
            f"{probe['auc']} [{low}-{high}]: {probe['verdict']}"
        )
    losses = {name: value for name, value in (stats.get("answer_loss") or {}).items() if value is not None}
    if losses:
        console.print(
            "held-out answer loss (per token, lower is better): "
            + ", ".join(f"{name} {value:.4f}" for name, value in losses.items())
        )
    console.print(
        "  prompted: ratings whose Score line the judge wrote only after being handed 'Score:'; "
        "low mass: logprob ratings unparsed because the five scores had under min_choice_mass; "
        "Nv: a likelihood mode valued N candidates (no 1..5 scores)"
    )

    t2 = Table(title="Table 2 (lengths in characters, mean ± std)", box=None)
    for col in ["set", "count", "instruction", "output"]:
        t2.add_column(col, justify="right" if col != "set" else "left")
    for name, row in stats["table2"].items():

        def fmt(d: dict) -> str:
            return "-" if d["mean"] is None else f"{d['mean']:.0f} ± {d['std']:.0f}"

        t2.add_row(name, str(row["count"]), fmt(row["instruction_chars"]), fmt(row["output_chars"]))
    console.print(t2)

    for i, it in stats.get("iterations", {}).items():
        if it.get("rewrite"):
            r = it["rewrite"]
            console.print(
                f"iteration {i} rewrites: {r['rewritten']} rewritten, {r['gate_rejected']} kept as web text by "
                f"the faithfulness gate, {r['not_rewritten']} without a usable rewrite; trained on the "
                f"{r['answers']} answers",
                highlight=False,
            )
    for t, d in (stats.get("dpo") or {}).items():
        console.print(
            f"self-rewarding {t}: {d['policy']} judged its own answers to {d['prompts']} prompts -> {d['pairs']} "
            f"pairs ({d['tied']} tied, {d['too_few_valued']} with under two valued answers); {d['model']} = "
            f"{d['policy']} + DPO, {d['steps']} steps, loss {d['first_loss']} -> {d['last_loss']}; judge probe AUC "
            f"{d['judge_probe_auc']}",
            highlight=False,
        )
    if stats.get("accounting"):
        console.print("tokens and time per stage:", highlight=False)
        for line in accounting_lines(stats["accounting"]):
            console.print(f"  {line}", highlight=False, markup=False)
    else:
        times = "  ".join(f"{name} {sec:.0f}s" for name, sec in stats["seconds"].items() if sec is not None)
        console.print(f"time: {times}")
    console.print(f"dataset  {stats['final_dataset']}\nmodel    {stats['final_model']}\nsummary  {out / 'stats.json'}")
    if stats.get("report"):
        console.print(f"report   {stats['report']} (and report.md)")
