"""The corpus stages at 100k documents: segmentation and deduplication on the local executor and on
Ray, with the driver's and the workers' peak memory at 10k, 30k and 100k documents.

    python bench/scale_large.py            # or: make bench-scale-large (not in make test)
    python bench/scale_large.py --sizes 2000 --runs parquet:local   # a quick look

The documents are built from the 70 shared web pages (../shared/data/web; the bundled demo pages
when absent): their segments are split into sentences, and each document is 12 sentences drawn at
random from that pool, in three paragraphs, so the filters see real sentences and two documents
share almost no word 5-gram (no accidental near-duplicates). A known share (--planted, 2%) of the
documents are planted near-duplicates: a copy of an earlier document with 1% of its words replaced
(word 5-gram Jaccard about 0.9, above the default 0.8 threshold). A planted copy is found when no
segment of it is kept.

The corpus is written as Parquet (row groups of 1,000 rows, FineWeb's columns: text, id, url) and
as JSONL; ``--runs`` picks format and executor (default: Parquet on both executors, JSONL on Ray).
On Ray a Parquet corpus is sharded by row groups: the actors read the text, the driver only the
files' footers; a JSONL corpus is read by the driver and shipped to the actors.
Deduplication's index lives in an actor of its own on Ray (in the driver locally).

Each (format, executor, size) runs in its own process, so each peak is its own: the driver's peak
resident memory (VmHWM: not ru_maxrss, which a child started by fork and exec inherits from its
parent, here the process that built the corpus in memory) and, on Ray, each actor process's peak
resident memory (the shard actors and the index's), sampled every 0.2 s.

Writes bench/results/scale_large.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))
RESULTS = ROOT / "bench" / "results"
SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
SENTENCES_PER_DOCUMENT = 12
ROW_GROUP_ROWS = 1000
SOURCE_ROW = re.compile(r":(row)?(\d+)(#|$)")  # FILE:LINE (JSONL, from 1) or FILE:rowN (Parquet, from 0)
EDIT_SHARE = 0.01  # words replaced in a planted near-duplicate


def sentence_pool(work: Path) -> list[str]:
    """The sentences of the shared pages' segments (30 to 400 characters, distinct)."""
    from web_candidates import web_segments

    pool: dict[str, None] = {}
    for seg in web_segments(work):
        for line in seg["text"].splitlines():
            for sentence in SENTENCE.split(line.strip()):
                if 30 <= len(sentence) <= 400:
                    pool.setdefault(sentence, None)
    return list(pool)


def build(count: int, planted: float, path: Path, work: Path, seed: int = 0) -> dict:
    """``count`` documents as JSONL (id, url, text), and the same as Parquet beside it (``.parquet``);
    returns the planted copies' line numbers and the line numbers of their originals."""
    pool = sentence_pool(work)
    vocabulary = sorted({w for s in pool for w in s.split()})
    rng = random.Random(seed)
    texts: list[str] = []
    copies: dict[int, int] = {}  # line (1-based) of a planted copy -> line of its original
    with path.open("w", encoding="utf-8") as f:
        for i in range(count):
            if i > 100 and rng.random() < planted:
                original = rng.randrange(len(texts))
                words = texts[original].split(" ")
                for j in rng.sample(range(len(words)), max(1, int(len(words) * EDIT_SHARE))):
                    words[j] = rng.choice(vocabulary)
                text = " ".join(words)
                copies[i + 1] = original + 1
            else:
                sentences = rng.sample(pool, SENTENCES_PER_DOCUMENT)
                text = "\n\n".join(" ".join(sentences[k : k + 4]) for k in range(0, SENTENCES_PER_DOCUMENT, 4))
            texts.append(text)
            f.write(json.dumps({"id": f"doc{i}", "url": f"https://example.org/{i}", "text": text}) + "\n")
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = [f"doc{i}" for i in range(count)]
    table = pa.table({"text": texts, "id": ids, "url": [f"https://example.org/{i}" for i in range(count)]})
    pq.write_table(table, path.with_suffix(".parquet"), row_group_size=ROW_GROUP_ROWS)
    return {"pool_sentences": len(pool), "copies": copies}


