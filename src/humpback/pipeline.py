"""The whole loop, composed from the stages (paper, section 2; METHOD.md, "The loop").

    seed ──> backward model M_yx ──> augment: n instructions per segment, the best kept ──> candidates
    corpus ──> segments ──────────────────────^                   ^ M_0 reads each one's fit
    seed ──> M_0 ──rates──> A_k(1) ──> M_1 = base + seed + A_k(1) ──rates──> A_k(2) ──> M_2 ...

Candidates are generated once; each iteration re-rates the same candidates with the latest
model, and every M_i is trained from the base. Each step writes into the run directory and is
skipped when already finished, so rerunning the same command resumes.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from pydantic import BaseModel

from .augment import augment
from .backward import train_backward
from .config import RunConfig, dump_yaml, field_effect, load_yaml
from .curate import curate
from .labels import LABELS_FILE
from .models import check_chat_template, check_model, load_tokenizer
from .outputs import StaleOutputError, changed_fields, flat_fields, stage_output
from .presets import DIFFERENCES, preset_values
from .probe import REPORT_FILE, JudgeProbe, answer_loss, probe_stage, split_probe
from .records import Reject, SeedPair
from .report import build_report
from .scoring import check_selection
from .seed import load_seed
from .segment import segment
from .shards import read_jsonl, stage_info, stage_rejects, write_json, write_jsonl
from .stats import add_cost, print_summary, run_stats, stage_accounting
from .train import train_forward

log = logging.getLogger("humpback")


def run(config: RunConfig, quiet: bool = False) -> dict:
    """Run (or resume) the loop into ``config.out``; returns the run statistics.

    ``config.out`` must be new, empty or a run directory; one process at a time. A rerun resumes
    only a run made with the same settings: with other ones it stops and names them, or with
    ``config.recompute`` redoes every stage they change and every stage after it."""
    with stage_output(config.out, "run") as out:  # first: a folder holding a user's files is refused before any work
        base_model = check_model(config.model)  # a wrong model, template or seed fails now, not hours later
        check_chat_template(base_model, config.chat_template, system_tags=config.forward.tag_placement == "system")
        seed, seed_rejects = load_seed(config.seed, config.max_seed_examples)
        return _run(config, out, base_model, seed, seed_rejects, quiet)


def _rewritten(curated: list, config: RunConfig, latest_model: str, out_dir: Path, redo: bool) -> list:
    """The curated pairs with their answers rewritten (rewrite.py), by rewrite.model or the
    iteration's judge; with forward.answers original, the web text stays the answer."""
    from .rewrite import rewrite
    from .shards import read_stage

    rewrite(curated, config.rewrite.model or latest_model, out_dir, config.rewrite, executor=config, recompute=redo)
    rows = list(read_stage(out_dir))
    if config.forward.answers == "original":
        return [{**r, "output": r["original_output"]} for r in rows]
    return rows


def _effect(field: str) -> str | None:
    """The effect config.py declares for a dotted RunConfig field (``segment.min_chars``); None
    for a name the config does not have."""
    model: type[BaseModel] = RunConfig
    *sections, name = field.split(".")
    for section in sections:
        annotation = model.model_fields[section].annotation if section in model.model_fields else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return field_effect(model, name) if name in model.model_fields else None


def _free(field: str) -> bool:
    """Whether a resumed run may change this field (``segment.min_chars``, ``iterations``): the
    fields config.py declares ``runtime`` change how fast or where a run goes, not what it makes."""
    return _effect(field) == "runtime"


def check_run_config(out: Path, config: RunConfig) -> None:
    """Refuse to resume a run made with other settings (unless config.recompute), naming them."""
    saved_path = out / "config.yaml"
    if config.recompute or not saved_path.exists():
        return
    saved = _same_spelling(load_yaml(saved_path))
    now = _same_spelling(config.model_dump(mode="json"))
    changed = [f for f in changed_fields(saved, now) if not _free(f)]
    if changed:
        flat_saved, flat_now = flat_fields(saved), flat_fields(now)
        shown = ", ".join(f"{f} ({flat_saved.get(f)!r} -> {flat_now.get(f)!r})" for f in changed[:6])
        raise StaleOutputError(
            f"{out} was made with other settings: {shown}{', ...' if len(changed) > 6 else ''}. "
            f"Rerun with the same settings to resume, give a new --out, or pass --recompute "
            f"to redo the stages they change"
        )


