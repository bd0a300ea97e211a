"""Labels of real candidates: what calibrates selection where the probe's made-up negatives cannot.

The judge probe tells how well a judge separates seed pairs from bad pairs made from them; what
precision a threshold gives on a corpus depends on the share of good candidates in it, which the
probe cannot know. A few dozen candidates labelled by a person settle it:

- ``label_session``: a seeded random sample of candidates shown one at a time, blind (the
  instruction and the answer only, never a value or a score), answered with a key press (g good,
  b bad, s skip, q quit); each answer is appended to ``labels.jsonl`` at once, so a session ends
  any time and the next one goes on where it stopped.
- ``calibrate_on_labels``: the lowest value threshold whose selection among the labelled
  candidates reaches the target precision, with precision, recall and the good share, each with
  a 95% interval (Wilson): the labels are a random sample of the candidates, so these are
  estimates for the whole set.
- ``estimate_good_share``: without labels, the share of good candidates read off their values as
  a mix of the probe's good and bad value distributions (least squares on the distribution
  functions). An estimate resting on made-up negatives; the report says so.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from .files import BadLine, jsonl_lines
from .records import Reject

LABELS_FILE = "labels.jsonl"
KEYS = {"g": "good", "b": "bad", "s": "skip"}


def read_labels(path: Path | str) -> tuple[dict[str, bool], list[Reject]]:
    """Labels from a JSONL file of {"id": candidate id, "label": "good"|"bad"|"skip"} (also
    true/false or 1/0); a later line for the same id wins, "skip" is no label. Lines that are not
    such a record become rejects naming the file and line."""
    from .shards import reject

    labels: dict[str, bool] = {}
    rejects: list[Reject] = []
    for where, row in jsonl_lines(path):
        try:
            if isinstance(row, BadLine):
                raise ValueError(row.reason)
            if not isinstance(row, dict):
                raise TypeError("not an object")
            value = row["label"]
            if str(value).lower() == "skip" and isinstance(row.get("id"), str):
                labels.pop(row["id"], None)
                continue
            good = {"good": True, "bad": False}.get(str(value).lower(), value if isinstance(value, bool) else None)
            if good is None and value in (0, 1):
                good = bool(value)
            if good is None or not isinstance(row.get("id"), str):
                raise ValueError("needs a string 'id' and a 'label' of good, bad or skip")
            labels[row["id"]] = good
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            rejects.append(
                reject("labels", where, f"not a label record: {e}", None if isinstance(row, BadLine) else row)
            )
    return labels, rejects


def _answered(path: Path) -> set[str]:
    """Ids with any answer in the file (skips included: a skipped candidate is not shown again)."""
    if not path.exists():
        return set()
    return {row["id"] for _, row in jsonl_lines(path) if isinstance(row, dict) and isinstance(row.get("id"), str)}


def blind_view(candidate: dict) -> str:
    """What the labeller sees: the instruction and the answer, nothing else."""
    return f"INSTRUCTION\n{candidate['instruction'].strip()}\n\nANSWER\n{candidate['output'].strip()}\n"


def label_session(
    candidates: Iterable[dict],
    out_dir: Path,
    seed: int = 0,
    limit: int | None = None,
    read_key: Callable[[], str] | None = None,
    show: Callable[[str], None] = print,
) -> dict:
    """Show a seeded random order of ``candidates`` (those not yet answered in
    ``out_dir``/labels.jsonl), blind, and append each answer there. ``read_key`` returns the key
    pressed (default: one key from the terminal, or a line of piped input). Returns the counts."""
    from .outputs import record_written

    path = Path(out_dir) / LABELS_FILE
    done = _answered(path)
    pool = sorted((c for c in candidates if c["id"] not in done), key=lambda c: c["id"])
    random.Random(seed).shuffle(pool)  # the order is the seed's, whichever session shows it
    read_key = read_key or _terminal_key
    counts = {"good": 0, "bad": 0, "skip": 0, "shown": 0, "left": len(pool)}
    record_written(path)  # humpback's file in its folder: --recompute may remove it, nothing else
    with open(path, "a", encoding="utf-8") as f:
        for candidate in pool[:limit]:
            counts["shown"] += 1
            show(
                f"\n--- {len(done) + counts['shown']} ({candidate['id']}) ---\n{blind_view(candidate)}"
                f"[g]ood  [b]ad  [s]kip  [q]uit > "
            )
            while (key := (read_key() or "q").strip().lower()[:1]) not in (*KEYS, "q"):
                show("press g, b, s or q > ")
            if key == "q":
                counts["shown"] -= 1
                break
            f.write(json.dumps({"id": candidate["id"], "label": KEYS[key], "at": round(time.time())}) + "\n")
            f.flush()
            os.fsync(f.fileno())  # a session killed now keeps every answer given
            counts[KEYS[key]] += 1
            counts["left"] -= 1
    return counts


def append_labels(out_dir: Path, labels: dict[str, bool]) -> int:
    """Add labels given elsewhere ({id: good?}) to ``out_dir``/labels.jsonl; returns the count."""
    from .files import write_lines
    from .outputs import record_written

    path = Path(out_dir) / LABELS_FILE
    n = write_lines(path, ({"id": i, "label": "good" if good else "bad"} for i, good in labels.items()), mode="a")
    record_written(path)
    return n


def _terminal_key() -> str:
    import sys

    if sys.stdin.isatty():
        import click

        return click.getchar()
    return sys.stdin.readline()


# --- calibration -------------------------------------------------------------------------------


def wilson(hits: int, n: int, z: float = 1.96) -> list[float] | None:
    """The 95% Wilson score interval of a proportion (None for n = 0)."""
    if not n:
        return None
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def calibrate_on_labels(values: list[float | None], labels: list[bool], target: float) -> dict:
    """The lowest threshold whose selection among the labelled candidates reaches ``target``
    precision; its precision and recall and the labelled good share, each with a 95% interval.
    threshold None when no threshold reaches it (then nothing is selected)."""
    scored = sorted(((v, bool(y)) for v, y in zip(values, labels) if v is not None), key=lambda t: -t[0])
    good = sum(y for _, y in scored)
    out = {
        "labelled": len(scored),
        "good": good,
        "good_share": round(good / len(scored), 4) if scored else None,
        "good_share_interval": wilson(good, len(scored)),
        "target_precision": target,
        "threshold": None,
        "precision": None,
        "precision_interval": None,
        "recall": 0.0,
        "recall_interval": None,
        "selected": 0,
    }
    hits = 0
    for n, (value, label) in enumerate(scored, 1):
        hits += label
        last_of_tie = n == len(scored) or scored[n][0] != value
        if last_of_tie and hits / n >= target:
            out.update(
                threshold=value,
                selected=n,
                precision=round(hits / n, 4),
                precision_interval=wilson(hits, n),
                recall=round(hits / max(1, good), 4),
                recall_interval=wilson(hits, good),
            )
    return out


def estimate_good_share(
    candidates: Sequence[float | None], positives: list[float], negatives: list[float], grid: int = 50
) -> float | None:
    """The share ``p`` of good candidates that makes the candidates' value distribution closest
    (least squares over ``grid`` quantiles) to p x the probe positives' + (1 - p) x the probe
    negatives'. Clipped to [0.01, 0.99]; None without values on every side."""
    valued = [v for v in candidates if v is not None]
    if not valued or not positives or not negatives:
        return None
    pooled = sorted(valued + positives + negatives)
    points = [pooled[min(len(pooled) - 1, int(i * len(pooled) / grid))] for i in range(grid)]

    def cdf(values: list[float], x: float) -> float:
        return sum(v <= x for v in values) / len(values)

    num = den = 0.0
    for x in points:
        fc, fp, fn = cdf(valued, x), cdf(positives, x), cdf(negatives, x)
        num += (fc - fn) * (fp - fn)
        den += (fp - fn) ** 2
    if den == 0:
        return None
    return round(min(0.99, max(0.01, num / den)), 4)


def labels_path(found: Path | str) -> Path:
    """A labels file, or the folder holding one (``RUN/labels``)."""
    found = Path(found)
    return found / LABELS_FILE if found.is_dir() else found


def describe(calibration: dict) -> str:
    """One line: what the labels say the selection gives."""

    def interval(key):
        bounds = calibration.get(f"{key}_interval")
        return f" [{bounds[0]}-{bounds[1]}]" if bounds else ""

    if calibration.get("threshold") is None:
        return (
            f"calibrated on {calibration['labelled']} labels (good share {calibration['good_share']}"
            f"{interval('good_share')}): no threshold reaches precision {calibration['target_precision']}"
        )
    return (
        f"calibrated on {calibration['labelled']} labels: precision {calibration['precision']}"
        f"{interval('precision')}, recall {calibration['recall']}{interval('recall')}, good share "
        f"{calibration['good_share']}{interval('good_share')}"
    )
