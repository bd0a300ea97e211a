"""The command line: a thin typer layer over the Python API.

Every config field is a flag (``--max-chars``, and for ``run`` the stage's prefix:
``--segment-max-chars``); ``--config FILE.yaml`` sets any of them and flags override it.
"""

from __future__ import annotations

import inspect
import json
import logging
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Optional

import typer
from pydantic import BaseModel, ValidationError

import humpback as api

from .config import (
    AblateConfig,
    AugmentConfig,
    BackwardConfig,
    BackwardEvalConfig,
    CurateConfig,
    EvalConfig,
    ExecutorConfig,
    ForwardConfig,
    GenerateConfig,
    PreferencesConfig,
    RewriteConfig,
    RunConfig,
    SegmentConfig,
    deep_merge,
    load_yaml,
)
from .outputs import output_kind, owned_output

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: the rich panels squeeze each help text into a narrow column at 80
    help="Instruction backtranslation: web text -> instruction data -> a better model.",
)


def _flag_type(annotation: Any) -> Any | None:
    """The CLI type of a config field, or None if it is only settable from YAML."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]  # Optional[X] -> X
    if typing.get_origin(annotation) is Literal:
        return str
    if annotation in (int, float, str, bool, Path):
        return annotation
    if typing.get_origin(annotation) is list and typing.get_args(annotation)[0] in (str, Path):
        # repeatable: --segment-languages en --segment-languages de
        return list[str] if typing.get_args(annotation)[0] is str else list[Path]
    return None


def _config_params(model: type[BaseModel], prefix: str = "") -> list[inspect.Parameter]:
    """One typer option per scalar config field; nested configs get their name as prefix."""
    params = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if not prefix:  # a section's own sections (run's preferences.judge) are YAML keys, not flags
                params += _config_params(annotation, f"{name}_")
            continue
        kind = _flag_type(annotation)
        if kind is None:
            continue
        flag = f"--{prefix}{name}".replace("_", "-")
        decls = (f"{flag}/--no-{prefix}{name}".replace("_", "-"),) if kind is bool else (flag,)
        help_text = (field.description or "").replace("\n", " ")
        if typing.get_origin(kind) is list:
            help_text += " Repeat the flag for each value; give it once as '' for an empty list."
        option = typer.Option(None, *decls, help=help_text, show_default=False)
        params.append(
            inspect.Parameter(
                f"{prefix}{name}", inspect.Parameter.KEYWORD_ONLY, default=option, annotation=Optional[kind]
            )
        )
    return params


def _nest(flat: dict, model: type[BaseModel]) -> dict:
    """{'segment_max_chars': 9} -> {'segment': {'max_chars': 9}} following the model's nesting."""
    nested: dict = {}
    for key, value in flat.items():
        if value is None or (isinstance(value, (list, tuple)) and not value):
            continue  # not given (a list flag not given arrives empty)
        if isinstance(value, (list, tuple)):
            value = [v for v in value if str(v) != ""]  # --flag '' alone: the empty list
        target, current = nested, model
        while key not in current.model_fields:
            head = next(
                n
                for n in current.model_fields
                if key.startswith(n + "_") and isinstance(current.model_fields[n].annotation, type)
            )
            target = target.setdefault(head, {})
            current = typing.cast(type[BaseModel], current.model_fields[head].annotation)
            key = key[len(head) + 1 :]
        target[key] = value
    return nested


COMMAND_CONFIGS: dict[str, type[BaseModel]] = {}
"""Each command built from a config, and its config class (the docs' reference is made from them)."""


def config_command(name: str, model: type[BaseModel], extra: list[inspect.Parameter], help_text: str):
    """Register a command whose options are `extra` plus every field of `model`."""
    COMMAND_CONFIGS[name] = model

    def decorator(fn: Callable[..., None]):
        config_param = inspect.Parameter(
            "config",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Optional[Path],
            default=typer.Option(None, "--config", help="YAML file of options; flags override it."),
        )
        fields = _config_params(model)
        extra_names = {p.name for p in extra}
        fields = [p for p in fields if p.name not in extra_names]

        def command(**kwargs):
            _setup_logging()
            overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in {p.name for p in fields}}
            try:
                yaml_values = load_yaml(kwargs.pop("config"))
                cfg = model.model_validate(deep_merge(yaml_values, _nest(overrides, model)))
            except ValidationError as e:
                _fail(f"invalid config: {config_errors(e)}")
            except ValueError as e:
                _fail(str(e))
            try:
                fn(cfg, **kwargs)
            except ValidationError as e:
                _fail(f"invalid config: {config_errors(e)}")
            except (
                api.SeedError,
                api.ModelError,
                api.EngineError,
                FileNotFoundError,
                NotADirectoryError,
                IsADirectoryError,
                PermissionError,
                ValueError,
            ) as e:
                _fail(str(e))

        command.__signature__ = inspect.Signature(extra + [config_param] + fields)  # type: ignore[attr-defined]
        command.__doc__ = help_text
        app.command(name, help=help_text)(command)
        return fn

    return decorator


def _fail(message: str) -> typing.NoReturn:
    """A user's mistake: one line on stderr (redacted, control characters escaped), exit status 2,
    no traceback."""
    from .files import safe_name
    from .redaction import redact

    typer.secho(f"error: {safe_name(redact(message))}", fg="red", err=True)
    raise typer.Exit(2)


