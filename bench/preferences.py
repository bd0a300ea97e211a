"""Self-rewarding on the demo: preference pairs from M's own answers, then one DPO iteration.

Times `preferences` (M samples --num-answers answers per prompt of the demo run's candidates and
judges them, logprob mode) and `train --kind dpo` from M on the pairs, then loads the DPO model
with AutoModelForCausalLM and has it answer a few prompts under the run's tags. Writes
bench/results/preferences.{json,md}.

    python bench/preferences.py [--run runs/demo] [--model m2] [--prompts 32]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "demo")
    parser.add_argument("--model", default="m2")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--answers", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=192)
    args = parser.parse_args()
    if not (args.run / "candidates").is_dir():
        print(f"skipped: {args.run} is not a finished run (make demo makes runs/demo)")
        return 0
    from transformers import AutoModelForCausalLM

    from humpback.config import PreferencesConfig, PreferenceTrainConfig
    from humpback.generate import generate
    from humpback.preferences import preferences
    from humpback.shards import read_stage, stage_counters
    from humpback.train import dpo

    model = str(args.run / "models" / args.model)
    cfg = PreferencesConfig(num_answers=args.answers, max_new_tokens=args.max_new_tokens, max_prompts=args.prompts)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.time()
        preferences(args.run / "candidates", model, Path(tmp) / "prefs", cfg)
        prefs_seconds = time.time() - start
        pairs = list(read_stage(Path(tmp) / "prefs"))
        counts = stage_counters(Path(tmp) / "prefs")
        start = time.time()
        info = dpo(pairs, model, Path(tmp) / "dpo", PreferenceTrainConfig())
        dpo_seconds = time.time() - start
        AutoModelForCausalLM.from_pretrained(str(Path(tmp) / "dpo"))
        answers = generate(["Give three tips for staying healthy."], str(Path(tmp) / "dpo"), None)
    margins = [p["chosen_value"] - p["rejected_value"] for p in pairs]
    result = {
        "run": str(args.run),
        "model": args.model,
        "prompts": args.prompts,
        "answers_per_prompt": args.answers,
        "max_new_tokens": args.max_new_tokens,
        "pairs": len(pairs),
        "tied": counts.get("tied", 0),
        "too_few_valued": counts.get("too_few_valued", 0),
        "mean_value_margin": round(sum(margins) / len(margins), 4) if margins else None,
        "preferences_seconds": round(prefs_seconds, 1),
        "dpo_seconds": round(dpo_seconds, 1),
        "dpo_steps": info.get("steps"),
        "dpo_first_loss": info.get("first_loss"),
        "dpo_last_loss": info.get("last_loss"),
        "total_minutes": round((prefs_seconds + dpo_seconds) / 60, 2),
        "dpo_model_answer": (answers[0] or "")[:300],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "preferences.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        "# Self-rewarding on the demo: preferences + one DPO iteration",
        "",
        f"M = {args.run}/models/{args.model}; {args.prompts} prompts of the run's candidates, {args.answers} answers "
        f"each (at most {args.max_new_tokens} tokens), judged by M itself (logprob: the rubric's expected score).",
        "",
        "| step | result | seconds |",
        "|---|---|---:|",
        f"| preferences | {len(pairs)} pairs ({result['tied']} prompts tied, {result['too_few_valued']} with under "
        f"two valued answers); mean value margin {result['mean_value_margin']} | {result['preferences_seconds']} |",
        f"| DPO (TRL DPOTrainer, one epoch) | {info.get('steps')} steps, loss {info.get('first_loss')} -> "
        f"{info.get('last_loss')} | {result['dpo_seconds']} |",
        "",
        f"Total: {result['total_minutes']} minutes. The DPO model loads with AutoModelForCausalLM and answers "
        f"under the run's tags: {result['dpo_model_answer'][:200]!r}",
    ]
    (RESULTS / "preferences.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
