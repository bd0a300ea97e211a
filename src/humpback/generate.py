"""Inference with a trained model: the paper's decoding (0.7 / 0.9) and inference tag (both)."""

from __future__ import annotations

import json
from pathlib import Path

from .config import GenerateConfig
from .engine import Engine, SamplingParams, make_engine
from .outputs import OutputError
from .shards import reject, write_jsonl
from .tags import INFERENCE_TAGS, tagged_prompt


def read_prompts(path: Path) -> tuple[list[dict], list[dict]]:
    """Instructions from a JSONL/JSON file (field 'instruction' or 'prompt') or a text file, one per line."""
    path = Path(path)
    prompts, rejects = [], []
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is not part of the first prompt
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"prompts file {path} cannot be read as UTF-8 text ({e})") from None
    if path.suffix in (".jsonl", ".json"):
        try:
            rows = json.loads(text) if path.suffix == ".json" else None
        except json.JSONDecodeError as e:
            raise ValueError(f"prompts file {path}:{e.lineno} is not valid JSON ({e.msg}); give a JSON list or JSONL") from None
        if isinstance(rows, dict):  # {"name": [...]} or one record
            rows = next((v for v in rows.values() if isinstance(v, list)), [rows])
        if rows is not None and not isinstance(rows, list):
            raise ValueError(f"prompts file {path} holds a JSON {type(rows).__name__}, not a list of prompts")
        if rows is None:
            rows = []
            for i, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    rejects.append(reject("generate", f"{path}:{i}", f"malformed JSON ({e.msg})"))
                    rows.append(None)
        for i, row in enumerate(rows, 1):
            if row is None:
                continue
            instruction = row.get("instruction") or row.get("prompt") if isinstance(row, dict) else None
            if isinstance(instruction, str) and instruction.strip():
                prompts.append({**row, "instruction": instruction})
            else:
                rejects.append(reject("generate", f"{path}:{i}", "no 'instruction' or 'prompt' field", row))
    else:
        prompts = [{"instruction": line} for line in text.splitlines() if line.strip()]
    return prompts, rejects


def generate(instructions: list[str], model: str, cfg: GenerateConfig | None = None,
             engine: Engine | None = None) -> list[str | None]:
    """Answers for instructions, under the configured inference tag."""
    cfg = cfg or GenerateConfig()
    own = engine is None
    engine = engine or make_engine(model, cfg)
    tag = INFERENCE_TAGS[cfg.tag]
    prompts = [tagged_prompt(i, tag, cfg.tag_placement) for i in instructions]
    params = SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
                            seed=cfg.random_seed)
    try:
        return engine.generate(prompts, params)
    finally:
        if own:
            engine.close()


def generate_file(prompts_path: Path, model: str, out_path: Path, cfg: GenerateConfig | None = None) -> dict:
    """Read instructions from a file, answer them, write JSONL with 'output' added."""
    cfg = cfg or GenerateConfig()
    prompts, rejects = read_prompts(prompts_path)
    out_path = Path(out_path)
    for path in (out_path, out_path.with_suffix(".rejects.jsonl")):
        if path.exists() or path.is_symlink():
            raise OutputError(f"{path} already exists: give a new file name (humpback never overwrites a file)")
    engine = make_engine(model, cfg)
    try:
        outputs = generate([p["instruction"] for p in prompts], model, cfg, engine=engine)
        reasons = dict(getattr(engine, "refusal_reasons", {}))
    finally:
        engine.close()
    answered = []
    for i, (prompt, output) in enumerate(zip(prompts, outputs)):
        if output is None:
            rejects.append(reject("generate", prompts_path, reasons.get(i, "the engine refused the prompt"), prompt))
        else:
            answered.append({**prompt, "output": output, "generator": str(model)})
    n = write_jsonl(Path(out_path), answered)
    if rejects:
        write_jsonl(Path(out_path).with_suffix(".rejects.jsonl"), rejects)
    return {"answers": n, "rejects": len(rejects)}
