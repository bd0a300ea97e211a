"""The Ray executor: a stage's shards run on a pool of Ray actors.

The same shard function as the local executor, so both give the same records:

    pending shards (read lazily, a few at a time)
        ──> ray.util.ActorPool of _ShardActor: each actor builds the stage's worker once
            (loads one engine, on its own GPU when the cluster has them) and runs shard after shard
        ──> results in shard order ──> the driver writes part-NNNNN.parquet, its rejects and
            counters (shards.write_shard)

The driver streams: it reads the next shard only when fewer than two per actor are in flight,
so its memory holds a bounded number of shards whatever the corpus size (it used to pickle every
pending shard before dispatching the first).

A shard is the unit of resume, as locally: shards already written are never sent to Ray, and a
killed run loses only the shards in flight. The driver writes because it owns the run
directory and the corpus-wide steps that must see shards in order (segmentation's
near-duplicate join, which asks an index held in an actor of its own: ``Hosted``); on a
multi-node cluster the run directory is on the driver's disk. A Parquet corpus travels as row
group references, read by the actors.

Why not ``ray.data.llm`` for the vLLM engine: it hosts vLLM on Ray Data actors as we do, but our
actors run humpback's own engines, so the prompts, the rubric, the logprob scoring of the five
score tokens, the Score-line follow-up and the per-shard sampling seeds are the same code on
both executors; a Ray run's output is then the local run's (tested).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterator

from .config import ExecutorConfig

log = logging.getLogger("humpback")


def init_ray(cfg: ExecutorConfig):
    """Join the cluster at ``ray_address`` (or RAY_ADDRESS), else start a local one once per process."""
    import ray

    if not ray.is_initialized():
        ray.init(
            address=cfg.ray_address,
            include_dashboard=False,
            log_to_driver=True,
            logging_level=logging.WARNING,
            configure_logging=True,
        )
    import ray.util  # noqa: F401 - ActorPool

    return ray


def refuse_engine_object(engine, cfg: ExecutorConfig | None, stage: str) -> None:
    """Ray actors load their own engines from the model path; an engine object cannot travel."""
    if engine is not None and cfg is not None and cfg.executor == "ray":
        raise ValueError(
            f"{stage}: with the ray executor every actor loads its own engine; give the model, not an engine"
        )


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


IN_FLIGHT_PER_ACTOR = 2  # shards held per actor: one running, one waiting, so no actor idles


class _ShardActor:
    """One Ray actor: builds the stage's worker (and its engine) once, then runs shards."""

    def __init__(self, worker: Callable):
        self.process = worker()

    def run(self, index: int, items: list) -> tuple[int, tuple, float]:
        start = time.time()
        output = self.process(items, index)
        return index, output, round(time.time() - start, 3)

    def __del__(self):
        if hasattr(getattr(self, "process", None), "close"):
            self.process.close()


def ray_map_shards(
    pending: Iterator[tuple[int, list]], worker: Callable, cfg: ExecutorConfig, desc: str
) -> Iterator[tuple[int, tuple, float]]:
    """Run ``worker()(items, index)`` for every pending shard on Ray actors; yields
    ``(index, output, seconds)`` in shard order, each as soon as it and the shards before it are done.
    At most IN_FLIGHT_PER_ACTOR shards per actor are read from ``pending`` ahead of the results."""
    pending = iter(pending)
    ray = init_ray(cfg)
    cluster = ray.cluster_resources()
    wanted = actor_plan(cfg, cluster, 1 << 30)["actors"]
    first = list(itertools.islice(pending, wanted))  # never more actors than there are shards
    if not first:
        return
    plan = actor_plan(cfg, cluster, len(first))
    log.info(
        "%s: shards on %d Ray actors (%s CPU, %s GPU each)", desc, plan["actors"], plan["num_cpus"], plan["num_gpus"]
    )
    actor_class = ray.remote(_ShardActor).options(num_cpus=plan["num_cpus"], num_gpus=plan["num_gpus"])
    actors = [actor_class.remote(worker) for _ in range(plan["actors"])]
    pool = ray.util.ActorPool(actors)
    limit = IN_FLIGHT_PER_ACTOR * len(actors)
    in_flight = 0
    try:
        for index, items in itertools.chain(first, pending):
            pool.submit(lambda actor, job: actor.run.remote(*job), (index, items))
            in_flight += 1
            if in_flight >= limit:
                yield pool.get_next()  # in submission order: shard order
                in_flight -= 1
        while pool.has_next():
            yield pool.get_next()
    finally:
        for actor in actors:
            ray.kill(actor)


class Hosted:
    """An object of ``cls`` living in a Ray actor of its own, called like the object: ``hosted.m(x)``
    is ``ray.get(actor.m.remote(x))``. The segment stage keeps its deduplication index in one, so
    the driver's memory does not grow with the corpus (the index does, in the actor; the README
    gives its budget per million segments). The actor reserves no CPU (it mostly waits), is made
    at the first call and killed by ``close``."""

    def __init__(self, cls: type, cfg: ExecutorConfig, *args):
        self._cls, self._cfg, self._args = cls, cfg, args
        self._actor = None

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        ray = init_ray(self._cfg)
        if self._actor is None:
            self._actor = ray.remote(self._cls).options(num_cpus=0).remote(*self._args)
        method = getattr(self._actor, name)
        return lambda *args, **kwargs: ray.get(method.remote(*args, **kwargs))

    def close(self) -> None:
        if self._actor is not None:
            import ray

            ray.kill(self._actor)
            self._actor = None
