"""Training on several processes: the same TRL training (trainer.py) under ``accelerate launch``.

The parent writes the job (examples + config) inside the model folder and runs

    python -m accelerate.commands.launch --config_file humpback/accelerate/ddp.yaml \\
        --num_processes N -m humpback.trainer JOB_DIR

Every process trains on the job; process 0 saves the model and marks it finished, so the parent
returns what a single-process training returns. The trainer never imports this module. Configs ship by name (ddp, fsdp,
zero2, zero3); any file written by ``accelerate config`` works too (multi-node included).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from importlib import resources
from pathlib import Path

from .config import PreferenceTrainConfig, TrainConfig
from .files import write_json, write_jsonl
from .records import PreferenceExample, TrainingExample
from .shards import SUCCESS, stage_info

SHIPPED = ("ddp", "fsdp", "zero2", "zero3")


def accelerate_config_path(name: str) -> Path:
    """A shipped accelerate config by name, or a path to one's own."""
    if name in SHIPPED:
        return Path(str(resources.files("humpback") / "accelerate" / f"{name}.yaml"))
    path = Path(name).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"accelerate_config {name!r} is neither a shipped config ({', '.join(SHIPPED)}) nor a file"
        )
    return path


def launch_command(job_dir: Path, cfg: TrainConfig) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(accelerate_config_path(cfg.accelerate_config)),
        "--num_processes",
        str(cfg.num_processes),
    ]
    if cfg.accelerate_config in SHIPPED:
        # Single-node configs: a free rendezvous port, not the fixed 29500, so a training never
        # collides with another one on the machine or with the last one's port still closing.
        # (Your own config keeps its port: on several nodes they must agree on it.)
        command += ["--main_process_port", str(_free_port())]
    return command + ["-m", "humpback.trainer", str(job_dir)]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch_sft(
    examples: list[TrainingExample] | list[PreferenceExample],
    base_model: str,
    out_dir: Path,
    cfg: TrainConfig,
    desc: str,
    fit: dict | None = None,
    kind: str = "sft",
) -> dict:
    """Train under accelerate launch on ``cfg.num_processes`` processes; returns what process 0 recorded."""
    out_dir = Path(out_dir)
    token = f"launch{os.getpid()}"
    job_dir = out_dir / f".{token}"  # inside the model folder: the launcher writes nowhere else
    write_jsonl(job_dir / "examples.jsonl", examples)
    write_json(
        job_dir / "job.json",
        {
            "base_model": str(base_model),
            "out_dir": str(out_dir),
            "desc": desc,
            # the trainer rebuilds the training's own config (a ForwardConfig's tag fields are not its)
            "config": cfg.model_dump(
                mode="json", include=set((PreferenceTrainConfig if kind == "dpo" else TrainConfig).model_fields)
            ),
            "kind": kind,
            "token": token,
            "fit": fit or {},
        },
    )
    command = launch_command(job_dir, cfg)
    done = subprocess.run(command)
    if done.returncode != 0 or not (out_dir / SUCCESS).exists():
        raise RuntimeError(
            f"{desc}: accelerate launch exited with {done.returncode} "
            f"and no finished model in {out_dir}: {' '.join(command)}"
        )
    shutil.rmtree(job_dir, ignore_errors=True)
    return stage_info(out_dir)
