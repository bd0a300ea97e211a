"""humpback: instruction backtranslation (Li et al. 2023) on transformers, TRL and vLLM.

The Python API, one function per stage; ``run`` composes them::

    import humpback
    humpback.run(humpback.RunConfig(seed="seed.jsonl", corpus="web/", out="runs/mine"))
"""

from .augment import augment
from .backward import train_backward
from .config import (
    AugmentConfig,
    BackwardConfig,
    BackwardEvalConfig,
    CurateConfig,
    EngineConfig,
    EvalConfig,
    ForwardConfig,
    GenerateConfig,
    JudgeConfig,
    PreferencesConfig,
    PreferenceTrainConfig,
    RunConfig,
    SegmentConfig,
)
from .curate import compare_modes, curate, rate, select
from .engines import Engine, EngineError, SamplingParams, engine_for, make_engine
from .evaluate import (
    alpaca_eval_config,
    as_the_run_trained,
    backward_fidelity,
    compare,
    distinct_names,
    evaluate,
    judge_outputs,
    parse_verdict,
    reference_loss,
)
from .generate import generate, generate_file
from .memory import MemoryBudgetError, estimate_training_peak
from .models import ModelError, check_model, resolve_model
from .outputs import OutputError, StaleOutputError, claim_output, owned_output
from .pipeline import run
from .preferences import preferences
from .report import build_report, report_run
from .rubric import RUBRIC, parse_score
from .seed import SeedError, load_seed
from .segment import segment
from .shards import read_jsonl, read_stage, stage_counters
from .stats import histogram, table2
from .tags import INFERENCE_TAGS, SEED_TAG, WEB_TAG
from .train import dpo, train_forward


def __getattr__(name: str):  # the backend classes import torch or vLLM: only when asked for
    if name in ("TransformersEngine", "VLLMEngine", "OpenAIEngine"):
        from . import engines

        return getattr(engines, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AugmentConfig",
    "EngineError",
    "MemoryBudgetError",
    "OutputError",
    "StaleOutputError",
    "estimate_training_peak",
    "claim_output",
    "owned_output",
    "BackwardConfig",
    "BackwardEvalConfig",
    "EvalConfig",
    "JudgeConfig",
    "alpaca_eval_config",
    "backward_fidelity",
    "distinct_names",
    "as_the_run_trained",
    "reference_loss",
    "build_report",
    "compare",
    "evaluate",
    "judge_outputs",
    "parse_verdict",
    "report_run",
    "CurateConfig",
    "Engine",
    "EngineConfig",
    "ForwardConfig",
    "PreferencesConfig",
    "PreferenceTrainConfig",
    "GenerateConfig",
    "INFERENCE_TAGS",
    "ModelError",
    "OpenAIEngine",
    "RUBRIC",
    "RunConfig",
    "SEED_TAG",
    "SamplingParams",
    "SeedError",
    "SegmentConfig",
    "TransformersEngine",
    "VLLMEngine",
    "WEB_TAG",
    "augment",
    "check_model",
    "compare_modes",
    "curate",
    "generate",
    "generate_file",
    "histogram",
    "load_seed",
    "make_engine",
    "engine_for",
    "parse_score",
    "rate",
    "read_jsonl",
    "read_stage",
    "resolve_model",
    "run",
    "segment",
    "select",
    "stage_counters",
    "table2",
    "train_backward",
    "train_forward",
    "preferences",
    "dpo",
]
