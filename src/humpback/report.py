"""A run's report: did the data get better, and did the model?

``report.html`` is one self-contained page (figures embedded as PNG data, no network needed):
the segmentation funnel, score histograms per iteration, length distributions, the Table 2
numbers, rater agreement, precision/recall against labels when given, evaluation win rates with
error bars, and example pairs at every score level. ``report.md`` has the same numbers as text.
Both are rebuilt from the run directory by ``humpback report runs/NAME``.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

from .files import write_text
from .shards import read_jsonl, read_stage

SCORES = ["1", "2", "3", "4", "5"]


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# The segmentation funnel in the order the pipeline meets it (counters not named here follow).
FUNNEL_ORDER = (
    "documents",
    "documents_rejected",
    "files_skipped",
    "segments_found",
    "removed_empty_header",
    "removed_navigation_header",
    "removed_uppercase_header",
    "removed_too_short",
    "removed_too_long",
    "removed_language",
    "removed_repetitive",
    "removed_exact_duplicate",
    "removed_near_duplicate",
    "boilerplate_lines_dropped",
    "segments_kept",
)


def funnel_rows(funnel: dict) -> list[tuple[str, int]]:
    known = [(key, funnel[key]) for key in FUNNEL_ORDER if key in funnel]
    rest = [(key, value) for key, value in funnel.items() if key not in FUNNEL_ORDER and key != "segments_kept"]
    if rest and known and known[-1][0] == "segments_kept":
        return known[:-1] + rest + known[-1:]
    return known + rest


def _set_label(stats: dict, i: str, it: dict) -> str:
    return it.get("set_name") or f"A_{stats.get('k', 5)}"


def _value_figures(stats: dict, plt) -> dict[str, str]:
    """For a value mode: each iteration's candidate values against the probe's good and bad pairs,
    with the selection threshold; and the probe's ROC curve."""
    figures = {}
    valued = {i: it["values"] for i, it in stats.get("iterations", {}).items() if it.get("values")}
    if valued:
        fig, axes = plt.subplots(1, len(valued), figsize=(4.5 * len(valued), 3), squeeze=False)
        for ax, (i, v) in zip(axes[0], valued.items()):
            edges = v["edges"]
            centres = [(a + b) / 2 for a, b in zip(edges, edges[1:])]
            width = edges[1] - edges[0]

            def share(counts):
                total = sum(counts) or 1
                return [c / total for c in counts]

            ax.bar(centres, share(v["candidates"]), width, color="#4c72b0", alpha=0.6, label="candidates")
            for key, colour, name in (
                ("probe_good", "#55a868", "probe: good"),
                ("probe_bad", "#c44e52", "probe: bad"),
            ):
                if sum(v[key]):
                    ax.step(centres, share(v[key]), where="mid", color=colour, label=name)
            if v.get("threshold") is not None:
                ax.axvline(v["threshold"], color="black", linestyle="--", linewidth=1, label="selection threshold")
            ax.set_xlabel("value")
            ax.set_ylabel("share")
            ax.set_title(f"Iteration {i}: {_set_label(stats, i, stats['iterations'][i])}", fontsize=9)
            ax.legend(fontsize=7)
        figures["values"] = _png(fig)
    probes = {i: p["values"] for i, p in (stats.get("probe") or {}).items() if p and p.get("values")}
    if probes:
        fig, ax = plt.subplots(figsize=(4, 4))
        for i, values in probes.items():
            fpr, tpr = roc_points(values["positive"], values["negative"])
            ax.plot(fpr, tpr, label=f"iteration {i} (AUC {stats['probe'][i].get('auc')})")
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("false positive rate (made-up bad pairs kept)")
        ax.set_ylabel("true positive rate (good pairs kept)")
        ax.set_title("The judge on its probe")
        ax.legend(fontsize=7)
        figures["roc"] = _png(fig)
    return figures


def roc_points(positives: list[float], negatives: list[float]) -> tuple[list[float], list[float]]:
    """(false positive rates, true positive rates) as the threshold falls through every value."""
    marks = sorted([(v, 1) for v in positives] + [(v, 0) for v in negatives], reverse=True)
    fpr, tpr, tp, fp = [0.0], [0.0], 0, 0
    for _, good in marks:
        tp, fp = tp + good, fp + (1 - good)
        tpr.append(tp / max(1, len(positives)))
        fpr.append(fp / max(1, len(negatives)))
    return fpr, tpr


