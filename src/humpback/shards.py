"""Sharded stage output: the resume and no-duplicate guarantees live here.

A stage reads an iterable of records, cuts it into fixed-size input shards and writes one
output shard per input shard: ``part-00000.jsonl`` ... (``part-00000.parquet`` from the Ray
executor). A shard, its rejects and its counters are written to temporary names and renamed,
counters and rejects first and the shard last, so the shard's existence means all three are
complete. A rerun skips every shard that exists, whichever executor wrote it; a stage is
finished when its ``_SUCCESS`` marker exists. Stage directories load with
``datasets.load_dataset("json", data_files="DIR/part-*.jsonl")`` (or ``"parquet"``).

``run_sharded`` runs a stage's shards in this process, or hands them to Ray Data
(``humpback.executor``); either way the driver writes them here, in order, the same way.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from tqdm.auto import tqdm

from .files import read_jsonl, write_json, write_jsonl, write_parquet  # noqa: F401 - the stage files' I/O
from .records import Reject

log = logging.getLogger("humpback")

SUCCESS = "_SUCCESS"


def stable_id(*parts: object) -> str:
    """A short id that depends only on where a record came from."""
    return hashlib.sha1("\x1f".join(str(p) for p in parts).encode("utf-8")).hexdigest()[:16]


SHARD_FORMATS = ("jsonl", "parquet")


def shard_name(index: int, fmt: str = "jsonl") -> str:
    return f"part-{index:05d}.{fmt}"


def shard_files(stage_dir: Path) -> list[Path]:
    return sorted(p for fmt in SHARD_FORMATS for p in Path(stage_dir).glob(f"part-*.{fmt}"))


def shard_exists(stage_dir: Path, index: int) -> bool:
    return any((Path(stage_dir) / shard_name(index, fmt)).exists() for fmt in SHARD_FORMATS)


def read_shard(path: Path) -> Iterator[dict]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        yield from pq.read_table(path).to_pylist()
    else:
        yield from read_jsonl(path)


def read_stage(stage_dir: Path) -> Iterator[dict]:
    """Every record of a stage, in shard order."""
    for path in shard_files(stage_dir):
        yield from read_shard(path)


def is_done(stage_dir: Path) -> bool:
    return (Path(stage_dir) / SUCCESS).exists()


def mark_done(stage_dir: Path, info: dict) -> None:
    write_json(Path(stage_dir) / SUCCESS, info)


def stage_info(stage_dir: Path) -> dict:
    """What a finished stage recorded in its _SUCCESS marker (empty if unfinished)."""
    path = Path(stage_dir) / SUCCESS
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _shard_counters(stage_dir: Path) -> Iterator[dict]:
    yield from read_json_counters(stage_dir).values()


def stage_counters(stage_dir: Path) -> Counter:
    """Sum of every shard's counters (e.g. how many segments each filter removed)."""
    total: Counter = Counter()
    for counters in _shard_counters(stage_dir):
        total.update({k: v for k, v in counters.items() if not k.startswith("_")})
    return total


def read_json_counters(stage_dir: Path) -> dict[int, dict]:
    """Each part's counters by part number (``_counters/part-N.json``)."""
    return {
        int(path.stem.split("-")[1]): json.loads(path.read_text(encoding="utf-8"))
        for path in sorted((Path(stage_dir) / "_counters").glob("part-*.json"))
    }


def stage_examples(stage_dir: Path, per_reason: int = 3) -> dict[str, list[str]]:
    """A few examples of what each filter of the stage removed (the shards' ``_examples`` counters)."""
    examples: dict[str, list[str]] = {}
    for counters in _shard_counters(stage_dir):
        for reason, shown in (counters.get("_examples") or {}).items():
            kept = examples.setdefault(reason, [])
            kept.extend(x for x in shown if len(kept) < per_reason and x not in kept)
    return examples


def stage_seconds(stage_dir: Path) -> float:
    """Time spent on the stage's shards, including those finished before a resume."""
    return round(sum(c.get("_seconds", 0.0) for c in _shard_counters(stage_dir)), 2)