def _same_spelling(cfg: dict) -> dict:
    """Paths to the seed, corpus and model as absolute paths: ./web and /home/me/web are one corpus."""
    for key in ("seed", "corpus", "model"):
        value = cfg.get(key)
        if isinstance(value, str) and Path(value).expanduser().exists():
            cfg[key] = str(Path(value).expanduser().resolve())
    return cfg


def _run(
    config: RunConfig, out: Path, base_model: str, seed: list[SeedPair], seed_rejects: list[Reject], quiet: bool
) -> dict:
    check_run_config(out, config)
    dump_yaml(config, out / "config.yaml")
    seed, held_out = split_probe(seed, config.probe_share, config.probe_min_pairs, config.probe_max_pairs)
    labelled = config.curate.labels is not None or (out / "labels" / LABELS_FILE).is_file()
    check_selection(config.curate, has_probe=bool(held_out) or labelled)  # before any work: no silent empty A_k
    clean = _decontaminator(config, out)
    seed = clean(seed, 0)
    write_jsonl(out / "probe" / "pairs.jsonl", held_out)  # no training of the run sees these
    write_jsonl(out / "seed" / "part-00000.jsonl", seed)
    write_jsonl(out / "seed" / "_rejects" / "part-00000.jsonl", seed_rejects)
    models = out / "models"

    executor = config  # a RunConfig is an ExecutorConfig: its executor fields apply to the corpus stages
    redo = config.recompute
    segmented = segment(config.corpus, out / "segments", config.segment, executor=executor, recompute=redo)
    if not segmented["records"]:  # nothing to backtranslate: training models on the seed alone is not the method
        from .shards import stage_counters

        raise NoSegmentsError(
            f"the corpus {config.corpus} gave no segments (funnel: {dict(stage_counters(out / 'segments'))}; "
            f"rejects in {out / 'segments' / '_rejects'}); give a corpus with header-structured "
            f"pages or text of {config.segment.min_chars}-{config.segment.max_chars} characters"
        )
    train_backward(seed, base_model, models / "backward", config.backward, recompute=redo)
    train_set = out / "iter0" / "train.jsonl"  # M_0's training set: the seed alone
    info = train_forward(seed, [], base_model, models / "m0", config.forward, dataset_path=train_set, recompute=redo)
    # of n instructions sampled per segment, the one M_0 reads as fitting it best is kept
    augment_cfg = (
        config.augment
        if config.augment.fit_model
        else config.augment.model_copy(update={"fit_model": str(models / "m0")})
    )
    augment(
        out / "segments",
        str(models / "backward"),
        out / "candidates",
        augment_cfg,
        system_prompt=config.backward.system_prompt,
        executor=executor,
        recompute=redo,
    )
    curate_cfg = config.curate
    if curate_cfg.labels is None and (out / "labels" / LABELS_FILE).is_file():  # `humpback label RUN` wrote them
        curate_cfg = curate_cfg.model_copy(update={"labels": out / "labels"})
    for i in range(1, config.iterations + 1):
        iteration_dir = out / f"iter{i}"
        probe = probe_stage(
            held_out,
            str(models / f"m{i - 1}"),
            config.curate,
            out / "probe" / f"iter{i}",
            instruction_pool=[p["instruction"] for p in seed + held_out],
            recompute=redo,
        )
        check_judge(probe, config, i)
        curated = curate(
            out / "candidates",
            str(models / f"m{i - 1}"),
            iteration_dir,
            curate_cfg,
            iteration=i,
            executor=executor,
            recompute=redo,
            probe=probe,
        )
        curated = clean(curated, i)
        if config.rewrite.enabled:  # back-and-forth translation: answers rewritten from their web text
            curated = _rewritten(curated, config, str(models / f"m{i - 1}"), iteration_dir / "rewritten", redo)
        train_set = iteration_dir / "train.jsonl"
        info = train_forward(
            seed, curated, base_model, models / f"m{i}", config.forward, dataset_path=train_set, recompute=redo
        )

    last = config.iterations
    for t in range(1, config.dpo_iterations + 1):  # self-rewarding: M_t judges its own answers, DPO gives M_t+1
        last = _self_rewarding(config, out, models, held_out, seed, last, t, redo)

    final = out / "final"
    final.mkdir(exist_ok=True)
    shutil.copyfile(train_set, final / "train.jsonl")
    # the final dataset names the model trained on it, and the digest that training recorded
    write_json(
        final / "dataset.json",
        {"model": str(models / f"m{config.iterations}"), "examples_digest": info.get("examples_digest")},
    )
    stats = run_stats(
        out, config.iterations, config.curate.k, load_tokenizer(base_model), answers=config.forward.answers
    )
    for t in range(1, config.dpo_iterations + 1):  # the self-rewarding stages' tokens and time
        for name, rel in ((f"preferences dpo{t}", f"dpo{t}/preferences"), (f"train m{config.iterations + t}", "")):
            folder = out / rel if rel else models / f"m{config.iterations + t}"
            stats["accounting"][name] = stage_accounting(folder, stage_info(folder))
    add_cost(stats["accounting"], config.price_per_million_tokens, config.price_per_hour)
    stats["answer_loss"] = (
        {
            f"m{i}": answer_loss(held_out, str(models / f"m{i}"), placement=config.forward.tag_placement)
            for i in range(last + 1)
        }
        if held_out
        else {}
    )
    stats["rejects"] = _collect_rejects(out, config.iterations)
    stats["preset"] = preset_report(config)
    if config.decontaminate_against:
        from .shards import read_json_counters

        removed = read_json_counters(out / "decontaminate")
        stats["decontamination"] = {
            "against": [str(p) for p in config.decontaminate_against],
            "ngram": config.decontaminate_ngram,
            "removed": {
                ("seed" if i == 0 else f"iter{i}"): c.get("removed", 0)
                for i, c in removed.items()
                if i <= config.iterations
            },
        }
    stats["final_dataset"] = str(final / "train.jsonl")
    stats["final_model"] = str(models / f"m{last}")
    if config.dpo_iterations:
        stats["dpo"] = _dpo_stats(out, config)
    stats["final_dataset_count"] = sum(1 for _ in read_jsonl(final / "train.jsonl"))
    write_json(out / "stats.json", stats)
    stats["report"] = str(build_report(out, stats)["html"])
    if not quiet:
        print_summary(stats, out, config.curate.k)
    return stats


