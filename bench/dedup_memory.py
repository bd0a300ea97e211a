"""Memory of segmentation's deduplication state, per million kept segments.

Inserts N synthetic segments (random word shingles, so no two collide) into the DedupIndex the
segment stage uses and measures the growth of this process's resident memory; prints the
extrapolation to a million. Run alone: ``python bench/dedup_memory.py [N]``.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path


def resident() -> int:
    import os

    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main(n: int = 50_000) -> dict:
    from humpback.config import SegmentConfig
    from humpback.segment import DedupIndex, band_hashes, signature

    cfg = SegmentConfig()
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(50_000)]
    texts = [" ".join(rng.choices(vocab, k=120)) for _ in range(2_000)]
    signatures = [signature(t, cfg) for t in texts]  # signing is per segment; the state is what grows
    index = DedupIndex(cfg)
    before = resident()
    start = time.time()
    for i in range(n):
        digest, minhash = signatures[i % len(signatures)]
        # a distinct segment each time: fresh digest and permuted signature values
        m = minhash.copy()
        m.hashvalues = m.hashvalues ^ (i * 2654435761 % (1 << 32))
        index.verdicts([(digest[:12] + i.to_bytes(4, "little"), band_hashes(m, cfg))])
    grown = resident() - before
    result = {
        "segments": n,
        "bytes_per_segment": round(grown / n),
        "gb_per_million": round(grown / n * 1e6 / 1e9, 2),
        "seconds": round(time.time() - start, 1),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50_000)
