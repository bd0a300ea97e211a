"""Peak memory of segmentation on a corpus of huge records: the shard cap in bytes, measured.

The case the trust review found: one 3.2 MB ``.jsonl.gz`` of 450 records of 4.9 MB each (just
under max_document_chars) peaked at 2.29 GB, because a shard is held whole and 500 documents
make one. Each run below segments that file in a fresh process (``humpback segment``) and reads
the process's peak resident memory (ru_maxrss of the child), at the default ``shard_max_bytes``
and with the cap lifted. Writes bench/results/shard_memory.{json,md}. Run alone, on a quiet
machine: ``python bench/shard_memory.py``.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RECORDS, RECORD_CHARS = 450, 4_900_000
RESULTS = Path(__file__).parent / "results"


def make_corpus(path: Path) -> None:
    sentence = "The river stone lies under the old bridge near the market. "
    text = (sentence * (RECORD_CHARS // len(sentence) + 1))[:RECORD_CHARS]
    line = (json.dumps({"text": text}) + "\n").encode()
    with gzip.open(path, "wb", compresslevel=6) as f:
        for _ in range(RECORDS):
            f.write(line)


def peak_of(corpus: Path, out: Path, extra: list[str]) -> tuple[float, float, str]:
    """(peak resident GB, seconds, the command's last line) of one segment run in a child process."""
    start = time.time()
    command = [sys.executable, "-m", "humpback.cli", "segment", "--corpus", str(corpus), "--out", str(out), *extra]
    # a small parent per run, so each peak is that run's alone (ru_maxrss of its one child)
    done = subprocess.run([sys.executable, "-c", _MEASURE, *command], capture_output=True, text=True)
    seconds = time.time() - start
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    lines = done.stdout.strip().splitlines()
    return int(lines[-1]) / 1e6, seconds, lines[-2]


_MEASURE = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:])
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(done.returncode)
"""


def main() -> dict:
    from humpback.config import SegmentConfig

    default_cap = SegmentConfig().shard_max_bytes
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "huge.jsonl.gz"
        make_corpus(corpus)
        size_mb = corpus.stat().st_size / 1e6
        capped = peak_of(corpus, Path(tmp) / "capped", [])
        uncapped = peak_of(corpus, Path(tmp) / "uncapped", ["--shard-max-bytes", str(10**12)])
    result = {
        "records": RECORDS,
        "record_chars": RECORD_CHARS,
        "file_mb": round(size_mb, 2),
        "default_shard_max_bytes": default_cap,
        "capped": {"peak_gb": round(capped[0], 3), "seconds": round(capped[1], 1), "summary": capped[2]},
        "uncapped": {"peak_gb": round(uncapped[0], 3), "seconds": round(uncapped[1], 1), "summary": uncapped[2]},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "shard_memory.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "shard_memory.md").write_text(
        f"# Peak memory of `humpback segment` on {RECORDS} records of {RECORD_CHARS:,} characters "
        f"({size_mb:.1f} MB .jsonl.gz)\n\n"
        "| shard cap | peak resident memory | wall time |\n|---|---|---|\n"
        f"| shard_max_bytes={default_cap:,} (default) | {capped[0]:.2f} GB | {capped[1]:.0f} s |\n"
        f"| none (documents_per_shard=500 only) | {uncapped[0]:.2f} GB | {uncapped[1]:.0f} s |\n"
    )
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
