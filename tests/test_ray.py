"""The Ray executor against the local one: same records from every corpus stage, resume by shard,
near-duplicates found across workers. A local Ray cluster (2 CPUs) and the tiny random models."""

import shutil

import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'humpback[ray]')")

from humpback import run  # noqa: E402
from humpback.augment import augment  # noqa: E402
from humpback.config import AugmentConfig, CurateConfig, ExecutorConfig, SegmentConfig  # noqa: E402
from humpback.corpus import corpus_files  # noqa: E402
from humpback.curate import curate  # noqa: E402
from humpback.executor import actor_plan  # noqa: E402
from humpback.segment import segment  # noqa: E402
from humpback.shards import read_stage, stage_counters  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]
RAY = ExecutorConfig(executor="ray", ray_actors=2)


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=300 * 1024**2)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The demo pages, plus an exact and a near copy of the first page filed last, so the
    duplicates land in other shards (and on other actors) than their originals."""
    root = tmp_path_factory.mktemp("corpus")
    pages = corpus_files("demo")
    for page in pages:
        shutil.copy(page, root / page.name)
    first = pages[0].read_text(encoding="utf-8")
    (root / "zz-exact-copy.html").write_text(first, encoding="utf-8")
    sentence = first.index("</p>")  # one word changed in the first paragraph
    (root / "zz-near-copy.html").write_text(first[:sentence] + " Indeed." + first[sentence:], encoding="utf-8")
    return root


def _by_stage(out):
    return list(read_stage(out))


# How far a fit read in a Ray actor may be from the same read locally: the lively model's wide
# random weights (std 0.3) magnify float differences; measured up to 2.1e-3 on one of ten fits
# (2026-12-01). The records without their fits, the kept instruction included, must be equal.
FIT_TOLERANCE = 5e-3


def _fits(records: list[dict]) -> list[float | None]:
    """Every fit value of best-of-n records (the kept one's, then its alternatives'), removed from them."""
    found = []
    for r in records:
        found.append(r.pop("fit", None))
        for alternative in r.get("alternatives") or []:
            found.append(alternative.pop("fit", None))
    return found


def test_corpus_stages_on_ray_equal_local(tmp_path, corpus, lively_model):
    seg_cfg = SegmentConfig(documents_per_shard=3)
    aug_cfg = AugmentConfig(
        temperature=0.0,
        max_new_tokens=10,
        records_per_shard=4,
        max_segments=10,
        num_instructions=2,
        fit_model=lively_model,
    )  # best-of-n: two engines per actor
    outputs = {}
    for name, executor in (("local", None), ("ray", RAY)):
        out = tmp_path / name
        segment(corpus, out / "segments", seg_cfg, executor=executor)
        augment(out / "segments", lively_model, out / "candidates", aug_cfg, executor=executor)
        for mode in ("logprob", "generate"):
            cur_cfg = CurateConfig(mode=mode, k=1, max_new_tokens=8, records_per_shard=3)
            curate(out / "candidates", lively_model, out / mode, cur_cfg, executor=executor)
        outputs[name] = out

    local, on_ray = outputs["local"], outputs["ray"]
    assert sorted(p.name for p in (on_ray / "segments").glob("part-*")) == [
        p.name.replace(".jsonl", ".parquet") for p in sorted((local / "segments").glob("part-*"))
    ]
    segments = _by_stage(local / "segments")
    assert segments == _by_stage(on_ray / "segments")
    counts = stage_counters(local / "segments")
    assert counts == stage_counters(on_ray / "segments")
    # the copies were caught although they were parsed in other shards than their originals
    assert counts["removed_exact_duplicate"] >= 1 and counts["removed_near_duplicate"] >= 1
    assert not any("zz-" in s["source"] for s in segments)

    candidates = _by_stage(local / "candidates")
    remote = _by_stage(on_ray / "candidates")
    # the fit is a float read in another process: equal to a few decimals (FIT_TOLERANCE)
    assert _fits(candidates) == pytest.approx(_fits(remote), abs=FIT_TOLERANCE)
    assert len(candidates) == 10 and candidates == remote
    assert len({c["instruction"] for c in candidates}) > 1  # the model's output depends on the segment
    for mode in ("logprob", "generate"):
        ratings, remote_ratings = _by_stage(local / mode / "ratings"), _by_stage(on_ray / mode / "ratings")
        assert [r["id"] for r in ratings] == [c["id"] for c in candidates]
        assert _fits(ratings) == pytest.approx(_fits(remote_ratings), abs=FIT_TOLERANCE)
        assert ratings == remote_ratings, mode


def test_ray_resume_redoes_only_missing_shards(tmp_path, lively_model):
    cfg = AugmentConfig(temperature=0.0, max_new_tokens=6, records_per_shard=2, num_instructions=1)
    segments = [
        {"id": f"s{i}", "source": f"t#{i}", "header": "", "text": f"Paragraph number {i} about tea."} for i in range(8)
    ]
    out = tmp_path / "candidates"
    augment(segments, lively_model, out, cfg, executor=RAY)
    first = _by_stage(out)
    kept = {p: p.stat().st_mtime_ns for p in out.glob("part-*.parquet") if p.name != "part-00002.parquet"}
    (out / "part-00002.parquet").unlink()
    (out / "_SUCCESS").unlink()
    info = augment(segments, lively_model, out, cfg, executor=RAY)
    assert info["records"] == 8 and _by_stage(out) == first
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # the finished shards were not redone
    assert (out / "part-00002.parquet").exists()


def test_run_with_ray_executor(tmp_path, lively_model):
    """`humpback run` with executor: ray gives the local run's segments, candidates and ratings."""
    from test_pipeline import tiny_config

    runs = {}
    for name in ("local", "ray"):
        cfg = tiny_config(tmp_path / name, lively_model, executor=name, ray_actors=2)
        cfg.augment.temperature = 0.0
        stats = run(cfg, quiet=True)
        runs[name] = (cfg.out, stats)
    (local, local_stats), (on_ray, ray_stats) = runs["local"], runs["ray"]

    def records(run_dir, stage):  # the model fields name each run's own directory
        return [
            {k: v for k, v in r.items() if k not in ("backward_model", "judge_model")}
            for r in _by_stage(run_dir / stage)
        ]

    for stage in ("segments", "candidates", "iter1/ratings", "iter2/ratings"):
        here, there = records(local, stage), records(on_ray, stage)
        # the fit is a float read in another process: equal to a few decimals (FIT_TOLERANCE)
        assert _fits(here) == pytest.approx(_fits(there), abs=FIT_TOLERANCE), stage
        assert here == there, stage
    assert (on_ray / "candidates" / "part-00000.parquet").exists()
    assert ray_stats["candidates"] == local_stats["candidates"] > 0
    assert ray_stats["iterations"] == local_stats["iterations"]