def _self_rewarding(
    config: RunConfig, out: Path, models: Path, held_out: list, seed: list, latest: int, t: int, redo: bool
) -> int:
    """One self-rewarding iteration: M_latest, its judge probed first, samples and values answers to
    the run's instructions; M_latest+1 is M_latest trained with DPO on the best-against-worst pairs."""
    from .preferences import preferences
    from .shards import read_stage
    from .train import dpo

    policy = str(models / f"m{latest}")
    probe = probe_stage(
        held_out,
        config.preferences.judge_model or policy,
        config.preferences.judge,
        out / "probe" / f"dpo{t}",
        instruction_pool=[p["instruction"] for p in seed + held_out],
        recompute=redo,
    )
    check_judge(probe, config, latest + 1)
    folder = out / f"dpo{t}" / "preferences"
    preferences(out / "candidates", policy, folder, config.preferences, executor=config, recompute=redo)
    pairs = list(read_stage(folder))
    if not pairs:
        raise NoSegmentsError(
            f"self-rewarding iteration {t}: m{latest} gave no preference pair (every prompt tied or had "
            f"under two valued answers; see {folder / '_rejects'}): raise --preferences-num-answers"
        )
    dpo(pairs, policy, models / f"m{latest + 1}", config.dpo, desc=f"train m{latest + 1} (dpo)", recompute=redo)
    return latest + 1


