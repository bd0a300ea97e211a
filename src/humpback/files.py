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
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Called with each path once it is written: humpback.outputs records there which names it owns.
WRITE_HOOKS: list[Callable[[Path], None]] = []


def safe_name(path: object) -> str:
    """A path (or any name) as one printable line: a name that is not valid UTF-8 keeps its bytes
    as \\xNN, control characters (a newline in a file name) are escaped, so a name can never
    break a log line, a JSON file or a reject record."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes of a file name (surrogate escapes)
        text = os.fsencode(text).decode("utf-8", "backslashreplace")
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


@contextlib.contextmanager
def atomic_path(path: Path | str, replace: bool = True) -> Iterator[Path]:
    """A temporary path beside ``path`` to write a file or a folder to; on leaving the block
    without an error it replaces ``path`` (a folder is replaced whole), else it is removed.
    ``replace=False`` (files only): the file is put in place only if no file of that name
    exists by then, never over one (FileExistsError)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    _remove(tmp)
    try:
        yield tmp
        if not replace:
            os.link(tmp, path)  # atomic, and fails if the name exists: never replaces a file
        else:
            if tmp.is_dir():
                _remove(path)
            os.replace(tmp, path)
    finally:
        _remove(tmp)
    for hook in WRITE_HOOKS:
        hook(path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_text(path: Path | str, text: str, replace: bool = True) -> None:
    with atomic_path(path, replace) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path | str, obj: object) -> None:
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False))


@contextlib.contextmanager
def new_file(path: Path | str) -> Iterator[Path]:
    """A file a command writes that is not in a folder of its own (``generate --out FILE``): the
    name is taken now (created empty, exclusively: an existing file or a second process is refused
    at once, FileExistsError), the block writes to a temporary path, and on success that replaces
    the taken name only if it is still the empty file taken here; on failure the name is freed."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    taken = os.fstat(fd)
    os.close(fd)

    def still_ours() -> bool:
        try:
            st = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return (st.st_ino, st.st_dev) == (taken.st_ino, taken.st_dev) and st.st_size == 0

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        if not still_ours():
            raise FileExistsError(
                f"{safe_name(path)} was replaced by another file while humpback wrote it; "
                f"the new answers are not written over it"
            )
        os.replace(tmp, path)
    except BaseException:
        if still_ours():
            path.unlink()
        raise
    finally:
        _remove(tmp)


def write_jsonl(path: Path | str, records: Iterable[Mapping[str, Any]]) -> int:
    """Records as JSON lines, written atomically and synced to disk; returns the count."""
    with atomic_path(path) as tmp:
        return write_lines(tmp, records)


def write_lines(path: Path | str, records: Iterable[Mapping[str, Any]], mode: str = "w") -> int:
    """Records as JSON lines to ``path`` itself (``mode`` "a" appends), synced to disk; returns the
    count. Callers that need atomicity write to a temporary path (write_jsonl, new_file)."""
    n = 0
    with open(path, mode, encoding="utf-8") as f:
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
            where = f"{safe_name(path)}:{number}"
            if raw is None:
                yield where, BadLine(f"line longer than {max_line_bytes} bytes", too_long=True)
                continue
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
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