def _figures(stats: dict, out: Path, evals: list[dict]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    figures = {}
    funnel = stats.get("segment_funnel", {})
    steps = [
        ("documents", funnel.get("documents", 0)),
        ("segments found", funnel.get("segments_found", 0)),
        ("segments kept", funnel.get("segments_kept", 0)),
        ("candidates", stats.get("candidates", 0)),
    ]
    k = stats.get("k", 5)
    steps += [
        (f"{_set_label(stats, i, it)}, iter {i}", it.get(f"A_{k}", 0)) for i, it in stats.get("iterations", {}).items()
    ]
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.barh([s for s, _ in steps][::-1], [v for _, v in steps][::-1], color="#4c72b0")
    for y, (_, v) in enumerate(steps[::-1]):
        ax.text(v, y, f" {v}", va="center")
    ax.set_title("From web documents to curated pairs")
    figures["funnel"] = _png(fig)

    iterations = stats.get("iterations", {})
    figures.update(_value_figures(stats, plt))
    scored = {i: it for i, it in iterations.items() if sum(it["histogram"].get(s, 0) for s in SCORES)}
    if scored:  # a value mode gives no 1..5 scores: its figure is the value distribution above
        fig, ax = plt.subplots(figsize=(7, 3))
        width = 0.8 / len(scored)
        for n, (i, it) in enumerate(scored.items()):
            counts = [it["histogram"].get(s, 0) for s in SCORES]
            ax.bar(
                [int(s) + (n - (len(scored) - 1) / 2) * width for s in SCORES],
                counts,
                width,
                label=f"iteration {i} (judge {it['judge']})",
            )
        ax.set_xticks(range(1, 6))
        ax.set_xlabel("score")
        ax.set_ylabel("candidates")
        ax.set_title("Scores per iteration")
        ax.legend()
        figures["scores"] = _png(fig)

    def lengths(records) -> dict[str, list[int]]:  # lengths only: candidates carry whole segments
        found: dict[str, list[int]] = {"instruction": [], "output": []}
        for r in records:
            for field, values in found.items():
                values.append(len(r[field]))
        return found

    sets = {
        "seed": lengths(read_jsonl(out / "seed" / "part-00000.jsonl")) if (out / "seed").exists() else None,
        "candidates": lengths(read_stage(out / "candidates")),
    }
    last = max((int(i) for i in iterations), default=0)
    curated = out / f"iter{last}" / "curated" / "part-00000.jsonl"
    if last and curated.exists():  # the set as selected, whatever rule chose it
        sets[f"{_set_label(stats, str(last), iterations[str(last)])} (iteration {last})"] = lengths(
            read_jsonl(curated)
        )
    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    for ax, field in zip(axes, ("instruction", "output")):
        for name, found in sets.items():
            if found and found[field]:
                ax.hist(found[field], bins=20, alpha=0.5, label=name)
        ax.set_xlabel(f"{field} length (characters)")
        ax.set_title(f"{field.capitalize()} lengths")
    axes[0].legend()
    figures["lengths"] = _png(fig)

    rated = [e for e in evals if e.get("win_rate") is not None]
    if rated:
        fig, ax = plt.subplots(figsize=(7, 0.6 + 0.5 * len(rated)))
        labels = [f"{e['model']} vs {e['reference']}" for e in rated]
        ax.barh(
            labels,
            [e["win_rate"] for e in rated],
            xerr=[e.get("standard_error") or 0 for e in rated],
            color="#55a868",
            capsize=4,
        )
        ax.axvline(50, color="grey", linestyle="--", linewidth=1)
        ax.set_xlim(0, 100)
        ax.set_xlabel("win rate (%), error bars: one standard error")
        ax.set_title("Pairwise evaluation")
        figures["win_rates"] = _png(fig)
    return figures


def ablation_rows(ablations: dict) -> list[list[str]]:
    """The ablations table: each arm's loss and interval, and its difference from the random arm."""
    rows = []
    for arm, a in ablations["arms"].items():
        low, high = a["interval"]
        d = a.get("minus_random_interval")
        rows.append(
            [
                arm,
                str(a["augmented_examples"]),
                f"{a['answer_loss']:.4f} [{low}, {high}]",
                "" if a.get("minus_random") is None else f"{a['minus_random']:+.4f} [{d[0]:+.4f}, {d[1]:+.4f}]",
            ]
        )
    return rows


def _ablation_figure(ablations: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(ablations["arms"].items())
    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.45 * len(arms)))
    values = [a["answer_loss"] for _, a in arms]
    low = [a["answer_loss"] - a["interval"][0] for _, a in arms]
    high = [a["interval"][1] - a["answer_loss"] for _, a in arms]
    ax.barh([name for name, _ in arms], values, xerr=[low, high], color="#8172b2", capsize=4)
    ax.set_xlim(min(a["interval"][0] for _, a in arms) * 0.98, max(a["interval"][1] for _, a in arms) * 1.01)
    ax.set_xlabel("held-out answer loss per token (lower is better); bars: 95% bootstrap interval")
    ax.set_title("Ablations: forward models on variants of the run's data")
    return _png(fig)