# Fields whose values may carry a secret: their value is never repeated in an error.
SECRET_FIELDS = {"base_url", "api_key_env"}


def config_errors(error: ValidationError) -> str:
    """pydantic's errors on one line: 'curate.k: must be <= 5 (got 7); ...'. A value is repeated
    only when it cannot be a secret (not a secret-bearing field, not shaped like a key), redacted."""
    from .redaction import looks_like_key, redact

    parts = []
    for e in error.errors():
        where = ".".join(str(x) for x in e["loc"]) or "config"
        value = e.get("input")
        secret = (
            bool(e["loc"]) and str(e["loc"][-1]) in SECRET_FIELDS or (isinstance(value, str) and looks_like_key(value))
        )
        got = "" if e["type"] == "missing" or secret or isinstance(value, dict) else f" (got {redact(repr(value))})"
        parts.append(f"{where}: {e['msg'].removeprefix('Value error, ')}{got}")
    return "; ".join(parts)


def _opt(name: str, annotation: Any, default: Any, help_text: str, *decls: str) -> inspect.Parameter:
    decls = decls or (f"--{name.replace('_', '-')}",)
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        annotation=annotation,
        default=typer.Option(default, *decls, help=help_text),
    )


def _setup_logging() -> None:
    from .redaction import RedactingFilter

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s", stream=sys.stderr)
    for handler in logging.getLogger().handlers:  # every line written: redacted, one line
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    for noisy in ("transformers", "datasets", "httpx", "urllib3", "trafilatura", "htmldate", "courlan"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


@config_command(
    "run", RunConfig, [], "Run (or resume) the whole loop: segment, backward, augment, curate and train x iterations."
)
def _run(cfg: RunConfig) -> None:
    api.run(cfg)


@config_command(
    "plan",
    RunConfig,
    [
        _opt("sample", int, 200, "Documents segmented to measure segments per document and their length.", "--sample"),
        _opt(
            "documents",
            Optional[int],
            None,
            "The corpus's document count, when you know it (else the corpus is counted, streamed).",
            "--documents",
        ),
        _opt(
            "segments",
            Optional[int],
            None,
            "The number of segments the run will augment, when you know it (the paper's 502,133): overrides "
            "documents x segments per document; the sample still gives their length.",
            "--segments",
        ),
        _opt(
            "from_run",
            Optional[Path],
            None,
            "A finished run on the hardware, engine and model you will use: its measured tokens/s per stage.",
            "--from-run",
        ),
        _opt(
            "throughput",
            Optional[Path],
            None,
            'JSON of tokens/s per stage kind: {"augment": 900, "curate": 2500, "train": 4000} (and '
            '"segment_documents": documents/s).',
            "--throughput",
        ),
        _opt(
            "selected_share",
            float,
            0.0833,
            "Share of candidates curation keeps (the paper's A_5: 41.8k of 502k).",
            "--selected-share",
        ),
        _opt(
            "measure",
            bool,
            False,
            "Measure tokens/s here first: a few batches of augmentation and rating and 3 training steps "
            "with the run's engines and base model (--from-run and --throughput rates win).",
            "--measure",
        ),
        _opt("out", Optional[Path], None, "Also write the plan as JSON to this new file.", "--out"),
    ],
    "Estimate each stage's tokens, time and cost for a run's settings before anything runs.",
)
def _plan(
    cfg: RunConfig,
    sample: int,
    documents: int | None,
    segments: int | None,
    from_run: Path | None,
    throughput: Path | None,
    selected_share: float,
    measure: bool,
    out: Path | None,
) -> None:
    from .plan import plan, plan_lines, throughput_from_run

    rates: dict[str, float] = {}
    if from_run is not None:
        if not (from_run / "stats.json").is_file():
            raise FileNotFoundError(f"{from_run} is not a finished run (no stats.json)")
        rates |= throughput_from_run(from_run)
    if throughput is not None:
        try:
            given = json.loads(throughput.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ValueError(f"--throughput {throughput}: not a JSON file of tokens/s per stage ({e})") from None
        if not isinstance(given, dict) or not all(isinstance(v, (int, float)) and v > 0 for v in given.values()):
            raise ValueError(
                f'--throughput {throughput}: give {{"stage": tokens per second, ...}} with positive numbers'
            )
        rates |= {str(k): float(v) for k, v in given.items()}
    if out is not None and (out.exists() or out.is_symlink()):
        raise ValueError(f"{out} already exists: give a new file name (humpback never overwrites a file)")
    result = plan(cfg, sample, documents, rates, selected_share, measure=measure, segments=segments)
    for line in plan_lines(result):
        typer.echo(line)
    if out is not None:
        from .files import new_file

        try:
            with new_file(out) as tmp:  # taken exclusively: a file made meanwhile is never replaced
                tmp.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        except FileExistsError:
            raise ValueError(
                f"{out} already exists: give a new file name (humpback never overwrites a file)"
            ) from None
        typer.echo(f"plan written to {out}")


# The corpus stages' commands take the executor flags (--executor ray, --ray-address, ...) too.
_EXECUTOR_PARAMS = _config_params(ExecutorConfig)
_RECOMPUTE = _opt(
    "recompute",
    bool,
    False,
    "When --out holds this stage made with other settings or inputs, redo it (default: stop and name what changed).",
    "--recompute",
)


def _engine_model(model: str, cfg) -> str:
    """The model as the engine takes it: a path to load, or for the openai engine the served name."""
    return model if cfg.engine == "openai" else api.resolve_model(model)


def _executor(flags: dict) -> ExecutorConfig:
    return ExecutorConfig.model_validate({k: v for k, v in flags.items() if v is not None})


@config_command(
    "segment",
    SegmentConfig,
    [
        _opt(
            "corpus",
            str,
            ...,
            "Corpus file, directory or glob (HTML, WARC, JSONL, TXT/MD, Parquet/Arrow, a datasets folder), or 'demo'.",
        ),
        _opt("out", Path, ..., "Output directory for the segment shards."),
        _RECOMPUTE,
        *_EXECUTOR_PARAMS,
    ],
    "Split a web corpus into filtered, deduplicated header segments.",
)
def _segment(cfg: SegmentConfig, corpus: str, out: Path, recompute: bool, **executor) -> None:
    info = api.segment(corpus, out, cfg, executor=_executor(executor), recompute=recompute)
    typer.echo(
        f"{info['records']} segments in {out} ({info['rejects']} rejects); funnel: {dict(api.stage_counters(out))}"
    )


@config_command(
    "augment",
    AugmentConfig,
    [
        _opt("segments", Path, ..., "Directory of segment shards (from `humpback segment`)."),
        _opt("model", str, ..., "The backward model directory."),
        _opt("out", Path, ..., "Output directory for the candidate shards."),
        _opt("system_prompt", Optional[str], None, "Backward model system prompt (must match its training)."),
        _RECOMPUTE,
        *_EXECUTOR_PARAMS,
    ],
    "Self-augmentation: write an instruction for every segment with the backward model.",
)
def _augment(
    cfg: AugmentConfig, segments: Path, model: str, out: Path, system_prompt: str | None, recompute: bool, **executor
) -> None:
    info = api.augment(
        segments,
        _engine_model(model, cfg),
        out,
        cfg,
        system_prompt=system_prompt,
        executor=_executor(executor),
        recompute=recompute,
    )
    typer.echo(f"{info['records']} candidates in {out} ({info['rejects']} rejects)")


@config_command(
    "curate",
    CurateConfig,
    [
        _opt("candidates", Path, ..., "Directory of candidate shards (from `humpback augment`)."),
        _opt("model", str, ..., "The judge model (M_0, M_1, ...)."),
        _opt("out", Path, ..., "Output directory: ratings/ and curated/ go inside."),
        _opt("iteration", int, 1, "Iteration number recorded with each rating."),
        _opt(
            "compare",
            bool,
            False,
            "Instead of curating, rate a seeded sample (--compare-sample) both ways, "
            "generate and logprob, and report their agreement; with --probe-seed, also every mode's judge-probe AUC "
            "side by side (written to OUT/compare.json).",
            "--compare",
        ),
        _opt(
            "probe_seed",
            Optional[str],
            None,
            "Human-written pairs no training saw (any seed shape): the judge is probed on them in its "
            "mode first (into OUT/probe), for select calibrated and features mode; with --compare, in every mode.",
            "--probe-seed",
        ),
        _opt(
            "probe",
            Optional[Path],
            None,
            "A judge probe already made (`humpback probe-judge --out DIR`, or a run's probe/iterN) "
            "for select calibrated and features mode.",
            "--probe",
        ),
        _RECOMPUTE,
        *_EXECUTOR_PARAMS,
    ],
    "Self-curation: rate every candidate on the 5-point rubric and keep A_k.",
)
def _curate(
    cfg: CurateConfig,
    candidates: Path,
    model: str,
    out: Path,
    iteration: int,
    compare: bool,
    probe_seed: str | None,
    probe: Path | None,
    recompute: bool,
    **executor,
) -> None:
    if probe_seed and probe:
        raise ValueError("give --probe-seed (probe the judge now) or --probe (a probe made before), not both")
    if compare:
        pairs = api.load_seed(probe_seed)[0] if probe_seed else None
        with owned_output(out, "curate-compare") as out:
            report = api.compare_modes(
                candidates, _engine_model(model, cfg), cfg, out_path=Path(out) / "compare.json", probe_pairs=pairs
            )
        _print_comparison(report)
        if report["probe"]:
            _print_probe(
                report["probe"],
                f"judge probe: {report['judge_model']}, {len(pairs or [])} held-out pairs, "
                "every rating mode (AUC, 0.5 = chance)",
            )
        else:
            typer.echo("give --probe-seed FILE (pairs no training saw) to compare every mode by judge-probe AUC")
        typer.echo(f"written: {Path(out) / 'compare.json'}")
        return
    from .probe import JudgeProbe, probe_stage
    from .scoring import check_selection

    check_selection(cfg, has_probe=bool(probe_seed or probe))  # before the probe or any rating runs
    judge = _engine_model(model, cfg)
    found = JudgeProbe.load(probe, cfg.mode) if probe else None
    with owned_output(out, "curate") as out:
        if probe_seed:
            found = probe_stage(api.load_seed(probe_seed)[0], judge, cfg, out / "probe", recompute=recompute)
        curated = api.curate(
            candidates,
            judge,
            out,
            cfg,
            iteration=iteration,
            executor=_executor(executor),
            recompute=recompute,
            probe=found,
        )
    hist = api.histogram(api.read_stage(out / "ratings"))
    rule = curated[0]["selected_by"] if curated else f"curate.select {cfg.select}"
    typer.echo(f"scores {hist}; selected {len(curated)} ({rule}) in {out / 'curated'}")
    if not curated:
        typer.echo("nothing was selected: the curated set is empty")


@config_command(
    "probe-judge",
    CurateConfig,
    [
        _opt("model", str, ..., "The judge model (M_0, ...), a path, or 'smollm2-135m'."),
        _opt(
            "seed",
            str,
            ...,
            "Human-written pairs no training saw (any seed shape), e.g. a held-out share of your seed.",
        ),
        _opt(
            "modes",
            str,
            "logprob,yes,pmi,features",
            "Comma-separated ways to score: generate, logprob (the rubric), yes, pmi, features (likelihood signals).",
        ),
        _opt("limit", Optional[int], None, "Use the first N pairs."),
        _opt(
            "out",
            Path,
            Path("probe"),
            "Output directory: probe.json, and one probe folder per mode (for curate --probe).",
        ),
    ],
    "Can this judge tell good pairs from bad? AUC on held-out pairs against six kinds of bad ones, per scoring mode.",
)
def _probe_judge(cfg: CurateConfig, model: str, seed: str, modes: str, limit: int | None, out: Path) -> None:
    from .engines import engine_for
    from .files import write_json
    from .probe import probe_stage
    from .scoring import rating_mode

    pairs, _ = api.load_seed(seed, limit)
    names = [rating_mode(m.strip()).name for m in modes.split(",") if m.strip()]  # an unknown mode: before any work
    with owned_output(out, "probe") as out:
        judge = _engine_model(model, cfg)
        with engine_for(judge, cfg) as engine:  # one judge load for every mode
            probes = [
                probe_stage(pairs, judge, cfg.model_copy(update={"mode": mode}), out / mode, engine=engine)
                for mode in names
            ]
        reports = [p.report for p in probes if p is not None]
        write_json(out / "probe.json", {"reports": reports})
    _print_probe(reports, f"judge probe: {judge}, {len(pairs)} held-out pairs (AUC, 0.5 = chance)")
    typer.echo(f"written: {out / 'probe.json'}")


def _print_probe(reports: Sequence[Mapping], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    from .probe import NEGATIVE_KINDS

    table = Table(title=title)
    for col in ["mode", "AUC", "95% interval", *NEGATIVE_KINDS, "s/pair"]:
        table.add_column(col, justify="right")
    for r in reports:
        low, high = r["auc_interval"]
        table.add_row(
            r["mode"],
            str(r["auc"]),
            f"{low}-{high}",
            *(str(r["by_kind"][k]["auc"]) for k in NEGATIVE_KINDS),
            str(r["seconds_per_pair"]),
        )
    console = Console()
    console.print(table)
    for r in reports:
        console.print(f"{r['mode']}: {r['verdict']}")


def _print_comparison(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"generate vs logprob rating, {report['both_rated']} of {report['sampled']} candidates rated both ways"
    )
    table.add_column("generate \\ logprob")
    for score in range(1, 6):
        table.add_column(str(score), justify="right")
    for g in range(1, 6):
        row = [sum(1 for p in report["pairs"] if p["generate"] == g and p["logprob"] == lp) for lp in range(1, 6)]
        table.add_row(str(g), *map(str, row))
    console = Console()
    console.print(table)
    console.print(
        f"exact agreement {report['exact_agreement']}, within one point {report['within_one']}; "
        f"generate mode left {report['generate_unparsed']} unparsed"
    )


@config_command(
    "train",
    ForwardConfig,
    [
        _opt(
            "kind",
            str,
            "forward",
            "'backward' (output -> instruction), 'forward' (tagged instruction -> output) or 'dpo' "
            "(TRL's DPOTrainer on --preferences, from --model).",
            "--kind",
        ),
        _opt("seed", Optional[str], None, "Backward and forward: seed data file (any supported shape) or 'demo'."),
        _opt(
            "curated",
            Optional[Path],
            None,
            "Forward only: curated candidates (a directory of shards or a JSONL file).",
        ),
        _opt(
            "preferences",
            Optional[Path],
            None,
            "DPO only: preference pairs (a `humpback preferences` folder, or JSONL of prompt/chosen/rejected).",
        ),
        _opt("beta", float, 0.1, "DPO only: beta, how far the policy may move from the reference (Yuan et al.: 0.1)."),
        _opt("model", str, "smollm2-135m", "Base model."),
        _opt("out", Path, ..., "Output model directory."),
        _opt("system_prompt", Optional[str], None, "Backward only: the backward model's system message."),
        _RECOMPUTE,
    ],
    "Fine-tune a backward model (--kind backward), a forward model on seed (+ curated) data, or "
    "a model with DPO on preference pairs (--kind dpo).",
)
def _train(
    cfg: ForwardConfig,
    kind: str,
    seed: str | None,
    curated: Path | None,
    preferences: Path | None,
    beta: float,
    model: str,
    out: Path,
    system_prompt: str | None,
    recompute: bool,
) -> None:
    base = api.check_model(model)
    if kind == "dpo":
        if preferences is None:
            raise ValueError("--kind dpo trains on preference pairs: give --preferences DIR_OR_JSONL")
        from .config import PreferenceTrainConfig
        from .train import dpo, read_preferences

        pairs, rejects = read_preferences(preferences)
        if rejects:
            typer.echo(f"{len(rejects)} preference rows rejected (named above); training on the {len(pairs)} others")
        # the flags given, over DPO's own defaults (no dropout, one epoch, a tenth of SFT's rate)
        given = cfg.model_dump(include=cfg.model_fields_set - {"tag_placement", "answers"})
        info = dpo(pairs, base, out, PreferenceTrainConfig(**given, beta=beta), recompute=recompute)
        typer.echo(f"trained {out}: {info}")
        return
    if seed is None:
        raise ValueError(f"--kind {kind} trains on the seed: give --seed FILE (or 'demo')")
    examples, _ = api.load_seed(seed)
    if kind == "backward":
        fields = cfg.model_dump(exclude={"tag_placement", "answers"})
        if system_prompt:
            fields["system_prompt"] = system_prompt
        info = api.train_backward(examples, base, out, BackwardConfig(**fields), recompute=recompute)
    elif kind == "forward":
        extra: list[dict] = []
        if curated is not None:
            from .train import read_curated

            extra, rejects = read_curated(curated)
            if rejects:
                typer.echo(f"{len(rejects)} curated rows rejected (named above); training on the {len(extra)} others")
        info = api.train_forward(
            examples, extra, base, out, cfg, dataset_path=Path(out) / "train.jsonl", recompute=recompute
        )
    else:
        raise ValueError(f"--kind must be backward, forward or dpo, not {kind!r}")
    typer.echo(f"trained {out}: {info}")


@config_command(
    "rewrite",
    RewriteConfig,
    [
        _opt(
            "pairs", Path, ..., "Curated pairs: a curated/ folder (a run's iterN/curated) or a stage folder of pairs."
        ),
        _opt("model", str, ..., "The rewriter: a model directory, hub id, or with --engine openai a served model."),
        _opt("out", Path, ..., "Output directory: every pair with original_output, rewrite and the gate's verdict."),
        _RECOMPUTE,
        *_EXECUTOR_PARAMS,
    ],
    "Rewrite curated answers from their web text with an aligned model, keeping a rewrite only when it "
    "stays on the original's content (back-and-forth translation, Nguyen et al. 2024).",
)
def _rewrite(cfg: RewriteConfig, pairs: Path, model: str, out: Path, recompute: bool, **executor) -> None:
    from .rewrite import rewrite
    from .shards import stage_counters

    info = rewrite(pairs, _engine_model(model, cfg), out, cfg, executor=_executor(executor), recompute=recompute)
    counts = stage_counters(out)
    typer.echo(
        f"{info['records']} pairs in {out}: {counts.get('rewritten', 0)} rewritten, "
        f"{counts.get('gate_rejected', 0)} kept as web text by the faithfulness gate, "
        f"{counts.get('not_rewritten', 0)} without a usable rewrite"
    )


@config_command(
    "preferences",
    PreferencesConfig,
    [
        _opt("model", str, ..., "The policy model whose answers are sampled (e.g. runs/NAME/models/m2)."),
        _opt(
            "prompts",
            Path,
            ...,
            "Prompts: a stage folder (a run's candidates/), or JSONL/JSON with 'instruction' (or 'prompt'), "
            "or a text file, one per line.",
        ),
        _opt("out", Path, ..., "Output directory of preference pairs (TRL's DPO format)."),
        _RECOMPUTE,
        *_EXECUTOR_PARAMS,
    ],
    "Preference pairs from a model's own answers: sample --num-answers per prompt, value each with the "
    "judge (the model itself unless --judge-model), pair the best with the worst (Self-Rewarding LMs).",
)
def _preferences(cfg: PreferencesConfig, model: str, prompts: Path, out: Path, recompute: bool, **executor) -> None:
    from .generate import read_prompts
    from .preferences import preferences

    rows: Path | list[dict] = prompts
    if prompts.is_file():
        rows, rejects = read_prompts(prompts)
        if rejects:
            typer.echo(f"{len(rejects)} prompt rows rejected (named above)")
    info = preferences(rows, _engine_model(model, cfg), out, cfg, executor=_executor(executor), recompute=recompute)
    typer.echo(f"{info['records']} preference pairs in {out} ({info['rejects']} prompts without one: see _rejects)")


@config_command(
    "generate",
    GenerateConfig,
    [
        _opt("model", str, ..., "Model directory (e.g. runs/NAME/models/m2)."),
        _opt(
            "prompts",
            Path,
            ...,
            "Instructions: JSONL/JSON with 'instruction' (or 'prompt'), or a text file, one per line.",
        ),
        _opt("out", Path, ..., "Output JSONL: each prompt record with 'output' added."),
    ],
    "Answer instructions with a trained model (the paper's decoding and inference tag).",
)
def _generate(cfg: GenerateConfig, model: str, prompts: Path, out: Path) -> None:
    info = api.generate_file(prompts, api.resolve_model(model), out, cfg)
    typer.echo(f"{info['answers']} answers in {out} ({info['rejects']} rejects)")


def _run_model(name: str, run: Path | None) -> str:
    """A run's model by name (m0, m2, backward) when --run is given and it exists, else a path or id."""
    if run is not None and (Path(run) / "models" / name).is_dir():
        return str(Path(run) / "models" / name)
    return name


def _print_win_rate(result: dict, out: Path) -> None:
    from rich.console import Console

    console = Console()
    console.rule(f"[bold]humpback eval: {result['model']} vs {result['reference']}")
    if result.get("win_rate") is None:
        console.print(f"no judged prompts ({result.get('unjudged', 0)} judgements without a verdict)")
    else:
        lc = result.get("length_controlled_win_rate")
        console.print(
            f"win rate {result['win_rate']:.1f}% ± {result['standard_error'] or 0:.1f} (s.e.) over "
            f"{result['n_prompts']} prompts; wins {result['n_wins']}, losses {result['n_losses']}, "
            f"draws {result['n_draws']}" + ("" if lc is None else f"; length-controlled {lc:.1f}%")
        )
        console.print(
            f"mean answer length {result['avg_length']:.0f} chars against {result['reference_avg_length']:.0f}; "
            f"judge {result['judge_model']} ({result['judge_mode']}, order {result['order']}); "
            f"judgements without a verdict {result['unjudged']}"
        )
    if result.get("published_win_rate") is not None and result.get("win_rate") is not None:
        console.print(
            f"published win rate of these answers {result['published_win_rate']:.1f}% (AlpacaEval, GPT-4 judge); "
            f"this judge {result['win_rate']:.1f}%: {result['win_rate'] - result['published_win_rate']:+.1f} points"
        )
    written = [f for f in ("model_outputs.json", "judgements.jsonl", "leaderboard.json") if (Path(out) / f).exists()]
    console.print(f"files: {out}/{', '.join(written)}")


@config_command(
    "eval",
    EvalConfig,
    [
        _opt(
            "model",
            Optional[str],
            None,
            "Model to evaluate: a run's model by name (m0, m1, m2) with --run, or a path or 'smollm2-135m'.",
        ),
        _opt("run", Optional[Path], None, "Run directory: model names resolve in it, results go to RUN/eval/."),
        _opt(
            "compare",
            Optional[tuple[str, str]],
            None,
            "BASELINE MODEL: judge MODEL's answers against BASELINE's on the "
            "same prompts (e.g. --compare m0 m2: does M_2 beat M_0?).",
            "--compare",
        ),
        _opt(
            "reference",
            Optional[Path],
            None,
            "Reference answers (AlpacaEval-format JSON or JSONL); default: the prompt "
            "file's own 'output' answers (AlpacaEval's: text-davinci-003).",
        ),
        _opt("out", Optional[Path], None, "Output directory (default RUN/eval/NAME, or eval/NAME)."),
        _opt(
            "outputs",
            Optional[Path],
            None,
            "Judge these answers (an AlpacaEval model_outputs.json, e.g. a published model's) instead of "
            "generating any; --prompts or --reference gives the references.",
        ),
        _opt(
            "published_win_rate",
            Optional[float],
            None,
            "--outputs: the answers' published win rate (AlpacaEval's leaderboard, GPT-4 judge), "
            "reported beside this judge's.",
        ),
        _opt(
            "alpaca_eval_config",
            Optional[Path],
            None,
            "Also write an alpaca_eval annotators config for the judge here "
            "(an OpenAI-compatible judge at --judge-base-url).",
        ),
    ],
    "Answer a prompt set with a model (AlpacaEval format) and judge it pairwise: win rate with its standard error.",
)
def _eval(
    cfg: EvalConfig,
    model: str | None,
    run: Path | None,
    compare: tuple[str, str] | None,
    reference: Path | None,
    out: Path | None,
    outputs: Path | None,
    published_win_rate: float | None,
    alpaca_eval_config: Path | None,
) -> None:
    if outputs is not None:
        if cfg.prompts is None and reference is None:
            raise ValueError(
                "--outputs needs the references: --prompts (AlpacaEval's set carries them) or --reference"
            )
        out = out or Path("eval") / f"{Path(outputs).stem}_judged"
        result = api.judge_outputs(cfg, outputs, out, reference=reference, published_win_rate=published_win_rate)
        _print_win_rate(result, out)
        return
    if published_win_rate is not None:
        raise ValueError("--published-win-rate goes with --outputs (answers whose published win rate it is)")
    prompts = cfg.prompts
    if prompts is None:
        raise ValueError("--prompts is required (e.g. AlpacaEval's JSON list of instructions)")
    root = Path(run) / "eval" if run is not None else Path("eval")
    if run is not None:
        cfg = api.as_the_run_trained(cfg, run)
        if (Path(run) / "final" / "train.jsonl").is_file():
            from .decontaminate import check_run

            found = check_run(run, prompts)
            typer.echo(
                f"contamination check: {found['overlapping']} of {found['training_rows']} training rows of {run} "
                f"overlap {cfg.prompts} ({found['ngram']}-word runs or the same instruction)"
                + (
                    ""
                    if not found["overlapping"]
                    else "; remove them with `humpback decontaminate` or the run's decontaminate_against, and retrain"
                )
            )
    if alpaca_eval_config is not None:
        path = api.alpaca_eval_config(alpaca_eval_config, cfg.judge.model, cfg.judge.base_url)
        typer.echo(f"alpaca_eval annotators config: {path} (alpaca_eval --annotators_config {path}/configs.yaml ...)")
    if compare:
        baseline, contender = compare
        contender_name, baseline_name = api.distinct_names(contender, baseline)
        out = out or root / f"{contender_name}_vs_{baseline_name}"
        result = api.compare(cfg, _run_model(contender, run), _run_model(baseline, run), out)
        _print_win_rate(result, out)
        return
    if model is None:
        raise ValueError("give --model (or --compare BASELINE MODEL)")
    out = out or root / Path(model).name
    if cfg.metric == "nll":
        result = api.reference_loss(cfg, _run_model(model, run), out, name=Path(model).name)
        typer.echo(
            f"{result['model']}: answer loss {result['answer_loss']} per token on {result['pairs']} reference "
            f"answers (lower is better); {out / 'nll.json'}"
        )
        return
    result = api.evaluate(cfg, _run_model(model, run), out, reference=reference, name=Path(model).name)
    if "win_rate" in result:
        _print_win_rate(result, out)
    else:
        typer.echo(f"{result['answers']} answers in {result['model_outputs']} ({result['rejects']} rejects)")


@config_command(
    "ablate",
    AblateConfig,
    [
        inspect.Parameter(
            "run",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Path,
            default=typer.Argument(..., help="A finished run directory: its seed, candidates and curated set."),
        ),
        _RECOMPUTE,
    ],
    "Is the curated data worth training on? Train forward models on variants of a run's data (seed only, "
    "curated, a random sample of the same size, ...), several seeds each, and compare their held-out loss.",
)
def _ablate(cfg: AblateConfig, run: Path, recompute: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    from .ablate import ablate

    result = ablate(run, cfg, recompute=recompute)
    table = Table(
        title=f"ablations of {run}: {result['measure']}, {result['seeds']} seeds, {result['references']} answers"
    )
    for col in ("arm", "augmented", "loss", "95% interval", "minus random", "95% interval "):
        table.add_column(col, justify="right")
    for arm, a in result["arms"].items():
        low, high = a["interval"]
        d_low, d_high = a.get("minus_random_interval") or (None, None)
        minus = "" if a.get("minus_random") is None else f"{a['minus_random']:+.4f}"
        table.add_row(
            arm,
            str(a["augmented_examples"]),
            f"{a['answer_loss']:.4f}",
            f"{low}-{high}",
            minus,
            "" if d_low is None else f"{d_low:+.4f}..{d_high:+.4f}",
        )
    console = Console()
    console.print(table)
    if result["scaling"]:
        console.print(f"data scaling: loss = {result['scaling']['alpha']} log N + {result['scaling']['c']}")
    console.print(f"written: {Path(run) / 'ablate' / 'ablations.json'}")


@config_command(
    "eval-backward",
    BackwardEvalConfig,
    [
        _opt("seed", str, ..., "Seed data (any supported shape, e.g. self_instruct_seed_tasks.jsonl) or 'demo'."),
        _opt(
            "model",
            str,
            "smollm2-135m",
            "Base model: the untrained reference, and what the backward model is trained from.",
        ),
        _opt(
            "backward_model",
            Optional[str],
            None,
            "Score this backward model instead of training one (e.g. runs/NAME/models/backward).",
        ),
        _opt(
            "held_out",
            Optional[str],
            None,
            "Score on these pairs (any seed shape) and train on the whole seed, instead of holding part of it out.",
        ),
        _opt(
            "out",
            Path,
            Path("eval-backward"),
            "Output directory (fidelity.json, predictions.jsonl, the trained model).",
        ),
    ],
    "How well does the backward model recover held-out instructions? "
    "ROUGE-L (and embedding similarity), trained vs base.",
)
def _eval_backward(
    cfg: BackwardEvalConfig, seed: str, model: str, backward_model: str | None, held_out: str | None, out: Path
) -> None:
    from rich.console import Console
    from rich.table import Table

    examples, rejects = api.load_seed(seed)
    other = api.load_seed(held_out)[0] if held_out else None
    result = api.backward_fidelity(
        examples, api.check_model(model), out, cfg, backward_model=backward_model, held_out=other
    )
    table = Table(
        title=f"Backward-model fidelity on {result['held_out']} held-out seed pairs "
        f"(trained on {result['trained_on']}; {len(rejects)} seed rejects)",
        box=None,
    )
    for col in ("model", "ROUGE-L F1", "embedding similarity"):
        table.add_column(col, justify="right" if col != "model" else "left")
    for name, row in result["models"].items():
        sim = row["embedding_similarity"]
        table.add_row(f"{name} ({row['model']})", f"{row['rouge_l']:.3f}", "-" if sim is None else f"{sim:.3f}")
    console = Console()
    console.print(table)
    console.print(
        f"ROUGE-L gain from backward training: {result['rouge_l_gain']:+.3f}; embeddings: {result['embedding_note']}"
    )
    console.print(f"files: {out}/fidelity.json, {out}/predictions.jsonl")


@app.command("decontaminate", help="Remove training rows that overlap a prompt set (n-gram or the same instruction).")
def _decontaminate(
    data: Path = typer.Argument(
        ..., help="Training data: JSONL of instruction/output pairs or chats (e.g. RUN/final/train.jsonl)."
    ),
    against: list[Path] = typer.Option(
        ..., "--against", help="A prompt set: AlpacaEval JSON, JSONL/JSON of instructions, or plain text (repeatable)."
    ),
    out: Path = typer.Option(..., help="Output folder: clean.jsonl, rejects.jsonl, summary.json."),
    ngram: int = typer.Option(13, min=1, help="Words in a run shared with a prompt that makes a match."),
) -> None:
    from .decontaminate import decontaminate_file

    _setup_logging()
    try:
        for path in [data, *against]:
            if not Path(path).is_file():
                raise FileNotFoundError(f"{path} is not a file")
        with owned_output(out, "decontaminate") as owned:
            summary = decontaminate_file(data, against, owned, ngram)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    typer.echo(
        f"{summary['rows']} rows: {summary['kept']} kept, {summary['removed']} overlap "
        f"{summary['benchmark_prompts']} prompts ({ngram}-grams or the same instruction), "
        f"{summary['unreadable']} unreadable; {out}/clean.jsonl, {out}/rejects.jsonl ({summary['seconds']} s)"
    )


@app.command(
    "publish",
    help="Write a run's final dataset as Parquet with a dataset card (datasets.load_dataset "
    "reads the folder); --repo-id pushes it to the hub.",
)
def _publish(
    run: Path = typer.Argument(
        ..., help="A finished run directory (e.g. runs/demo), or a `humpback preferences` output folder."
    ),
    to: Path = typer.Option(..., "--to", help="Output folder (new, or an earlier publish output)."),
    format: str = typer.Option(
        "messages", "--format", help="messages (chat), alpaca (instruction/input/output) or sharegpt (conversations)."
    ),
    license: str = typer.Option(
        "other", "--license", help="The licence field of the card (yours to set: the web text's terms apply)."
    ),
    repo_id: Optional[str] = typer.Option(None, "--repo-id", help="ORG/NAME: also push to the hub."),
    private: bool = typer.Option(False, "--private", help="With --repo-id: a private dataset."),
) -> None:
    from .publish import publish, publish_preferences, push

    _setup_logging()
    try:
        with owned_output(to, "publish") as owned:
            if output_kind(run) == "preferences":  # preference pairs: their own columns and card
                info = publish_preferences(run, owned, license)
            else:
                info = publish(run, owned, format, license)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    typer.echo(f"{info['rows']} rows ({info['format']}) in {info['parquet']}; card {info['card']}")
    if info["card_kept"]:
        typer.echo(
            f"{to / 'README.md'} was edited since humpback wrote it: kept as it is; the new card is "
            f"{info['card']} (merge what you need, or delete README.md to have it replaced)"
        )
    if repo_id:
        try:
            typer.echo(f"pushed: {push(to, repo_id, private)}")
        except Exception as e:  # no token, no network, no rights: the local folder is still there
            _fail(f"could not push to {repo_id} ({type(e).__name__}: {e}); the folder {to} is complete")


@app.command("report", help="Rebuild RUN/report.html and RUN/report.md (and stats.json) from a run directory.")
def _report(
    run: Path = typer.Argument(..., help="Run directory, e.g. runs/demo."),
    labels: Optional[Path] = typer.Option(
        None,
        help="JSONL of {id, label: good|bad} for candidates: adds precision and recall of curation (paper, Table 7).",
    ),
) -> None:
    _setup_logging()
    try:
        paths = api.report_run(run, labels)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    typer.echo(f"report: {paths['html']} and {paths['markdown']}")


@app.command(
    "label",
    help="Label candidates good or bad, blind (instruction and answer only, no value), one key "
    "press each; resumable. With labels, `--curate-select calibrated` takes its threshold "
    "from them.",
)
def _label(
    run: Optional[Path] = typer.Argument(None, help="A run directory: its candidates, labelled into RUN/labels/."),
    candidates: Optional[Path] = typer.Option(
        None,
        "--candidates",
        help="Instead of a run: candidate shards (a folder) or a JSONL file of {id, instruction, output}.",
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Labels folder (default RUN/labels); labels.jsonl goes inside."
    ),
    from_file: Optional[Path] = typer.Option(
        None, "--from", help="Take the labels from this JSONL file of {id, label: good|bad|skip} instead of asking."
    ),
    seed: int = typer.Option(0, "--seed", help="The order candidates are shown in (a seeded random sample)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Label at most N this session."),
) -> None:
    from .labels import LABELS_FILE, append_labels, label_session, read_labels

    _setup_logging()
    try:
        if (run is None) == (candidates is None):
            raise ValueError("give a run directory or --candidates (one of them)")
        if run is not None:
            if output_kind(run) != "run":
                raise ValueError(f"{run} is not a humpback run directory (give --candidates for other candidates)")
            candidates, out = Path(run) / "candidates", out or Path(run) / "labels"
        if out is None:
            raise ValueError("--candidates needs --out (the labels folder)")
        assert candidates is not None  # given, or the run's (checked above)
        if not Path(candidates).exists():
            raise FileNotFoundError(f"{candidates} does not exist")
        rows = list(api.read_stage(candidates)) if Path(candidates).is_dir() else list(api.read_jsonl(candidates))
        with owned_output(out, "labels") as folder:
            if from_file is not None:
                given, rejects = read_labels(from_file)
                known = {r["id"] for r in rows}
                unknown = sorted(set(given) - known)
                kept = append_labels(folder, {i: g for i, g in given.items() if i in known})
                typer.echo(
                    f"{kept} labels taken from {from_file} ({len(rejects)} lines rejected, named above; "
                    f"{len(unknown)} for ids not among the candidates, left out)"
                )
            else:
                counts = label_session(rows, folder, seed, limit, show=lambda text: typer.echo(text, nl=False))
                typer.echo(
                    f"\n{counts['good']} good, {counts['bad']} bad, {counts['skip']} skipped this session; "
                    f"{counts['left']} left"
                )
            labels, _ = read_labels(folder / LABELS_FILE)
        good = sum(labels.values())
        typer.echo(
            f"{folder / LABELS_FILE}: {len(labels)} labels, {good} good"
            + (f" ({good / len(labels):.0%})" if labels else "")
        )
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
