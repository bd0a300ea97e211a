"""How much each dropout placement perturbs the pretrained model: the mean per-token loss of the
embedded model on backward-training examples (the bundled demo seed, reversed), in eval mode and
in train mode with dropout 0.1 on the attention probabilities or on the block outputs (residual),
averaged over 3 dropout draws. A placement the model was not pretrained with moves it further.

    python bench/dropout_effect.py      (writes bench/results/dropout_effect.json)
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> dict:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from humpback.backward import backward_examples
    from humpback.config import BackwardConfig
    from humpback.models import load_tokenizer, resolve_model
    from humpback.seed import load_seed
    from humpback.train import add_residual_dropout

    path = resolve_model("smollm2-135m")
    tokenizer = load_tokenizer(path, padding_side="right")
    pairs, _ = load_seed("demo", 16)
    examples = backward_examples(pairs, BackwardConfig().system_prompt)
    batches = [
        tokenizer.apply_chat_template(
            e["prompt"] + e["completion"], tokenize=True, return_tensors="pt", return_dict=True
        )["input_ids"]
        for e in examples
    ]

    def mean_loss(model, draws: int) -> float:
        losses = []
        with torch.no_grad():
            for draw in range(draws):
                torch.manual_seed(draw)
                losses += [model(ids, labels=ids).loss.item() for ids in batches]
        return round(statistics.fmean(losses), 3)

    config = AutoConfig.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    result = {"examples": len(batches), "eval_mode": mean_loss(model, 1)}
    config.attention_dropout = 0.1
    model = AutoModelForCausalLM.from_pretrained(path, config=config, dtype=torch.float32).train()
    result["attention_dropout_0.1"] = mean_loss(model, 3)
    config.attention_dropout = 0.0
    model = AutoModelForCausalLM.from_pretrained(path, config=config, dtype=torch.float32).train()
    add_residual_dropout(model, 0.1)
    result["residual_dropout_0.1"] = mean_loss(model, 3)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "dropout_effect.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