def _ablations(out: Path) -> dict | None:
    path = out / "ablate" / "ablations.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _evals(out: Path) -> list[dict]:
    return [
        json.loads(p.read_text(encoding="utf-8")) | {"path": str(p.parent.relative_to(out))}
        for p in sorted((out / "eval").glob("**/leaderboard.json"))
    ]


def _fmt(d: dict | None) -> str:
    return "-" if not d or d.get("mean") is None else f"{d['mean']:.0f} ± {d['std']:.0f}"


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _tables(stats: dict, evals: list[dict]) -> list[tuple[str, list[str], list[list[str]]]]:
    """Every table of the report, as (title, header, rows): one source for HTML and markdown."""
    tables = []
    funnel = stats.get("segment_funnel", {})
    tables.append(("Segmentation funnel", ["step", "count"], [[k, str(v)] for k, v in funnel_rows(funnel)]))
    if stats.get("quotes_answer"):
        tables.append(
            (
                "Candidates removed before rating",
                ["reason", "count"],
                [["the instruction quotes its answer (augment.max_quoted_words)", str(stats["quotes_answer"])]],
            )
        )
    if stats.get("decontamination"):
        d = stats["decontamination"]
        tables.append(
            (
                f"Decontamination ({d['ngram']}-word overlap or the same instruction)",
                ["training set", "removed"],
                [[k, str(v)] for k, v in d["removed"].items()],
            )
        )
    examples = stats.get("segment_filter_examples") or {}
    if examples:
        tables.append(
            (
                "What the filters removed (examples)",
                ["filter", "example"],
                [[reason, text[:200]] for reason, shown in sorted(examples.items()) for text in shown],
            )
        )
    tokens = any("instruction_tokens" in row for row in stats.get("table2", {}).values())
    header = ["set", "count", "instruction (chars)", "output (chars)"] + (
        ["instruction (tokens)", "output (tokens)"] if tokens else []
    )
    rows = []
    for name, row in stats.get("table2", {}).items():
        cells = [name, str(row["count"]), _fmt(row["instruction_chars"]), _fmt(row["output_chars"])]
        if tokens:
            cells += [_fmt(row.get("instruction_tokens")), _fmt(row.get("output_tokens"))]
        rows.append(cells)
    tables.append(("Table 2: data statistics (mean ± std)", header, rows))
    iterations = stats.get("iterations", {})
    scored = any(sum(it["histogram"].get(s, 0) for s in SCORES) for it in iterations.values())
    if iterations and not scored:  # a likelihood mode: values, no 1..5 scores
        k = stats.get("k", 5)
        tables.append(
            (
                "Values per iteration",
                ["iteration", "judge", "valued", "not valued", "curated set", "size"],
                [
                    [
                        i,
                        it["judge"],
                        str(it.get("valued", 0)),
                        str(it["histogram"].get("unparsed", 0) - it.get("valued", 0)),
                        _set_label(stats, i, it),
                        str(it.get(f"A_{k}", "-")),
                    ]
                    for i, it in iterations.items()
                ],
            )
        )
    elif iterations:
        k = stats.get("k", 5)
        tables.append(
            (
                "Scores per iteration",
                ["iteration", "judge", "parsed"] + SCORES + ["unparsed", "curated set", "size", "|A_4|"],
                [
                    [
                        i,
                        it["judge"],
                        _pct(it.get("parse_rate")),
                        *(str(it["histogram"].get(s, 0)) for s in SCORES),
                        str(it["histogram"].get("unparsed", 0)),
                        _set_label(stats, i, it),
                        str(it.get(f"A_{k}", "-")),
                        str(it.get("A_4", "-")),
                    ]
                    for i, it in iterations.items()
                ],
            )
        )
    if stats.get("rater_agreement"):
        tables.append(
            (
                "Agreement between the iterations' judges",
                ["iterations", "candidates", "exact", "within one", "Spearman"],
                [
                    [
                        " vs ".join(r["iterations"]),
                        str(r["candidates"]),
                        _pct(r["exact"]),
                        _pct(r["within_one"]),
                        "-" if r["spearman"] is None else f"{r['spearman']:.2f}",
                    ]
                    for r in stats["rater_agreement"]
                ],
            )
        )
    pr = [(i, row) for i, it in iterations.items() for row in it.get("precision_recall", [])]
    if pr:
        tables.append(
            (
                "Curation against your labels (Table 7)",
                ["iteration", "selected if score >=", "labelled", "selected", "precision", "recall"],
                [
                    [
                        i,
                        str(r["threshold"]),
                        str(r["labelled"]),
                        str(r["selected"]),
                        _pct(r["precision"]),
                        _pct(r["recall"]),
                    ]
                    for i, r in pr
                ],
            )
        )
    if evals:
        tables.append(
            (
                "Pairwise evaluation",
                [
                    "model",
                    "against",
                    "prompts",
                    "win rate",
                    "± s.e.",
                    "LC win rate",
                    "avg length",
                    "against: avg length",
                    "judge",
                ],
                [
                    [
                        e["model"],
                        e["reference"],
                        str(e["n_prompts"]),
                        "-" if e.get("win_rate") is None else f"{e['win_rate']:.1f}",
                        "-" if e.get("standard_error") is None else f"{e['standard_error']:.1f}",
                        "-"
                        if e.get("length_controlled_win_rate") is None
                        else f"{e['length_controlled_win_rate']:.1f}",
                        str(e.get("avg_length", "-")),
                        str(e.get("reference_avg_length", "-")),
                        f"{e.get('judge_model')} ({e.get('judge_mode')})",
                    ]
                    for e in evals
                ],
            )
        )
    return tables


