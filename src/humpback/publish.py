"""`humpback publish`: a run's final dataset as Parquet with a dataset card, ready for the hub.

The folder is what `datasets.load_dataset(DIR)` reads (the card's `configs` point at the
Parquet file) and what the hub renders: YAML metadata, how the data was made (seed, corpus,
models, the config, humpback's version), the segmentation funnel, Table 2, the score
histograms, the judge probe, decontamination, known limits, and per-row provenance.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import cast

import yaml

from .redaction import redact, redact_config
from .shards import read_jsonl

FORMATS = ("messages", "alpaca", "sharegpt")


def _turns(messages: list[dict]) -> tuple[str, str, str]:
    """(system, instruction, output) of a single-turn training chat."""
    system = next((m["content"] for m in messages if m["role"] == "system"), "")
    user = [m["content"] for m in messages if m["role"] == "user"]
    reply = [m["content"] for m in messages if m["role"] == "assistant"]
    return system, user[-1] if user else "", reply[-1] if reply else ""


def as_format(row: dict, fmt: str) -> dict:
    """A training row in one of FORMATS (the tag the model was trained with is the system message)."""
    system, instruction, output = _turns(row["messages"])
    if fmt == "messages":
        return {"messages": row["messages"]}
    if fmt == "alpaca":
        return {"instruction": instruction, "input": "", "output": output, "system": system}
    if fmt == "sharegpt":
        names = {"system": "system", "user": "human", "assistant": "gpt"}
        return {"conversations": [{"from": names[m["role"]], "value": m["content"]} for m in row["messages"]]}
    raise ValueError(f"unknown format {fmt!r}: {', '.join(FORMATS)}")


def provenance(run: Path, iterations: int) -> dict[str, dict]:
    """Where each curated row came from: the last iteration's curated records, by id."""
    curated = Path(run) / f"iter{iterations}" / "curated" / "part-00000.jsonl"
    found = {}
    for r in read_jsonl(curated) if curated.exists() else []:
        found[r["id"]] = {
            "source": r.get("source"),
            "segment_id": r["id"],
            "score": r.get("score"),
            "value": r.get("combined", r.get("signal", r.get("expected_score"))),
            "selected_by": r.get("selected_by"),
            "iteration": r.get("iteration"),
        }
    return found


def _size_category(n: int) -> str:
    for limit, name in [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]:
        if n < limit:
            return name
    return "1M<n<10M"


def publish(run: Path, to: Path, fmt: str = "messages", license: str = "other", name: str | None = None) -> dict:
    """Write ``to``/data/train-00000-of-00001.parquet and ``to``/README.md from the run ``run``."""
    from importlib.metadata import PackageNotFoundError, version

    import pyarrow as pa
    import pyarrow.parquet as pq

    from .files import atomic_path

    try:
        __version__ = version("humpback")
    except PackageNotFoundError:  # a source checkout that was never installed
        __version__ = "unknown"

    run, to = Path(run), Path(to)
    stats_file, final = run / "stats.json", run / "final" / "train.jsonl"
    if not stats_file.is_file() or not final.is_file():
        raise FileNotFoundError(f"{run} is not a finished humpback run (no stats.json or final/train.jsonl)")
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: {', '.join(FORMATS)}")
    stats = json.loads(stats_file.read_text(encoding="utf-8"))
    config = (
        yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")) if (run / "config.yaml").exists() else {}
    )
    config = cast(dict, redact_config(config or {}))  # a run made before redaction may hold a URL's credentials
    iterations = int(config.get("iterations", len(stats.get("iterations", {}))))
    origins = provenance(run, iterations)
    rows = []
    for row in read_jsonl(final):
        where = origins.get(row["id"], {})
        rows.append(
            {
                **as_format(row, fmt),
                "id": row["id"],
                "origin": row.get("origin", "seed"),
                "source": where.get("source"),
                "segment_id": where.get("segment_id"),
                "score": where.get("score"),
                "value": where.get("value"),
                "selected_by": where.get("selected_by"),
                "iteration": where.get("iteration"),
            }
        )
    parquet = to / "data" / "train-00000-of-00001.parquet"
    parquet.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(parquet) as tmp:
        pq.write_table(pa.Table.from_pylist(rows), tmp)
    languages = (config.get("segment") or {}).get("languages", ["en"]) or ["multilingual"]
    card = {
        "license": license,
        "language": languages,
        "task_categories": ["text-generation"],
        "tags": ["instruction-backtranslation", "humpback", "synthetic"],
        "size_categories": [_size_category(len(rows))],
        "pretty_name": name or f"humpback {run.name}",
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*.parquet"}]}],
    }
    text = (
        "---\n"
        + yaml.safe_dump(card, sort_keys=False)
        + "---\n\n"
        + _card_body(run, stats, config, rows, fmt, __version__)
    )
    card_path, edited = write_card(to, text)
    return {"rows": len(rows), "parquet": str(parquet), "card": str(card_path), "format": fmt, "card_kept": edited}


