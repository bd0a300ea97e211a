"""The GPU readiness check that scripts/gpu_check.sh runs once it has found a CUDA GPU.

1. Engines: the embedded model on the transformers engine (GPU) and on vLLM (GPU) answer the
   same 8 demo instructions greedily and read the rubric's five scores for 8 demo pairs; the CPU
   transformers engine reads the same scores. Reported: how many greedy answers are identical, and
   the largest difference of an expected score between each GPU engine and the CPU.
2. Training: M_0 on the demo seed for 20 steps on the GPU; the model loads and answers.
3. A short run (the demo's settings, one iteration, 16 segments) on the GPU; its selection is
   recomputed here on the CPU from its ratings and the probe, and must be the same.
Writes bench/results/gpu_check.{json,md}.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def expected(logprobs: dict[str, float] | None) -> float | None:
    import math

    if not logprobs:
        return None
    mass = {k: math.exp(v) for k, v in logprobs.items()}
    total = sum(mass.values())
    return sum(int(k.strip()) * p for k, p in mass.items()) / total if total else None


def engines_check(model: str, seed: list[dict]) -> dict:
    from humpback.config import CurateConfig
    from humpback.engines import SamplingParams, make_engine
    from humpback.rubric import RUBRIC, SCORE_CHOICES, rating_prompt

    prompts = [[{"role": "user", "content": p["instruction"]}] for p in seed[:8]]
    rubric = [rating_prompt(p, RUBRIC, "logprob") for p in seed[:8]]
    greedy = SamplingParams(temperature=0.0, max_new_tokens=64)
    out: dict = {}
    for name, cfg in (
        ("transformers_gpu", CurateConfig(engine="transformers", device="cuda", dtype="float32")),
        ("vllm_gpu", CurateConfig(engine="vllm", dtype="float32")),
        ("transformers_cpu", CurateConfig(engine="transformers", device="cpu", dtype="float32")),
    ):
        engine = make_engine(model, cfg)
        start = time.time()
        texts = engine.generate(prompts, greedy) if name != "transformers_cpu" else None
        reads = [expected(r) for r in engine.choice_logprobs(rubric, SCORE_CHOICES)]
        out[name] = {"texts": texts, "expected": reads, "seconds": round(time.time() - start, 2)}
        engine.close()
    cpu = out["transformers_cpu"]["expected"]
    same = sum(a == b for a, b in zip(out["transformers_gpu"]["texts"], out["vllm_gpu"]["texts"]))
    return {
        "greedy_answers_identical": f"{same}/{len(prompts)}",
        "max_expected_score_difference": {
            name: max(abs(a - b) for a, b in zip(out[name]["expected"], cpu) if a is not None and b is not None)
            for name in ("transformers_gpu", "vllm_gpu")
        },
        "seconds": {name: out[name]["seconds"] for name in out},
    }


def training_check(model: str, seed: list[dict], tmp: Path) -> dict:
    from humpback.config import ForwardConfig
    from humpback.generate import generate
    from humpback.train import train_forward

    start = time.time()
    info = train_forward(seed[:40], [], model, tmp / "m0", ForwardConfig(max_steps=20))
    [answer] = generate(["Give one tip for sleeping well."], str(tmp / "m0"), None)
    return {
        "steps": info["steps"],
        "first_loss": info["first_loss"],
        "last_loss": info["last_loss"],
        "seconds": round(time.time() - start, 1),
        "answers": bool(answer),
    }


def run_check(tmp: Path) -> dict:
    from humpback import RunConfig, run
    from humpback.curate import select
    from humpback.files import read_jsonl
    from humpback.probe import JudgeProbe
    from humpback.shards import read_stage

    cfg = RunConfig(preset="small-judge", out=tmp / "run", iterations=1)
    cfg.augment.max_segments = 16
    start = time.time()
    stats = run(cfg, quiet=True)
    seconds = time.time() - start
    probe = JudgeProbe.load(tmp / "run" / "probe" / "iter1", cfg.curate.mode)
    c = cfg.curate
    again = select(
        list(read_stage(tmp / "run" / "iter1" / "ratings")),
        c.k,
        c.select,
        c.select_threshold,
        c.select_fraction,
        probe,
        estimate=c.estimate_good_share,
        target=c.target_precision,
        good_share=c.good_share,
    )
    ran = [r["id"] for r in read_jsonl(tmp / "run" / "iter1" / "curated" / "part-00000.jsonl")]
    return {
        "seconds": round(seconds, 1),
        "candidates": stats["candidates"],
        "selected": len(ran),
        "same_selection_recomputed_on_cpu": ran == [r["id"] for r in again],
        "accounting": stats.get("accounting"),
    }


def main() -> int:
    import torch

    from humpback.models import resolve_model
    from humpback.seed import load_seed

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU here", file=sys.stderr)
        return 2
    model = resolve_model("smollm2-135m")
    seed, _ = load_seed("demo")
    result = {"gpu": torch.cuda.get_device_name(0), "engines": engines_check(model, seed)}
    with tempfile.TemporaryDirectory() as tmp:
        result["training"] = training_check(model, seed, Path(tmp))
        result["run"] = run_check(Path(tmp))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gpu_check.json").write_text(json.dumps(result, indent=1) + "\n")
    e, t, r = result["engines"], result["training"], result["run"]
    lines = [
        f"# GPU check on {result['gpu']}",
        "",
        f"- engines: greedy answers identical between transformers and vLLM: {e['greedy_answers_identical']}; "
        f"largest expected-score difference from the CPU: {e['max_expected_score_difference']}; "
        f"seconds {e['seconds']}",
        f"- training: {t['steps']} steps, loss {t['first_loss']} -> {t['last_loss']}, {t['seconds']} s; "
        f"answers: {t['answers']}",
        f"- run: {r['candidates']} candidates, {r['selected']} selected, {r['seconds']} s; the same selection "
        f"recomputed on the CPU: {r['same_selection_recomputed_on_cpu']}",
    ]
    (RESULTS / "gpu_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    ok = r["same_selection_recomputed_on_cpu"] and t["answers"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
