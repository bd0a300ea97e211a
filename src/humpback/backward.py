"""The backward model M_yx: the base fine-tuned to write the instruction for a given output."""

from __future__ import annotations

from pathlib import Path

from .config import BackwardConfig
from .records import SeedPair, TrainingExample
from .train import sft


def backward_prompt(output: str, system_prompt: str) -> list[dict]:
    """The prompt the backward model sees: the output as the user turn (used in training and
    in self-augmentation alike, so the two match)."""
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": output}]


def backward_examples(seed: list[SeedPair], system_prompt: str) -> list[TrainingExample]:
    """Seed pairs reversed: output in the prompt, instruction as the completion (the only loss)."""
    return [
        TrainingExample(
            prompt=backward_prompt(r["output"], system_prompt),
            completion=[{"role": "assistant", "content": r["instruction"]}],
        )
        for r in seed
    ]


def train_backward(
    seed: list[SeedPair], base_model: str, out_dir: Path, cfg: BackwardConfig | None = None, recompute: bool = False
) -> dict:
    cfg = cfg or BackwardConfig()
    return sft(
        backward_examples(seed, cfg.system_prompt),
        base_model,
        out_dir,
        cfg,
        desc="train backward",
        recompute=recompute,
    )