def test_actor_plan():
    gpu_cluster, cpu_cluster = {"CPU": 64.0, "GPU": 8.0}, {"CPU": 16.0}
    assert actor_plan(ExecutorConfig(), gpu_cluster, 100) == {"actors": 8, "num_gpus": 1.0, "num_cpus": 1.0}
    assert actor_plan(ExecutorConfig(ray_gpus_per_actor=0.5), gpu_cluster, 100)["actors"] == 16
    assert actor_plan(ExecutorConfig(ray_cpus_per_actor=4), cpu_cluster, 100) == {
        "actors": 4,
        "num_gpus": 0.0,
        "num_cpus": 4,
    }
    assert actor_plan(ExecutorConfig(), cpu_cluster, 3)["actors"] == 3  # never more actors than shards
    assert actor_plan(ExecutorConfig(ray_actors=5), gpu_cluster, 100)["actors"] == 5


def test_engine_objects_do_not_travel_to_ray(tmp_path):
    from conftest import ScriptedEngine

    with pytest.raises(ValueError, match="loads its own engine"):
        augment(
            [{"id": "a", "source": "s", "text": "t"}], "m", tmp_path / "c", engine=ScriptedEngine(str), executor=RAY
        )


def test_the_driver_streams_shards_to_the_actors():
    """The driver reads a pending shard only when fewer than IN_FLIGHT_PER_ACTOR per actor are
    in flight (it used to pickle every pending shard before dispatching the first), and the
    results still come back in shard order."""
    from humpback.executor import IN_FLIGHT_PER_ACTOR, ray_map_shards

    pulled = []

    def pending():
        for index in range(12):
            pulled.append(index)
            yield index, [index]

    def worker():
        return lambda items, index: ([{"value": items[0] * 10}], [], {"shard": index})

    results = ray_map_shards(pending(), worker, ExecutorConfig(executor="ray", ray_actors=2), "stream test")
    first = next(results)
    assert len(pulled) <= IN_FLIGHT_PER_ACTOR * 2 < 12
    rest = list(results)
    assert [index for index, _, _ in [first] + rest] == list(range(12))
    assert [output[0][0]["value"] for _, output, _ in [first] + rest] == [i * 10 for i in range(12)]


def test_a_parquet_corpus_on_ray_is_read_by_the_actors_and_deduplicated_in_an_index_actor(tmp_path, monkeypatch):
    """On Ray a Parquet corpus travels as row groups (the driver reads only footers), the actors read
    and segment them, the dedup index is an actor of its own, and the segments, counters and a resume
    after a lost shard are the local executor's."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from test_segment import _fineweb_rows

    import humpback.executor
    from humpback.corpus import RowGroup

    rows = _fineweb_rows()
    rows.append(dict(rows[0], url="https://example.org/copy"))  # an exact copy in the last row group
    near = dict(rows[1], url="https://example.org/near")
    near["text"] = near["text"].replace(" the ", " a ", 1)
    rows.append(near)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    pq.write_table(pa.Table.from_pylist(rows), corpus / "fineweb.parquet", row_group_size=4)
    cfg = SegmentConfig(documents_per_shard=4)
    segment(str(corpus), tmp_path / "local", cfg)

    shipped = []
    real_map = humpback.executor.ray_map_shards

    def recording(pending, *args):
        def watched():
            for index, items in pending:
                shipped.extend(type(item) for item in items)
                yield index, items

        return real_map(watched(), *args)

    monkeypatch.setattr(humpback.executor, "ray_map_shards", recording)
    out = tmp_path / "ray"
    segment(str(corpus), out, cfg, executor=RAY)
    assert shipped and set(shipped) == {RowGroup}  # no document text left the driver
    local = _by_stage(tmp_path / "local")
    assert _by_stage(out) == local and stage_counters(out) == stage_counters(tmp_path / "local")
    counts = stage_counters(out)
    assert counts["removed_exact_duplicate"] >= 1 and counts["removed_near_duplicate"] >= 1
    assert not any("example.org/copy#" in s["source"] or "example.org/near#" in s["source"] for s in local)

    # a lost shard is redone; the index actor first learns what the written shards kept
    (out / "part-00001.parquet").unlink()
    (out / "_SUCCESS").unlink()
    segment(str(corpus), out, cfg, executor=RAY)
    assert _by_stage(out) == local
