"""Build real candidates from ../shared/data/web for hand labelling (a second corpus beside the demo's).

Segments the 70 shared web pages with the default segment config, draws --count segments (seeded)
and has a backward model write an instruction for each, as `humpback run` does. Writes
--out (JSONL: source, segment sha1, instruction, output) to be labelled.

bench/results/web_candidates_labels.jsonl holds the 48 candidates the demo's backward model
(runs/demo/models/backward, 2026-11-23) wrote, labelled by hand without any signal value in view
(good: the instruction asks for what the segment says and the segment answers it as a whole). It
keeps no page text: bench/quality.py re-segments the pages and finds each segment by its sha1, so
no third-party text is stored in the repository.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
WEB = ROOT.parent / "shared" / "data" / "web"


def web_segments(work: Path) -> list[dict]:
    """Every segment of the shared web pages (the labelled sets' SegmentConfig), in corpus order, with its sha1
    (sources relative to the pages' folder)."""
    from humpback.config import SegmentConfig
    from humpback.segment import segment
    from humpback.shards import read_stage

    # the labelled sets were drawn from these pages' segments before minhash_recall_weight became
    # 0.8; at 0.5, as then, every labelled segment is found again by its sha1
    segment(str(WEB), work / "segments", SegmentConfig(minhash_recall_weight=0.5), recompute=True)  # a cache
    return [
        {**s, "source": s["source"].split("/web/")[-1], "sha1": hashlib.sha1(s["text"].encode()).hexdigest()}
        for s in read_stage(work / "segments")
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backward", required=True, help="a backward model (e.g. runs/demo/models/backward)")
    parser.add_argument("--count", type=int, default=48)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from humpback.augment import augment
    from humpback.shards import read_stage

    with tempfile.TemporaryDirectory() as work:
        segments = web_segments(Path(work))
        chosen = random.Random(0).sample(segments, min(args.count, len(segments)))
        augment(
            [{k: v for k, v in s.items() if k != "sha1"} for s in chosen], args.backward, Path(work) / "candidates"
        )
        sha = {s["id"]: s["sha1"] for s in chosen}
        with args.out.open("w", encoding="utf-8") as f:
            for c in read_stage(Path(work) / "candidates"):
                f.write(
                    json.dumps(
                        {
                            "source": c["source"],
                            "sha1": sha[c["id"]],
                            "instruction": c["instruction"],
                            "output": c["output"],
                        }
                    )
                    + "\n"
                )
    print(f"{len(segments)} segments, {args.count} drawn: {args.out}")


if __name__ == "__main__":
    main()
