"""The corpus stages on the local executor against the Ray executor, on the same machine and input.

    python bench/scale.py          # or: make bench-scale

Segmentation of ../shared/data/web (the bundled demo pages when absent), then augmentation and
logprob rating of the first N kept segments with the embedded SmolLM2-135M-Instruct (transformers
engine, bf16, greedy so both executors do the same work). Local: one process, all cores.
Ray: a local Ray cluster, --actors actors with cores/actors CPUs each (one engine per actor).
On one small machine this measures what Ray costs (start-up, pickling, per-actor model loads)
against what the actor pool gains; on a cluster the pool grows with the GPUs (README, Running at scale).

Writes bench/results/scale.json and bench/results/scale.md.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_WEB = ROOT.parent / "shared" / "data" / "web"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segments", type=int, default=64)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()

    import ray

    from humpback.augment import augment
    from humpback.config import AugmentConfig, CurateConfig, ExecutorConfig, SegmentConfig
    from humpback.curate import rate
    from humpback.models import resolve_model
    from humpback.segment import segment
    from humpback.shards import read_stage

    model = resolve_model("smollm2-135m")
    corpus = str(SHARED_WEB) if SHARED_WEB.exists() else "demo"
    cores = os.cpu_count() or 1
    start = time.time()
    ray.init(num_cpus=cores, include_dashboard=False)
    ray_start = round(time.time() - start, 2)
    executors = {
        "local": None,
        "ray": ExecutorConfig(executor="ray", ray_actors=args.actors, ray_cpus_per_actor=cores / args.actors),
    }
    seg_cfg = SegmentConfig(documents_per_shard=10)
    aug_cfg = AugmentConfig(temperature=0.0, max_segments=args.segments, records_per_shard=16)
    cur_cfg = CurateConfig(mode="logprob", records_per_shard=16)
    rows, outputs = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, executor in executors.items():
            out = Path(tmp) / name
            for stage, work in (
                ("segment", lambda: segment(corpus, out / "segments", seg_cfg, executor=executor)),
                ("augment", lambda: augment(out / "segments", model, out / "candidates", aug_cfg, executor=executor)),
                (
                    "curate_logprob",
                    lambda: rate(out / "candidates", model, out / "ratings", cur_cfg, executor=executor),
                ),
            ):
                t = time.time()
                info = work()
                seconds = round(time.time() - t, 2)
                rows.append(
                    {
                        "stage": stage,
                        "executor": name,
                        "records": info["records"],
                        "seconds": seconds,
                        "records_per_s": round(info["records"] / seconds, 3),
                    }
                )
                print(rows[-1], flush=True)
            outputs[name] = [list(read_stage(out / d)) for d in ("segments", "candidates", "ratings")]
    ray.shutdown()
    # Which records differ: with a real model in bf16, an actor's torch threads (cores / actors) can
    # round a matmul differently from the local run's, and greedy decoding then takes another token.
    same = {
        stage: sum(a == b for a, b in zip(local, on_ray))
        for stage, local, on_ray in zip(("segments", "candidates", "ratings"), outputs["local"], outputs["ray"])
    }
    same["ratings_same_score"] = sum(a["score"] == b["score"] for a, b in zip(outputs["local"][2], outputs["ray"][2]))
    results = {
        "rows": rows,
        "same_output": same,
        "ray_start_seconds": ray_start,
        "cores": cores,
        "actors": args.actors,
        "corpus": corpus,
        "segments": args.segments,
        "date": time.strftime("%Y-%m-%d"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        f"Local executor vs Ray ({args.actors} actors) on {cores} cores; Ray start {ray_start} s (not in the times); "
        f"records equal to the local run's: {same}",
        "",
        "| stage | executor | records | seconds | records/s |",
        "|---|---|---:|---:|---:|",
    ]
    lines += [
        f"| {r['stage']} | {r['executor']} | {r['records']} | {r['seconds']} | {r['records_per_s']} |" for r in rows
    ]
    (args.out / "scale.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
