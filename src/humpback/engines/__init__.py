"""Generation engines: the interface (base.py) and one file per backend.

The backend classes are imported on first use, so ``import humpback.engines`` loads neither
torch nor vLLM."""

from .base import (
    ENGINES,
    Chat,
    Completion,
    Engine,
    EngineError,
    Refusal,
    SamplingParams,
    chat_text,
    check_refusals,
    encode_chat,
    engine_class,
    engine_for,
    make_engine,
    redact,
)

_BACKENDS = {"TransformersEngine": "transformers", "VLLMEngine": "vllm", "OpenAIEngine": "openai"}


def __getattr__(name: str):
    if name in _BACKENDS:
        return engine_class(_BACKENDS[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ENGINES",
    "Chat",
    "Completion",
    "Engine",
    "EngineError",
    "Refusal",
    "SamplingParams",
    "chat_text",
    "check_refusals",
    "encode_chat",
    "engine_class",
    "engine_for",
    "make_engine",
    "redact",
    *_BACKENDS,
]