def headline(stats: dict) -> list[str]:
    """What a user must know first: can the judge tell good from bad, what was selected and how,
    did the held-out answer loss move; plain warnings when the judge is near chance or selected nothing."""
    lines = []
    candidates = stats.get("candidates", 0)
    for i, it in (stats.get("iterations") or {}).items():
        probe = (stats.get("probe") or {}).get(i)
        if probe:
            lines.append(
                f"Iteration {i}: the judge {it['judge']} ({probe['mode']}) has probe AUC {probe['auc']} on "
                f"{probe['positives']} held-out pairs: {probe['verdict']}."
            )
        selected = it.get(f"A_{stats.get('k')}", 0)
        rule = it.get("selected_by") or f"score >= {stats.get('k')}"
        lines.append(f"Iteration {i}: {selected} of {candidates} candidates selected ({rule}).")
        if not selected:
            lines.append(f"Warning: iteration {i} selected nothing: M_{i} was trained on the seed alone.")
    preset = stats.get("preset")
    if preset:
        lines.append(f"Preset {preset['name']}; what still differs: " + "; ".join(preset["differences"]) + ".")
        if preset["changed"]:
            lines.append(f"Changed from the {preset['name']} preset: " + "; ".join(preset["changed"]) + ".")
    losses = {k: v for k, v in (stats.get("answer_loss") or {}).items() if v is not None}
    if losses:
        lines.append(
            "Held-out answer loss (lower is better): " + ", ".join(f"{k} {v:.4f}" for k, v in losses.items()) + "."
        )
    return lines


def _markdown(stats: dict, tables, evals: list[dict], out: Path) -> str:
    lines = [f"# humpback report: {out.name}", ""] + [f"- {line}" for line in headline(stats)] + [""]
    for title, header, rows in tables:
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        lines.append("")
    if not evals:
        lines += ["No evaluation yet: `humpback eval --run RUN --model m2 --prompts PROMPTS` adds one.", ""]
    for level, examples in stats.get("score_examples", {}).items():
        for e in examples:
            lines += [f"- score {level} `{e['id']}`: {e['instruction'][:160]!r}"]
    return "\n".join(lines) + "\n"


def _html(stats: dict, tables, figures: dict[str, str], evals: list[dict], out: Path) -> str:
    from jinja2 import Environment

    env = Environment(autoescape=True)
    return env.from_string((Path(__file__).parent / "report.html.j2").read_text(encoding="utf-8")).render(
        name=out.name,
        headline=headline(stats),
        tables=tables,
        figures=figures,
        evals=evals,
        examples=stats.get("score_examples", {}),
        seconds=stats.get("seconds", {}),
    )


