"""Training on several processes: the same TRL training (``train.sft``) under ``accelerate launch``.

The parent writes the job (examples + config) next to the model directory and runs

    python -m accelerate.commands.launch --config_file humpback/accelerate/ddp.yaml \\
        --num_processes N -m humpback.launch JOB_DIR

Every process runs ``sft`` on the job; the first one saves the model and marks it finished, so
the parent returns what a single-process training returns. Configs ship by name (ddp, fsdp,
zero2, zero3); any file written by ``accelerate config`` works too (multi-node included).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from importlib import resources
from pathlib import Path

from .config import TrainConfig
from .shards import SUCCESS, read_jsonl, stage_info, write_json, write_jsonl

SHIPPED = ("ddp", "fsdp", "zero2", "zero3")


def accelerate_config_path(name: str) -> Path:
    """A shipped accelerate config by name, or a path to one's own."""
    if name in SHIPPED:
        return Path(str(resources.files("humpback") / "accelerate" / f"{name}.yaml"))
    path = Path(name).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"accelerate_config {name!r} is neither a shipped config ({', '.join(SHIPPED)}) nor a file")
    return path


def launch_command(job_dir: Path, cfg: TrainConfig) -> list[str]:
    command = [sys.executable, "-m", "accelerate.commands.launch",
               "--config_file", str(accelerate_config_path(cfg.accelerate_config)),
               "--num_processes", str(cfg.num_processes)]
    if cfg.accelerate_config in SHIPPED:
        # Single-node configs: a free rendezvous port, not the fixed 29500, so a training never
        # collides with another one on the machine or with the last one's port still closing.
        # (Your own config keeps its port: on several nodes they must agree on it.)
        command += ["--main_process_port", str(_free_port())]
    return command + ["-m", "humpback.launch", str(job_dir)]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch_sft(examples: list[dict], base_model: str, out_dir: Path, cfg: TrainConfig, desc: str,
               fit: dict | None = None) -> dict:
    """Run ``sft`` under accelerate launch with ``cfg.num_processes`` processes; returns its info."""
    out_dir = Path(out_dir)
    token = f"launch{os.getpid()}"
    job_dir = out_dir / f".{token}"  # inside the model folder: the launcher writes nowhere else
    write_jsonl(job_dir / "examples.jsonl", examples)
    single = cfg.model_dump(mode="json", include=set(TrainConfig.model_fields)) | {"launcher": "none"}
    write_json(job_dir / "job.json", {"base_model": str(base_model), "out_dir": str(out_dir), "desc": desc,
                                      "config": single, "token": token, "fit": fit or {}})
    command = launch_command(job_dir, cfg)
    done = subprocess.run(command)
    if done.returncode != 0 or not (out_dir / SUCCESS).exists():
        raise RuntimeError(f"{desc}: accelerate launch exited with {done.returncode} "
                           f"and no finished model in {out_dir}: {' '.join(command)}")
    shutil.rmtree(job_dir, ignore_errors=True)
    return stage_info(out_dir)


def _main(job_dir: Path) -> None:
    """One launched process: train on the job (process 0 writes the model)."""
    from .train import train_here

    job = json.loads((job_dir / "job.json").read_text(encoding="utf-8"))
    # the parent holds the model folder's lock and checked it; every process trains, process 0 saves
    train_here(list(read_jsonl(job_dir / "examples.jsonl")), job["base_model"], Path(job["out_dir"]),
               TrainConfig.model_validate(job["config"]), desc=job["desc"], token=job["token"], fit=job["fit"])


if __name__ == "__main__":
    _main(Path(sys.argv[1]))