def publish_preferences(prefs: Path, to: Path, license: str = "other", name: str | None = None) -> dict:
    """Write ``to``/data/train-00000-of-00001.parquet and a card from a ``preferences`` stage folder:
    TRL's preference columns (prompt, chosen, rejected), every value and answer, and provenance."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .files import atomic_path
    from .outputs import read_fingerprint
    from .shards import is_done, read_stage, stage_counters

    prefs, to = Path(prefs), Path(to)
    if not is_done(prefs):
        raise FileNotFoundError(f"{prefs} is not a finished preferences folder (humpback preferences --out DIR)")
    rows = [
        {
            "id": r["id"],
            "prompt": r["prompt"],
            "chosen": r["chosen"],
            "rejected": r["rejected"],
            "chosen_value": r["chosen_value"],
            "rejected_value": r["rejected_value"],
            "answers": [{"text": a["text"], "value": a["value"]} for a in r["answers"]],
            "policy_model": redact(r["policy_model"]),
            "judge_model": redact(r["judge_model"]),
            "judge_mode": r["judge_mode"],
        }
        for r in read_stage(prefs)
    ]
    if not rows:
        raise ValueError(f"{prefs} holds no preference pairs (every prompt tied or had under two valued answers)")
    parquet = to / "data" / "train-00000-of-00001.parquet"
    parquet.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(parquet) as tmp:
        pq.write_table(pa.Table.from_pylist(rows), tmp)
    counts = stage_counters(prefs)
    config = cast(dict, redact_config(((read_fingerprint(prefs) or {}).get("fields") or {}).get("config") or {}))
    card = {
        "license": license,
        "task_categories": ["text-generation"],
        "tags": ["preference", "dpo", "self-rewarding", "humpback", "synthetic"],
        "size_categories": [_size_category(len(rows))],
        "pretty_name": name or f"humpback preferences {prefs.name}",
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*.parquet"}]}],
    }
    margin = sum(r["chosen_value"] - r["rejected_value"] for r in rows) / len(rows)
    body = [
        f"# {_md(prefs.name)}: preference pairs from a model's own answers",
        "",
        f"{len(rows)} (prompt, chosen, rejected) pairs in TRL's conversational preference format "
        '(Yuan et al. 2024, "Self-Rewarding Language Models"): the policy '
        f"{_code(rows[0]['policy_model'])} sampled {_md(config.get('num_answers'))} answers per prompt, the judge "
        f"{_code(rows[0]['judge_model'])} valued each ({_md(rows[0]['judge_mode'])} mode), the best is `chosen` "
        "and the worst `rejected`.",
        "",
        "## How it was made",
        "",
        f"- prompts {counts.get('prompts', 0)}: pairs {counts.get('pairs', 0)}, tied (no pair: best and worst "
        f"valued the same) {counts.get('tied', 0)}, under two valued answers {counts.get('too_few_valued', 0)}",
        f"- mean value margin between chosen and rejected: {margin:.3f}",
        "- `answers` keeps every sampled answer with its value; the prompt carries the inference tag the "
        "answers were sampled under.",
        "",
        "## Known limits",
        "",
        "- The judge is a model: its values are only as good as its probe AUC (`humpback probe-judge`).",
        "",
        "## Config",
        "",
        *_code_block(yaml.safe_dump(config, sort_keys=False).strip(), "yaml"),
        "",
    ]
    text = "---\n" + yaml.safe_dump(card, sort_keys=False) + "---\n\n" + "\n".join(body)
    card_path, edited = write_card(to, text)
    return {"rows": len(rows), "parquet": str(parquet), "card": str(card_path), "format": "dpo", "card_kept": edited}


CARD_DIGEST = "_card.sha256"  # the digest of the card as humpback last wrote it


def write_card(to: Path, text: str) -> tuple[Path, bool]:
    """Write the dataset card to ``to``/README.md, unless a card is there that someone edited
    since humpback wrote it: then the new card goes beside it (README.humpback.md) and the
    edited one is kept. Returns (where the new card is, whether an edited card was kept)."""
    import hashlib

    from .files import write_text

    card, digest_file = to / "README.md", to / CARD_DIGEST
    if card.exists():
        ours = digest_file.read_text(encoding="utf-8").strip() if digest_file.exists() else None
        if ours != hashlib.sha256(card.read_bytes()).hexdigest():
            beside = to / "README.humpback.md"
            write_text(beside, text)
            return beside, True
    write_text(card, text)
    write_text(digest_file, hashlib.sha256(text.encode("utf-8")).hexdigest() + "\n")
    return card, False


def _md(text: object) -> str:
    """A value inside Markdown prose or a table cell: one line, its Markdown characters escaped."""
    line = " ".join(str(text).split())
    return re.sub(r"([\\`*_{}\[\]<>()#+!|~])", r"\\\1", line)


def _code(text: object) -> str:
    """A value as an inline code span that nothing inside it can close (CommonMark: a longer fence)."""
    line = " ".join(str(text).split())
    fence = "`" * (max((len(run) for run in re.findall(r"`+", line)), default=0) + 1)
    return f"{fence} {line} {fence}"


def _code_block(text: str, info: str = "") -> list[str]:
    """A fenced block whose fence is longer than any run of backticks inside it."""
    fence = "`" * max(3, max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    return [fence + info, text, fence]


def _card_body(run: Path, stats: dict, config: dict, rows: list[dict], fmt: str, version: str) -> str:
    curated = sum(r["origin"] != "seed" for r in rows)
    funnel = stats.get("segment_funnel", {})
    lines = [
        f"# {_md(run.name)}: instruction-tuning data by instruction backtranslation",
        "",
        f"{len(rows)} (instruction, answer) pairs: {len(rows) - curated} from the seed, {curated} written for web "
        'text by a backward model and kept by self-curation (Li et al. 2023, "Self-Alignment with Instruction '
        f'Backtranslation"). Made with humpback {version}; format `{fmt}`.',
        "",
        "## How it was made",
        "",
        f"- Seed: {_code(config.get('seed'))}; corpus: {_code(config.get('corpus'))}; base model: "
        f"{_code(config.get('model'))}; iterations: {_md(config.get('iterations'))}.",
        f"- Curation: mode {_code((config.get('curate') or {}).get('mode'))}, selection "
        f"{_code((config.get('curate') or {}).get('select'))}; "
        f"final model: {_code(redact(str(stats.get('final_model'))))}.",
        "- The whole config is below.",
        "",
        "## Segmentation funnel",
        "",
        "| step | count |",
        "|---|---|",
    ]
    lines += [f"| {_md(k)} | {_md(v)} |" for k, v in sorted(funnel.items())]
    lines += [
        "",
        "## Table 2: sizes and lengths",
        "",
        "| set | count | instruction chars | output chars |",
        "|---|---|---|---|",
    ]
    for name, t in (stats.get("table2") or {}).items():
        lines.append(
            f"| {_md(name)} | {t['count']} | {t['instruction_chars']['mean']} | {t['output_chars']['mean']} |"
        )
    lines += ["", "## Ratings", ""]
    for i, it in (stats.get("iterations") or {}).items():
        lines.append(
            f"- iteration {i}: score histogram {_md(it.get('histogram'))}, selected by {_md(it.get('selected_by'))}"
        )
    rewrites = {i: it["rewrite"] for i, it in (stats.get("iterations") or {}).items() if it.get("rewrite")}
    if rewrites:
        lines += ["", "## Rewritten answers (back-and-forth translation)", ""]
        lines += [
            f"- iteration {i}: {r.get('rewritten', 0)} rewritten, {r.get('gate_rejected', 0)} kept as web text "
            f"by the faithfulness gate, {r.get('not_rewritten', 0)} kept as web text (no usable rewrite); "
            f"trained on the {_md(r.get('answers'))} answers"
            for i, r in rewrites.items()
        ]
    probe = stats.get("probe") or {}
    lines += ["", "## Judge probe (held-out seed pairs against made-up bad ones)", ""]
    lines += [
        f"- iteration {i}: AUC {p.get('auc')} {_md(p.get('auc_interval'))}: {_md(p.get('verdict'))}"
        for i, p in probe.items()
    ] or ["- no probe was run"]
    d = stats.get("decontamination")
    lines += ["", "## Decontamination", ""]
    lines += (
        [
            f"- against {', '.join(_code(a) for a in d['against'])} "
            f"({d['ngram']}-word overlap or the same instruction): "
            + ", ".join(f"{k} {v} removed" for k, v in d["removed"].items())
        ]
        if d
        else [
            "- not decontaminated against any prompt set (`decontaminate_against` was empty): check before evaluating "
            "on a benchmark (`humpback decontaminate`)"
        ]
    )
    lines += [
        "",
        "## Columns",
        "",
        "- the pair in the chosen format; `id`; `origin` (seed or augmented); for augmented rows `source` "
        "(file or URL and segment position), `segment_id`, `score` or `value` (what the judge gave), "
        "`selected_by`, `iteration`.",
        "",
        "## Known limits",
        "",
        "- The instructions of web rows were written by a model; the answers are web text as found, with "
        "boilerplate lines removed.",
        "- The judge's ability to tell good pairs from bad is the probe AUC above; a small judge is near chance "
        "on the rubric.",
        "",
        "## Config",
        "",
        *_code_block(yaml.safe_dump(config, sort_keys=False).strip(), "yaml"),
        "",
    ]
    return "\n".join(lines)


def push(folder: Path, repo_id: str, private: bool = False) -> str:
    """Upload the folder to the hub as a dataset repository (needs a token and a reachable hub)."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    # humpback's bookkeeping (markers, lock, the card's digest, a card kept beside an edited one) stays here
    api.upload_folder(
        folder_path=str(folder),
        repo_id=repo_id,
        repo_type="dataset",
        ignore_patterns=[".*", "**/.*", CARD_DIGEST, "README.humpback.md"],
    )
    return f"https://huggingface.co/datasets/{repo_id}"