def accounting_table(accounting: dict) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the per-stage accounting (stats.stage_accounting)."""
    priced = any("cost" in row for row in accounting.values())
    header = ["stage", "prompts / examples", "prompt tokens", "generated tokens", "read tokens", "trained tokens"]
    header += ["seconds", "tokens/s", "engine", *(["cost"] if priced else [])]
    rows = []
    for name, row in accounting.items():
        if row.get("seconds") is None:
            continue
        training = "steps" in row
        cells = [
            name,
            row.get("examples") if training else row.get("prompts", "-"),
            *(
                row.get(k, "-") if not training and "prompts" in row else "-"
                for k in ("prompt_tokens", "generated_tokens", "read_tokens")
            ),
            row.get("tokens") if training else "-",
            round(row["seconds"]),
            row.get("tokens_per_second") or "-",
            "trainer"
            if training
            else f"{row.get('engine', '-')} ({row.get('device', '-')})"
            if "prompts" in row
            else "-",
        ]
        rows.append([str(c) for c in cells + ([row.get("cost", "-")] if priced else [])])
    return header, rows


def build_report(run_dir: Path, stats: dict | None = None) -> dict[str, Path]:
    """Write run_dir/report.html and run_dir/report.md from the run's stats.json and files."""
    out = Path(run_dir)
    if stats is None:
        path = out / "stats.json"
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist: is {out} a finished humpback run?")
        stats = json.loads(path.read_text(encoding="utf-8"))
    evals = _evals(out)
    tables = _tables(stats, evals)
    figures = _figures(stats, out, evals)
    if stats.get("dpo"):  # self-rewarding iterations after the SFT ones
        header = ["iteration", "policy", "prompts", "pairs", "tied", "under two valued", "model", "DPO steps"]
        header += ["loss first -> last", "judge probe AUC"]
        rows = [
            [
                t,
                d["policy"],
                d["prompts"],
                d["pairs"],
                d["tied"],
                d["too_few_valued"],
                d["model"],
                d["steps"],
                f"{d['first_loss']} -> {d['last_loss']}",
                d["judge_probe_auc"],
            ]
            for t, d in stats["dpo"].items()
        ]
        tables.append(("Self-rewarding iterations (preferences + DPO)", header, [[str(c) for c in r] for r in rows]))
    if stats.get("accounting"):
        tables.append(("Tokens and time per stage", *accounting_table(stats["accounting"])))
    ablations = _ablations(out)
    if ablations:  # `humpback ablate RUN` measured data variants
        header = ["arm", "augmented examples", "answer loss [95%]", "minus random [95%]"]
        tables.append(
            (f"Ablations ({ablations['seeds']} seeds; {ablations['measure']})", header, ablation_rows(ablations))
        )
        figures["ablations"] = _ablation_figure(ablations)
    write_text(out / "report.html", _html(stats, tables, figures, evals, out))
    write_text(out / "report.md", _markdown(stats, tables, evals, out))
    return {"html": out / "report.html", "markdown": out / "report.md"}


def report_run(run_dir: Path, labels: Path | None = None) -> dict[str, Path]:
    """Recompute the run's statistics (with precision/recall when labels are given) and rebuild
    its report. The run's config.yaml says how many iterations and which k and model it used."""
    from .outputs import output_kind, output_lock

    out = Path(run_dir)
    kind = output_kind(out)
    if kind is None:  # never write report files into a folder humpback did not make as a run
        raise ValueError(
            f"{out} is not a humpback run directory (no .humpback marker): the report is only "
            f"rebuilt inside a run that `humpback run` made"
        )
    if kind != "run":
        raise ValueError(f"{out} is a humpback {kind} output, not a run directory")
    if not (out / "config.yaml").exists():
        raise FileNotFoundError(f"{out / 'config.yaml'} does not exist: is {out} a humpback run directory?")
    with output_lock(out):
        return _report_run(out, labels)


def _report_run(out: Path, labels: Path | None) -> dict[str, Path]:
    from .config import RunConfig, load_yaml
    from .models import load_tokenizer, resolve_model
    from .shards import write_json, write_jsonl
    from .stats import add_cost, read_labels, run_stats

    cfg = RunConfig.model_validate(load_yaml(out / "config.yaml"))
    previous = json.loads((out / "stats.json").read_text(encoding="utf-8")) if (out / "stats.json").exists() else {}
    label_map = None
    if labels is not None:
        label_map, rejects = read_labels(labels)
        write_jsonl(out / "labels_rejects.jsonl", rejects)
        previous["label_rejects"] = len(rejects)
    stats = previous | run_stats(
        out, cfg.iterations, cfg.curate.k, load_tokenizer(resolve_model(cfg.model)), label_map, cfg.forward.answers
    )
    add_cost(stats["accounting"], cfg.price_per_million_tokens, cfg.price_per_hour)
    write_json(out / "stats.json", stats)
    return build_report(out, stats)