def stage_usage(stage_dir: Path) -> dict | None:
    """What a stage asked of its models over all its shards (``_usage`` counters: prompts, prompt,
    generated and read tokens, engine seconds, engine and device); None for a stage without an engine."""
    total: dict | None = None
    for counters in _shard_counters(stage_dir):
        usage = counters.get("_usage")
        if not usage:
            continue
        if total is None:
            total = {"engine": usage.get("engine", ""), "device": usage.get("device", "")}
        for key, value in usage.items():
            if isinstance(value, (int, float)):
                total[key] = total.get(key, 0) + value
    if total is not None:
        total["seconds"] = round(total.get("seconds", 0.0), 2)
    return total


def stage_rejects(stage_dir: Path) -> Iterator[dict]:
    for path in sorted((Path(stage_dir) / "_rejects").glob("part-*.jsonl")):
        yield from read_jsonl(path)


ShardFn = Callable[[list, int], tuple[list, list[Reject], dict]]
"""process(items_of_shard, shard_index) -> (records, rejects, counters)"""
FinishFn = Callable[[list[dict], list[Reject], dict], tuple[list[dict], list[Reject], dict]]
"""finish(records, rejects, counters) -> the same, post-processed in shard order by the driver"""


def run_sharded(
    items: Iterable,
    stage_dir: Path,
    per_shard: int,
    worker: Callable[[], ShardFn],
    desc: str,
    total: int | None = None,
    executor=None,
    finish: FinishFn | None = None,
    resume: Callable[[Iterator[dict]], None] | None = None,
    max_bytes: int | None = None,
    size_of: Callable[[object], int] | None = None,
    count_of: Callable[[object], int] | None = None,
) -> dict:
    """Run a stage shard by shard: ``worker()`` builds the shard function once (it may load an
        engine), only when a shard needs work; ``finish``, if given, post-processes each shard's
        output in shard order in this process (segmentation's corpus-wide deduplication); ``resume``,
        if given, is handed the records of the shards an earlier attempt wrote, before any new shard
        is finished (the deduplication learns what they kept). ``max_bytes`` caps a shard by the sum
        of ``size_of(item)`` as well as by ``per_shard`` items (``count_of(item)`` items each, when
    given): what one shard holds in memory.

        Shards whose output exists are skipped, so a killed stage resumes from its last complete
        shard with nothing lost or duplicated. ``executor`` (an ExecutorConfig) with ``executor:
        ray`` runs the shard function on Ray Data actors instead. Returns the _SUCCESS info.
    """
    stage_dir = Path(stage_dir)
    if is_done(stage_dir):
        return stage_info(stage_dir)
    stage_dir.mkdir(parents=True, exist_ok=True)
    if resume is not None:
        resume(read_stage(stage_dir))
    n_shards = None if total is None else max(1, -(-total // per_shard))
    bar = tqdm(total=n_shards, desc=desc, unit="shard")
    pending = _skip_done(_batches(items, per_shard, max_bytes, size_of, count_of), stage_dir, bar)
    if executor is not None and executor.executor == "ray":
        from .executor import ray_map_shards

        outputs, fmt = ray_map_shards(pending, worker, executor, desc), "parquet"
    else:
        outputs, fmt = _map_shards_here(pending, worker), "jsonl"
    for index, (records, rejects, counters), seconds in outputs:
        if finish is not None:
            records, rejects, counters = finish(records, rejects, counters)
        write_shard(stage_dir, index, records, rejects, {**counters, "_seconds": seconds}, fmt)
        bar.update(1)
    bar.close()
    info = {
        "records": sum(1 for _ in read_stage(stage_dir)),
        "rejects": sum(1 for _ in stage_rejects(stage_dir)),
        "seconds": stage_seconds(stage_dir),
    }
    mark_done(stage_dir, info)
    return info


class EngineShards:
    """The worker of a stage that generates: one engine, held across the shards of one process or
    Ray actor, for the stage's shard function ``shard_fn(items, shard_index, engine, cfg, **context)``.
    The engine is the caller's when given (left open), else made from ``cfg`` here and closed
    with the worker."""

    def __init__(self, shard_fn: Callable, model_path: str, cfg, engine=None, **context):
        from .engines import make_engine
        from .engines.metered import metered

        self.shard_fn, self.cfg, self.context = shard_fn, cfg, context
        self.owns_engine = engine is None
        self.engine = metered(engine or make_engine(str(model_path), self.engine_config(cfg)))
        self.made: list = []  # the other engines this worker made (hold): closed with it

    def hold(self, key: str, engine, model: str | None, cfg) -> None:
        """Another engine the shard function gets as ``key`` (augment's fit engine, a judge that is
        another model): the one given, else one made here on ``model`` with ``cfg`` and closed
        with the worker; None when neither is given. Metered like the worker's own."""
        from .engines import make_engine
        from .engines.metered import metered

        if engine is None and model is not None:
            engine = make_engine(str(model), cfg)
            self.made.append(engine)
        self.context[key] = metered(engine) if engine is not None else None

    def engine_config(self, cfg):
        """The settings the worker's own engine is made with (a stage may batch differently)."""
        return cfg

    def metered_engines(self) -> list:
        """The engines whose work a shard's ``_usage`` counts: this worker's, and any the stage
        holds beside it (augment's fit engine)."""
        from .engines.metered import Metered

        return [self.engine, *(e for e in self.context.values() if isinstance(e, Metered))]

    def __call__(self, items: list, shard_index: int):
        from .engines.metered import shard_usage

        engines = self.metered_engines()
        before = [copy.copy(e.usage) for e in engines]
        records, rejects, counters = self.shard_fn(items, shard_index, self.engine, self.cfg, **self.context)
        return records, rejects, {**counters, "_usage": shard_usage(engines, before)}

    def close(self) -> None:
        if self.owns_engine:
            self.engine.close()
        for engine in self.made:
            engine.close()


def _batches(
    items: Iterable,
    per_shard: int,
    max_bytes: int | None = None,
    size_of: Callable[[object], int] | None = None,
    count_of: Callable[[object], int] | None = None,
) -> Iterator[tuple[int, list]]:
    """(index, items) of each shard: ``per_shard`` items (or items that ``count_of`` counts as that
    many: a Parquet row group counts its rows), or fewer where their sizes reach ``max_bytes`` (a
    shard holds at least one item, however large)."""
    iterator = iter(items)
    if (max_bytes is None or size_of is None) and count_of is None:
        for index in itertools.count():
            chunk = list(itertools.islice(iterator, per_shard))
            if not chunk:
                return
            yield index, chunk
        return
    batch: list = []
    size = count = index = 0
    for item in iterator:
        item_size = size_of(item) if size_of is not None and max_bytes is not None else 0
        item_count = count_of(item) if count_of is not None else 1
        too_big = max_bytes is not None and size + item_size > max_bytes
        if batch and (count + item_count > per_shard or too_big):
            yield index, batch
            batch, size, count, index = [], 0, 0, index + 1
        batch.append(item)
        size += item_size
        count += item_count
    if batch:
        yield index, batch


def _skip_done(shards: Iterator[tuple[int, list]], stage_dir: Path, bar) -> Iterator[tuple[int, list]]:
    for index, batch in shards:
        if shard_exists(stage_dir, index):
            bar.update(1)
        else:
            yield index, batch


def _map_shards_here(pending: Iterator[tuple[int, list]], worker: Callable[[], ShardFn]):
    """The local executor: one process, shards in order; the worker is built at the first one."""
    process = None
    try:
        for index, batch in pending:
            process = process or worker()
            start = time.time()
            output = process(batch, index)
            yield index, output, round(time.time() - start, 3)
    finally:
        close = getattr(process, "close", None)
        if close is not None:
            close()


def write_shard(
    stage_dir: Path, index: int, records: list[dict], rejects: list[Reject], counters: dict, fmt: str = "jsonl"
) -> None:
    write_jsonl(stage_dir / "_rejects" / shard_name(index), rejects)
    write_json(stage_dir / "_counters" / f"part-{index:05d}.json", counters)
    out = stage_dir / shard_name(index, fmt)  # last: its existence means the shard is complete
    write_parquet(out, records) if fmt == "parquet" else write_jsonl(out, records)


def reject(stage: str, source: str, reason: str, record: object = None) -> Reject:
    """A reject entry, logged now with where it came from and kept for rejects.jsonl."""
    log.warning("%s: %s (%s)", source, reason, stage)
    entry = Reject(stage=stage, source=source, reason=reason)
    if record is not None:
        text = record if isinstance(record, str) else json.dumps(record, ensure_ascii=False, default=str)
        entry["record"] = text[:2000]
    return entry
