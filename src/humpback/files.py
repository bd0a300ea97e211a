"""Reading and writing files: one atomic writer, one JSONL reader that names bad lines.

Every file humpback writes goes through ``atomic_path``: it is written under a temporary name
in the same folder and renamed over its final name only once complete, so a killed process
never leaves half a file under a name that a rerun trusts. Every JSONL file a user gives
(seeds, corpora, prompts, labels) is read by ``jsonl_lines``: each line comes back parsed or
as a ``BadLine`` that says why, with its file and line number, and reading goes on.
"""

from __future__ import annotations

import codecs
import contextlib
import gzip
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """A temporary path beside ``path`` to write a file or a folder to; on leaving the block
    without an error it replaces ``path`` (a folder is replaced whole), else it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    _remove(tmp)
    try:
        yield tmp
        if tmp.is_dir():
            _remove(path)
        os.replace(tmp, path)
    finally:
        _remove(tmp)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_text(path: Path | str, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path | str, obj: object) -> None:
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False))


def write_jsonl(path: Path | str, records: Iterable[dict]) -> int:
    """Records as JSON lines, written atomically and synced to disk; returns the count."""
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
        f.flush()
        os.fsync(f.fileno())
    return n


def write_parquet(path: Path | str, records: list[dict]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist(records), tmp)
    return len(records)


def read_jsonl(path: Path | str) -> Iterator[dict]:
    """The records of a JSONL file humpback wrote itself (trusted: an error here is a bug)."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


@dataclass
class BadLine:
    """A line of a user's JSONL file that is not a JSON value, and why."""
    reason: str
    too_long: bool = False


def open_maybe_gzip(path: Path):
    """A binary stream of the file, decompressed when its name ends in .gz."""
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def jsonl_lines(path: Path | str, max_line_bytes: int | None = None) -> Iterator[tuple[str, object]]:
    """``(where, value)`` for every non-blank line of a user's JSONL file (``.jsonl.gz`` too):
    ``where`` is ``FILE:LINE``; ``value`` is the parsed JSON, or a BadLine for a line that is not
    UTF-8, not JSON, or longer than ``max_line_bytes`` (skipped in bounded pieces, never held
    whole: a decompression bomb is one huge line). A byte-order mark on the first line is ignored."""
    path = Path(path)
    with open_maybe_gzip(path) as f:
        for number, raw in _capped_lines(f, max_line_bytes):
            where = f"{path}:{number}"
            if raw is None:
                yield where, BadLine(f"line longer than {max_line_bytes} bytes", too_long=True)
                continue
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            if not raw.strip():
                continue
            try:
                yield where, json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                yield where, BadLine("line is not valid UTF-8")
            except json.JSONDecodeError as e:
                yield where, BadLine(f"malformed JSON ({e.msg})")


def _capped_lines(f, max_bytes: int | None) -> Iterator[tuple[int, bytes | None]]:
    """(line number, line) from a binary stream; None for a line longer than max_bytes."""
    number = 0
    while True:
        line = f.readline(-1 if max_bytes is None else max_bytes + 1)
        if not line:
            return
        number += 1
        if max_bytes is not None and len(line) > max_bytes and not line.endswith(b"\n"):
            while True:  # drain the rest of this line in bounded pieces
                rest = f.readline(1 << 20)
                if not rest or rest.endswith(b"\n"):
                    break
            yield number, None
            continue
        yield number, line