def _dpo_stats(out: Path, config: RunConfig) -> dict:
    """Per self-rewarding iteration: the pairs made, the ties, and the DPO training."""
    from .shards import stage_counters, stage_info

    rows = {}
    for t in range(1, config.dpo_iterations + 1):
        counts = stage_counters(out / f"dpo{t}" / "preferences")
        trained = stage_info(out / "models" / f"m{config.iterations + t}")
        report = out / "probe" / f"dpo{t}" / REPORT_FILE
        probe = json.loads(report.read_text(encoding="utf-8")) if report.is_file() else None
        rows[str(t)] = {
            "policy": f"m{config.iterations + t - 1}",
            "model": f"m{config.iterations + t}",
            "prompts": counts.get("prompts", 0),
            "pairs": counts.get("pairs", 0),
            "tied": counts.get("tied", 0),
            "too_few_valued": counts.get("too_few_valued", 0),
            "steps": trained.get("steps"),
            "first_loss": trained.get("first_loss"),
            "last_loss": trained.get("last_loss"),
            "judge_probe_auc": probe.get("auc") if probe else None,
        }
    return rows


def check_judge(probe: JudgeProbe | None, config: RunConfig, iteration: int) -> None:
    """Say plainly when the judge about to curate is near chance on the probe (or stop, if asked)."""
    if probe is None or probe.report["auc"] is None or probe.report["auc"] >= config.curate.min_probe_auc:
        return
    message = f"iteration {iteration}: judge m{iteration - 1} is {probe.report.get('verdict')}"
    if config.stop_on_chance_judge:
        raise JudgeError(message + " (stop_on_chance_judge is set)")
    log.warning(message)


def preset_report(config: RunConfig) -> dict | None:
    """Which preset a run started from, what still differs from what it stands for (the paper, for
    ``paper``), and every field that decides the run's output and was changed from the preset's value
    (flags or a --config file; the seed, corpus and model are always the user's)."""
    if config.preset is None:
        return None
    preset = flat_fields(RunConfig(preset=config.preset).model_dump(mode="json"))
    named = set(flat_fields(preset_values(config.preset)))  # what the preset sets, runtime fields too
    now = flat_fields(config.model_dump(mode="json"))
    changed = []
    for name, value in now.items():
        runtime = _effect(name) == "runtime" and name not in named
        if runtime or name in ("seed", "corpus", "model", "preset"):
            continue
        if value != preset.get(name):
            changed.append(f"{name}: {preset.get(name)!r} -> {value!r}")
    return {"name": config.preset, "differences": DIFFERENCES[config.preset], "changed": changed}


class NoSegmentsError(ValueError):
    """The corpus yielded no segment to write an instruction for."""


class JudgeError(ValueError):
    """The judge cannot tell good pairs from bad, and the run was asked to stop then."""


def _decontaminator(config: RunConfig, out: Path):
    """clean(pairs, iteration) -> the pairs that overlap no prompt of config.decontaminate_against;
    what each removes is kept in OUT/decontaminate (rejects and counters, 0 = the seed)."""
    from .decontaminate import BenchmarkIndex, decontaminate, load_benchmarks

    if not config.decontaminate_against:
        return lambda pairs, iteration: pairs
    index = BenchmarkIndex(load_benchmarks(config.decontaminate_against), config.decontaminate_ngram)

    def clean(pairs: list[dict], iteration: int) -> list[dict]:
        kept, rejects, counts = decontaminate(pairs, index)
        write_jsonl(out / "decontaminate" / "_rejects" / f"part-{iteration:05d}.jsonl", rejects)
        write_json(out / "decontaminate" / "_counters" / f"part-{iteration:05d}.json", dict(counts))
        log.info(
            "decontamination (%s): %d of %d pairs removed",
            "seed" if iteration == 0 else f"iteration {iteration}",
            counts["removed"],
            len(pairs),
        )
        return kept

    return clean


def _collect_rejects(out: Path, iterations: int) -> int:
    """Every stage's rejects in one rejects.jsonl (rebuilt each run, so resuming never duplicates)."""
    dirs = [out / "seed", out / "segments", out / "candidates", out / "decontaminate"] + [
        out / f"iter{i}" / "ratings" for i in range(1, iterations + 1)
    ]
    rejects = [r for d in dirs for r in stage_rejects(d)]
    write_jsonl(out / "rejects.jsonl", rejects)
    return len(rejects)