def document_index(source: str) -> int:
    """A kept segment's document, counted from 0, from its source (FILE:LINE#pos or FILE:rowN#url#pos)."""
    match = SOURCE_ROW.search(source)
    assert match, source
    return int(match.group(2)) - (0 if match.group(1) else 1)


class PeakSampler(threading.Thread):
    """Every 0.2 s: the resident memory of each Ray actor process (``ray::`` in its name): the shard
    actors' and the deduplication index's."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peaks: dict[int, int] = {}
        self.index_peaks: dict[int, int] = {}
        self.stopped = threading.Event()

    def run(self) -> None:
        import psutil

        while not self.stopped.wait(0.2):
            for p in psutil.process_iter(["name", "cmdline"]):
                try:
                    name = " ".join(p.info["cmdline"] or [p.info["name"] or ""])
                    peaks = None
                    if "ray::" in name and "ShardActor" in name:
                        peaks = self.peaks
                    elif "ray::" in name and "DedupIndex" in name:
                        peaks = self.index_peaks
                    if peaks is not None:
                        peaks[p.pid] = max(peaks.get(p.pid, 0), p.memory_info().rss)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue


def peak_resident() -> int:
    """This process's own peak resident bytes (Linux: VmHWM, the high-water mark of its memory map,
    which starts anew at exec; ru_maxrss would carry the parent's peak at the fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def run_one(corpus: Path, executor: str, actors: int, out: Path, copies: dict[int, int]) -> dict:
    """Segment ``corpus`` (this process); time, counters, peaks and planted copies found."""
    import humpback.segment  # noqa: F401 - the module (the package attribute is the function)
    from humpback.config import ExecutorConfig, SegmentConfig
    from humpback.executor import Hosted
    from humpback.segment import segment
    from humpback.shards import read_stage, stage_counters

    segment_module = sys.modules["humpback.segment"]
    cfg = SegmentConfig()
    index_bytes = []  # the index's own measure of its sets (DedupIndex.nbytes), read as the stage ends

    class MeasuredDeduplicator(segment_module.Deduplicator):  # a local index kept, to weigh at the end
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if not isinstance(self.index, Hosted):
                index_bytes.append(self.index)

    segment_module.Deduplicator = MeasuredDeduplicator  # type: ignore[misc]
    hosted_close = Hosted.close

    def close_measured(self):  # the hosted index is weighed before its actor goes
        if self._actor is not None:
            index_bytes.append(self.nbytes())
        hosted_close(self)

    Hosted.close = close_measured  # type: ignore[method-assign]
    ex = None
    sampler = None
    if executor == "ray":
        import ray

        cores = os.cpu_count() or 1
        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
        ex = ExecutorConfig(executor="ray", ray_actors=actors, ray_cpus_per_actor=cores / actors)
        sampler = PeakSampler()
        sampler.start()
    start = time.time()
    segment(str(corpus), out, cfg, ex)
    seconds = time.time() - start
    if sampler is not None:
        sampler.stopped.set()
        sampler.join()
    index_size = sum(x if isinstance(x, int) else x.nbytes() for x in index_bytes)
    counts = stage_counters(out)
    kept_lines: dict[int, int] = {}
    for seg in read_stage(out):
        line = document_index(seg["source"]) + 1
        kept_lines[line] = kept_lines.get(line, 0) + 1
    planted = {int(k): v for k, v in copies.items()}
    # a copy is countable when its original kept a segment (else there was nothing to duplicate)
    countable = [c for c, o in planted.items() if kept_lines.get(o)]
    missed = [c for c in countable if kept_lines.get(c)]
    documents = counts.get("documents", 0)
    return {
        "format": "parquet" if corpus.suffix == ".parquet" else "jsonl",
        "executor": executor,
        "documents": documents,
        "seconds": round(seconds, 1),
        "documents_per_second": round(documents / seconds, 1),
        "documents_per_second_per_core": round(documents / seconds / (os.cpu_count() or 1), 1),
        "segments_kept": counts.get("segments_kept", 0),
        "removed_near_duplicate": counts.get("removed_near_duplicate", 0),
        "removed_exact_duplicate": counts.get("removed_exact_duplicate", 0),
        "planted_copies": len(countable),
        "planted_found": len(countable) - len(missed),
        "planted_found_share": round((len(countable) - len(missed)) / max(1, len(countable)), 4),
        "driver_peak_mib": round(peak_resident() / 2**20, 1),
        "dedup_index_mib": round(index_size / 2**20, 1),
        "index_bytes_per_segment": round(index_size / max(1, counts.get("segments_kept", 0))),
        "worker_peak_mib": (
            None if sampler is None else [round(v / 2**20, 1) for v in sorted(sampler.peaks.values())]
        ),
        "index_actor_peak_mib": (
            None if sampler is None else [round(v / 2**20, 1) for v in sorted(sampler.index_peaks.values())]
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument(
        "--runs",
        nargs="+",
        default=["parquet:local", "parquet:ray", "jsonl:ray"],
        choices=[f"{f}:{e}" for f in ("parquet", "jsonl") for e in ("local", "ray")],
        help="FORMAT:EXECUTOR pairs to run at every size",
    )
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--planted", type=float, default=0.02)
    parser.add_argument("--one", nargs=4, metavar=("CORPUS", "EXECUTOR", "OUT", "COPIES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        corpus, executor, out, copies = args.one
        result = run_one(Path(corpus), executor, args.actors, Path(out), json.loads(Path(copies).read_text()))
        print("RESULT " + json.dumps(result))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for size in args.sizes:
            corpus = work / f"docs-{size}.jsonl"
            built = build(size, args.planted, corpus, work / f"pages-{size}")
            copies = work / f"copies-{size}.json"
            copies.write_text(json.dumps(built["copies"]))
            for fmt, executor in (pair.split(":") for pair in args.runs):
                out = work / f"segments-{fmt}-{executor}-{size}"
                done = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--actors",
                        str(args.actors),
                        "--one",
                        str(corpus.with_suffix(f".{fmt}")),
                        executor,
                        str(out),
                        str(copies),
                    ],
                    capture_output=True,
                    text=True,
                )
                found = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
                if not found:
                    sys.exit(f"{fmt} on {executor} at {size} failed:\n{done.stderr[-3000:]}")
                row = {"size": size, "pool_sentences": built["pool_sentences"], **json.loads(found[0][7:])}
                rows.append(row)
                print(json.dumps(row), flush=True)
    write(rows)


def write(rows: list[dict]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scale_large.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = [
        "# The corpus stages at scale: segmentation and deduplication (bench/scale_large.py)",
        "",
        f"{os.cpu_count()} cores; documents of 12 sentences drawn from the shared pages' "
        f"{rows[0]['pool_sentences']} sentences, 2% planted near-duplicates (1% of words replaced). "
        f"Parquet: row groups of {ROW_GROUP_ROWS} rows, sharded by row group on Ray (the actors read them). "
        "On Ray the dedup index is an actor of its own; locally it is in the driver.",
        "",
        "| format | executor | documents | seconds | docs/s | docs/s/core | segments kept | near-dup removed "
        "| planted found | driver peak MiB | shard actor peaks MiB | index MiB (its sets) | index actor peak MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.get('format', 'jsonl')} | {r['executor']} | {r['documents']} | {r['seconds']} | "
            f"{r['documents_per_second']} | {r['documents_per_second_per_core']} | {r['segments_kept']} | "
            f"{r['removed_near_duplicate']} | {r['planted_found']}/{r['planted_copies']} ({r['planted_found_share']}) "
            f"| {r['driver_peak_mib']} | {r['worker_peak_mib'] or '-'} | {r['dedup_index_mib']} "
            f"({r['index_bytes_per_segment']} B per kept segment) | {r.get('index_actor_peak_mib') or '-'} |"
        )
    for fmt in ("parquet", "jsonl"):
        for executor in ("local", "ray"):
            mine = [r for r in rows if r["executor"] == executor and r.get("format", "jsonl") == fmt]
            mine.sort(key=lambda r: r["size"])
            if len(mine) > 1:
                lines.append(
                    f"\n{fmt} on {executor}: driver peak at {mine[-1]['size']} documents / at {mine[0]['size']}: "
                    f"{mine[-1]['driver_peak_mib'] / mine[0]['driver_peak_mib']:.2f}x"
                )
    (RESULTS / "scale_large.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
