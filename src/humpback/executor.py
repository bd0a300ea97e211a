"""The Ray executor: a stage's shards run on a pool of Ray Data actors.

The same shard function as the local executor, so both give the same records:

    pending shards ──> ray.data.from_items (one row per shard: index + pickled records)
                   ──> map_batches(_ShardActor, batch_size=1, ActorPoolStrategy(size=actors))
                           each actor builds the stage's worker once (loads one engine,
                           on its own GPU when the cluster has them) and runs shard after shard
                   ──> iter_rows() in shard order (preserve_order) ──> the driver writes
                       part-NNNNN.parquet, its rejects and counters (shards.write_shard)

A shard is the unit of resume, as locally: shards already written are never sent to Ray, and a
killed run loses only the shards in flight. The driver writes because it owns the run
directory and the corpus-wide steps that must see shards in order (segmentation's
near-duplicate join); on a multi-node cluster the run directory is on the driver's disk.

Why not ``ray.data.llm`` for the vLLM engine: it hosts vLLM on Ray Data actors as we do, but our
actors run humpback's own engines, so the prompts, the rubric, the logprob scoring of the five
score tokens, the Score-line follow-up and the per-shard sampling seeds are the same code on
both executors; a Ray run's output is then the local run's (tested).
"""

from __future__ import annotations

import logging
import pickle
import time
from typing import Callable, Iterator

from .config import ExecutorConfig

log = logging.getLogger("humpback")


def init_ray(cfg: ExecutorConfig):
    """Join the cluster at ``ray_address`` (or RAY_ADDRESS), else start a local one once per process."""
    import ray

    if not ray.is_initialized():
        ray.init(address=cfg.ray_address, include_dashboard=False, log_to_driver=True,
                 logging_level=logging.WARNING, configure_logging=True)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # shards come back in order: the driver writes them in order
    ctx.enable_progress_bars = False  # the stage's own progress bar counts written shards
    return ray


def refuse_engine_object(engine, cfg: ExecutorConfig | None, stage: str) -> None:
    """Ray actors load their own engines from the model path; an engine object cannot travel."""
    if engine is not None and cfg is not None and cfg.executor == "ray":
        raise ValueError(f"{stage}: with the ray executor every actor loads its own engine; give the model, not an engine")


def actor_plan(cfg: ExecutorConfig, cluster: dict, shards: int) -> dict:
    """How many actors, and what each one reserves. With GPUs in the cluster an engine actor holds
    one GPU (``ray_gpus_per_actor``, e.g. 0.5 to pack two small models per GPU) and there is one
    actor per GPU; without, one actor per ``ray_cpus_per_actor`` CPUs. Never more actors than shards."""
    gpus = cfg.ray_gpus_per_actor
    if gpus is None:
        gpus = 1.0 if cluster.get("GPU", 0) >= 1 else 0.0
    if cfg.ray_actors:
        actors = cfg.ray_actors
    elif gpus:
        actors = int(cluster.get("GPU", 0) // gpus)
    else:
        actors = int(cluster.get("CPU", 1) // cfg.ray_cpus_per_actor)
    return {"actors": max(1, min(actors, shards)), "num_gpus": gpus, "num_cpus": cfg.ray_cpus_per_actor}


class _ShardActor:
    """One Ray actor: builds the stage's worker (and its engine) once, then runs shards."""

    def __init__(self, worker: Callable):
        self.process = worker()

    def __call__(self, batch):
        import pyarrow as pa

        index = batch["index"][0].as_py()
        items = pickle.loads(batch["items"][0].as_py())
        start = time.time()
        output = self.process(items, index)
        return pa.table({"index": [index], "output": pa.array([pickle.dumps(output)], pa.large_binary()),
                         "seconds": [round(time.time() - start, 3)]})

    def __del__(self):
        if hasattr(getattr(self, "process", None), "close"):
            self.process.close()


def ray_map_shards(pending: Iterator[tuple[int, list]], worker: Callable, cfg: ExecutorConfig,
                   desc: str) -> Iterator[tuple[int, tuple, float]]:
    """Run ``worker()(items, index)`` for every pending shard on Ray Data actors; yields
    ``(index, output, seconds)`` in shard order, each as soon as it and the shards before it are done."""
    rows = [{"index": index, "items": pickle.dumps(batch)} for index, batch in pending]
    if not rows:
        return
    ray = init_ray(cfg)
    plan = actor_plan(cfg, ray.cluster_resources(), len(rows))
    log.info("%s: %d shards on %d Ray actors (%s CPU, %s GPU each)", desc, len(rows), plan["actors"],
             plan["num_cpus"], plan["num_gpus"])
    outputs = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
        _ShardActor, fn_constructor_args=(worker,), batch_size=1, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=plan["actors"]),
        num_cpus=plan["num_cpus"], num_gpus=plan["num_gpus"],
    )
    for row in outputs.iter_rows():
        yield row["index"], pickle.loads(row["output"]), row["seconds"]
