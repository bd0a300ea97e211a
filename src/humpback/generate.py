"""Inference with a trained model: the paper's decoding (0.7 / 0.9) and inference tag (both)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from .config import GenerateConfig
from .engines import Completion, Engine, SamplingParams, engine_for
from .files import BadLine, jsonl_lines, new_file, safe_name, write_lines
from .outputs import OutputError
from .records import Reject
from .shards import reject
from .tags import INFERENCE_TAGS, tagged_prompt


def read_prompts(path: Path) -> tuple[list[dict], list[Reject]]:
    """Instructions from a JSONL/JSON file (field 'instruction' or 'prompt') or a text file, one per line."""
    path = Path(path)
    prompts: list[dict] = []
    rejects: list[Reject] = []
    if path.suffix == ".jsonl":
        rows = list(jsonl_lines(path))
    else:
        try:
            text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is not part of the first prompt
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"prompts file {path} cannot be read as UTF-8 text ({e})") from None
        if path.suffix != ".json":
            return [{"instruction": line} for line in text.splitlines() if line.strip()], rejects
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(
                f"prompts file {path}:{e.lineno} is not valid JSON ({e.msg}); give a JSON list or JSONL"
            ) from None
        if isinstance(data, dict):  # {"name": [...]} or one record
            data = next((v for v in data.values() if isinstance(v, list)), [data])
        if not isinstance(data, list):
            raise ValueError(f"prompts file {path} holds a JSON {type(data).__name__}, not a list of prompts")
        rows = [(f"{path}:{i}", row) for i, row in enumerate(data, 1)]
    for where, row in rows:
        if isinstance(row, BadLine):
            rejects.append(reject("generate", where, row.reason))
            continue
        if isinstance(row, str):  # a list of strings is a list of prompts
            row = {"instruction": row}
        instruction = row.get("instruction") or row.get("prompt") if isinstance(row, dict) else None
        if isinstance(row, dict) and isinstance(instruction, str) and instruction.strip():
            prompts.append({**row, "instruction": instruction})
        else:
            rejects.append(reject("generate", where, "no 'instruction' or 'prompt' field", row))
    return prompts, rejects


def generate(
    instructions: list[str], model: str, cfg: GenerateConfig | None = None, engine: Engine | None = None
) -> list[str | None]:
    """Answers for instructions, under the configured inference tag (None where refused)."""
    return [c.text for c in complete(instructions, model, cfg, engine)]


def complete(
    instructions: list[str], model: str, cfg: GenerateConfig | None = None, engine: Engine | None = None
) -> list[Completion]:
    """What the engine wrote for each instruction, under the configured inference tag: the answer,
    or why it was refused; whether max_new_tokens cut it off."""
    cfg = cfg or GenerateConfig()
    tag = INFERENCE_TAGS[cfg.tag]
    prompts = [tagged_prompt(i, tag, cfg.tag_placement) for i in instructions]
    with engine_for(model, cfg, engine) as engine:
        return engine.complete(prompts, SamplingParams.from_config(cfg))


def generate_file(prompts_path: Path, model: str, out_path: Path, cfg: GenerateConfig | None = None) -> dict:
    """Read instructions from a file, answer them, write JSONL with 'output' added."""
    cfg = cfg or GenerateConfig()
    prompts, rejects = read_prompts(prompts_path)
    out_path = Path(out_path)
    rejects_path = out_path.with_suffix(".rejects.jsonl")
    for path in (out_path, rejects_path):
        if path.exists() or path.is_symlink():
            raise OutputError(
                f"{safe_name(path)} already exists: give a new file name (humpback never overwrites a file)"
            )
    # both names are taken now, exclusively: a second `generate` to the same file stops here, and
    # a file someone creates under either name meanwhile is never replaced
    with contextlib.ExitStack() as names:
        try:
            out_tmp = names.enter_context(new_file(out_path))
            rejects_tmp = names.enter_context(new_file(rejects_path))
        except FileExistsError:
            raise OutputError(
                f"{safe_name(out_path)} is being written by another process: give a new file name"
            ) from None
        written = complete([p["instruction"] for p in prompts], model, cfg)
        answered = []
        for prompt, done in zip(prompts, written):
            if done.text is None:
                rejects.append(
                    reject("generate", str(prompts_path), done.refusal or "the engine refused the prompt", prompt)
                )
            else:
                answered.append(
                    {**prompt, "output": done.text, "generator": str(model)}
                    | ({"cut_off": True} if done.cut_off else {})
                )
        n = write_lines(out_tmp, answered)
        write_lines(rejects_tmp, rejects)
    if not rejects:
        rejects_path.unlink()  # taken in case of rejects; there were none
    return {"answers": n, "rejects": len(rejects), "cut_off": sum(c.cut_off for c in written)}
