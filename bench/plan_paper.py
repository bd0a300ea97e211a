"""`humpback plan` for the paper's setting: 502,133 segments, a 7B LLaMA, one GPU and eight.

    python bench/plan_paper.py

The counts are the plan's own (`humpback.plan.plan` with `--preset paper --segments 502133`): the
token lengths come from real text, the timings from an assumed GPU, because this project's
machine has none. What stands in for what:
- the model: LLaMA-7B's shape (its published config) on the Llama SentencePiece tokenizer of
  ../shared/data/tokenizers; a base model, so the default chat template;
- segments: the 70 shared web pages, segmented with the paper's filters (600-3,000 characters),
  give the segments' length; their number is the paper's (Table 2: 502,133 candidates);
- the seed: the paper's is 3,200 OpenAssistant pairs, which are not here; the 805 AlpacaEval
  prompts with their reference answers give the instruction and answer lengths, cycled to 3,200.
- throughput: one A100-80GB (312 TFLOP/s in bf16, 2.0 TB/s); prompt tokens and likelihood reads
  at 50% of peak FLOPs (2 x parameters FLOPs per token), decoding at 3,000 tokens/s (third-party
  vLLM benchmarks of 7B-8B models on one A100 report 3,000-3,400 output tokens/s), training at 40%
  of peak (6 x parameters FLOPs per token, full fine-tuning). Eight GPUs: eight vLLM replicas
  (8x for augmentation and rating) and FSDP training at 90% scaling (7.2x).
The stage rate given to the plan is its tokens over the time of its mix (prompt, read, generated,
trained tokens), so each stage is timed by its own mix.

Writes bench/results/plan_paper.{json,md}.
"""

from __future__ import annotations

import itertools
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
PAPER_SEGMENTS = 502_133  # Table 2: the candidates both iterations rated
PAPER_SEED = 3_200  # OpenAssistant pairs

LLAMA_7B = {  # LLaMA-7B's published shape
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "max_position_embeddings": 2048,
}
PARAMETERS = 6.74e9
A100 = {"flops": 312e12, "prefill_utilization": 0.5, "decode_tokens_per_s": 3000.0, "train_utilization": 0.4}
GPU_SETUPS = {"1 GPU": {"inference": 1.0, "train": 1.0}, "8 GPUs": {"inference": 8.0, "train": 7.2}}


def model_folder(target: Path) -> str:
    """LLaMA-7B's config (no weights: the plan reads the config and the tokenizer only)."""
    from transformers import AutoTokenizer, LlamaConfig

    tokenizer = AutoTokenizer.from_pretrained(str(SHARED / "tokenizers"), gguf_file="ggml-vocab-llama-spm.gguf")
    tokenizer.save_pretrained(target)
    LlamaConfig(vocab_size=len(tokenizer), **LLAMA_7B).save_pretrained(target)
    return str(target)


def stand_in_seed() -> list:
    references = json.loads((SHARED / "alpaca_eval" / "text_davinci_003_outputs.json").read_text())
    pairs = [
        {
            "id": f"alpaca-{i}",
            "source": f"alpaca_eval:item {i}",
            "instruction": r["instruction"],
            "output": r["output"],
        }
        for i, r in enumerate(references)
    ]
    return list(itertools.islice(itertools.cycle(pairs), PAPER_SEED))


def stage_rates(stages: list[dict], scale: dict) -> dict[str, float]:
    """Tokens per second for each stage kind under the assumed GPU (see the module's docstring)."""
    prefill = A100["prefill_utilization"] * A100["flops"] / (2 * PARAMETERS) * scale["inference"]
    decode = A100["decode_tokens_per_s"] * scale["inference"]
    train = A100["train_utilization"] * A100["flops"] / (6 * PARAMETERS) * scale["train"]
    rates = {}
    for s in stages:
        seconds = (s["prompt_tokens"] + s["read_tokens"]) / prefill + s["generated_tokens"] / decode
        seconds += s["trained_tokens"] / train
        rates[s["stage"].split()[0]] = s["tokens"] / seconds
    return rates


def main() -> None:
    if not (SHARED / "tokenizers").is_dir():
        sys.exit(f"needs ../shared/data (the tokenizers, web pages and AlpacaEval answers): {SHARED} is absent")
    from humpback.config import RunConfig
    from humpback.plan import plan, plan_lines

    with tempfile.TemporaryDirectory() as tmp:
        model = model_folder(Path(tmp) / "llama-7b-shape")
        config = RunConfig(preset="paper", model=model, corpus=str(SHARED / "web"))
        seed = stand_in_seed()
        counts = plan(config, sample=200, seed=seed, segments=PAPER_SEGMENTS)
        results = {}
        for setup, scale in GPU_SETUPS.items():
            rates = stage_rates(counts["stages"], scale)
            results[setup] = plan(config, sample=200, seed=seed, segments=PAPER_SEGMENTS, throughput=rates)
    out = {"assumed_gpu": A100, "parameters": PARAMETERS, "gpu_setups": GPU_SETUPS, "plans": results}
    (ROOT / "bench" / "results" / "plan_paper.json").write_text(json.dumps(out, indent=1) + "\n")
    lines = [
        "# `humpback plan` for the paper's setting",
        "",
        "`python bench/plan_paper.py`: `--preset paper --segments 502133`, LLaMA-7B's shape on the Llama",
        "tokenizer; segment lengths from the 70 shared web pages, seed lengths from AlpacaEval's 805 prompts",
        "and reference answers (3,200 pairs as the paper's seed); times from an assumed A100-80GB, not measured",
        "(see the script's docstring for every assumption).",
        "",
    ]
    for setup, result in results.items():
        lines += [f"## {setup}", "", "```", *plan_lines(result), "```", ""]
    (ROOT / "bench" / "results" / "plan_paper.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
