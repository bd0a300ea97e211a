"""Where humpback writes: folders it made, one writer at a time, never stale.

Three guarantees, each checked before any work:

- **Only our own folders.** A command writes into a folder that is new, empty, or already a
  humpback output of the same kind; the marker file ``.humpback`` in it says which kind. A
  folder holding anything else (a user's files, a parent of the run, an output of another
  kind) is refused, so ``--out`` can never delete or overwrite what it did not write.
- **One writer.** ``output_lock`` holds ``fcntl.flock`` on ``.humpback.lock`` for the whole
  command; a second process on the same folder stops at once with the holder's pid.
- **Only our own files.** Every file humpback writes into an output folder is recorded there
  (the marker lists each name it wrote at the folder's top; shards, ``_``-names and temporary
  names are ours by their shape). ``--recompute`` removes those and nothing else: a note or an
  analysis folder a user put inside stays, and is named.
- **Nothing left behind by a failure.** A folder a command created and that holds nothing but
  humpback's bookkeeping when the command fails is removed again.
- **Resume checks what it resumes.** A stage writes a fingerprint of everything that decides
  its output (its config fields, its inputs' fingerprints, the model) into
  ``_fingerprint.json`` when it starts. A rerun whose fingerprint differs stops and names
  what changed, or (``recompute``) empties the folder and redoes it; stages downstream see a
  new input fingerprint and follow.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import functools
import hashlib
import inspect
import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from . import files
from .files import safe_name, write_text

log = logging.getLogger("humpback")

MARKER = ".humpback"
LOCK = ".humpback.lock"
FINGERPRINT = "_fingerprint.json"


class OutputError(ValueError):
    """An output folder cannot be used as asked; the message says why and what to do."""


class StaleOutputError(OutputError):
    """A folder holds (part of) an output made with other settings or inputs than now."""


# Names humpback writes by the dozen (shards, their rejects and counters, markers, temporary names):
# ours by their shape. Any other name is ours only when the marker lists it.
OWNED_SHAPES = (
    "part-*",
    "_SUCCESS",
    FINGERPRINT,
    "_rejects",
    "_counters",
    MARKER,
    LOCK,
    ".*.tmp-*",
    ".work-*",
    ".save-*",
    ".launch*",
)


def _owned_by_shape(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, shape) for shape in OWNED_SHAPES)


def claim_output(path: Path | str, kind: str) -> Path:
    """Make ``path`` a humpback output folder of ``kind``, or refuse. Creates it (and its parents).
    Commands use ``owned_output`` (claim and lock); this is its first half."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path} is a file, not a folder: give a new folder as the output")
    marker = path / MARKER
    if path.is_dir():
        if marker.is_file():
            found = _read_marker(marker)
            if found != kind:
                raise OutputError(f"{path} is a humpback {found} output, not a {kind} output: give another folder")
            return path
        entries = sorted(p.name for p in path.iterdir())
        if entries:
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise OutputError(
                f"refusing to write into {path}: it already holds files humpback did not write "
                f"({shown}); give a new or empty folder"
            )
    path.mkdir(parents=True, exist_ok=True)
    write_text(marker, json.dumps({"kind": kind, "wrote": []}) + "\n")
    return path


def _read_marker(marker: Path) -> str:
    return str(_marker_data(marker).get("kind", "unknown"))


def _marker_data(marker: Path) -> dict:
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) and "kind" in data else {"kind": "unknown"}
    except (ValueError, OSError):
        return {"kind": "unknown"}


def written_names(path: Path | str) -> set[str]:
    """The top-level names of an output folder that humpback wrote (listed in its marker)."""
    return set(_marker_data(Path(path) / MARKER).get("wrote", []))


def record_written(path: Path | str) -> None:
    """Note in the nearest output folder above ``path`` (its own folder or up to three levels up)
    that the top-level entry leading to ``path`` is humpback's. Called for every file written."""
    path = Path(path)
    parent = path.parent
    for _ in range(4):
        marker = parent / MARKER
        if marker.is_file():
            name = path.relative_to(parent).parts[0]
            if _owned_by_shape(name):
                return
            data = _marker_data(marker)
            if name not in data.get("wrote", []) and data.get("kind") != "unknown":
                data["wrote"] = sorted({*data.get("wrote", []), name})
                write_text(marker, json.dumps(data) + "\n")
            return
        if parent.parent == parent:
            return
        parent = parent.parent


files.WRITE_HOOKS.append(record_written)


def output_kind(path: Path | str) -> str | None:
    """The kind a humpback output folder was made as, or None for any other path."""
    marker = Path(path) / MARKER
    return _read_marker(marker) if marker.is_file() else None


_held: dict[str, tuple[int, int]] = {}  # folder -> (file descriptor, depth): the locks this process holds


@contextlib.contextmanager
def output_lock(path: Path | str) -> Iterator[None]:
    """Hold the folder's lock for the block. Re-entrant within one process; another process
    holding it makes this raise OutputError naming that process."""
    key = str(Path(path).resolve())
    if key in _held:
        fd, depth = _held[key]
        _held[key] = (fd, depth + 1)
        try:
            yield
        finally:
            fd, depth = _held[key]
            _held[key] = (fd, depth - 1)
        return
    lock_path = Path(path) / LOCK
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise OutputError(
            f"{path} is in use by another humpback process (pid {holder}); "
            f"wait for it to finish or give another output folder"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    _held[key] = (fd, 1)
    try:
        yield
    finally:
        fd, depth = _held.pop(key)
        os.close(fd)  # closing the descriptor releases the flock


# --- fingerprints -------------------------------------------------------------------------


def digest(obj: object) -> str:
    """A short hash of a JSON-able value (canonical: sorted keys)."""
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str)
    # surrogatepass: a name that is not valid UTF-8 hashes too (same bytes as before for valid text)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:20]


def records_digest(records) -> str:
    """Hash of a sequence of records, in order."""
    h = hashlib.sha256()
    for record in records:
        h.update(json.dumps(record, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass"))
        h.update(b"\n")
    return h.hexdigest()[:20]


def items_fingerprint(items) -> str:
    """What an in-memory input is (API callers): the hash of a list's records. A one-pass iterator
    cannot be hashed without being consumed: it is marked as a stream, and a rerun that also
    gives a stream is trusted to give the same one (as every resume was before fingerprints)."""
    if isinstance(items, (list, tuple)):
        return records_digest(
            [getattr(x, "key", None), getattr(x, "content", x)] if not isinstance(x, dict) else x for x in items
        )
    return "stream (not hashed)"


def stage_input(items: Iterable[Any] | Path | str) -> tuple[Iterable[Any], str]:
    """A stage's input records and what they are: a previous stage's folder is read shard by shard
    and fingerprinted by its own fingerprint; records given in memory by items_fingerprint."""
    if isinstance(items, (str, Path)):
        from .shards import read_stage, shard_files

        folder = Path(items)
        if not folder.is_dir():
            raise FileNotFoundError(
                f"{safe_name(folder)} is not a folder of stage shards (part-*.jsonl): give the "
                f"output folder of the stage before"
            )
        if not shard_files(folder) and output_kind(folder) is None:
            raise FileNotFoundError(
                f"{safe_name(folder)} holds no stage shards (part-*.jsonl or part-*.parquet) and "
                f"is not a humpback output: give the output folder of the stage before"
            )
        return read_stage(folder), input_fingerprint(folder)
    return items, items_fingerprint(items)


def read_fingerprint(path: Path | str) -> dict | None:
    file = Path(path) / FINGERPRINT
    if not file.is_file():
        return None
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except ValueError:
        return None


def input_fingerprint(path: Path | str) -> str:
    """What an input folder or file is, as a hash: a humpback output's own fingerprint, else its
    files' names, sizes and modification times (contents of large inputs are not read)."""
    path = Path(path)
    own = read_fingerprint(path) if path.is_dir() else None
    if own and "digest" in own:
        return own["digest"]
    if path.is_file():
        st = path.stat()
        return digest([path.name, st.st_size, st.st_mtime_ns])
    if path.is_dir():
        listing = []
        for p in sorted(path.rglob("*")):
            if p.is_file() and p.name not in (LOCK,):
                st = p.stat()
                listing.append([str(p.relative_to(path)), st.st_size, st.st_mtime_ns])
        return digest(listing)
    return digest(str(path))  # a hub id or a name: the name is all there is


def flat_fields(obj: object, prefix: str = "") -> dict[str, object]:
    if isinstance(obj, dict):
        out: dict[str, object] = {}
        for k, v in obj.items():
            out.update(flat_fields(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): obj}


def changed_fields(old: dict, new: dict) -> list[str]:
    """Dotted names of the values that differ between two nested dicts."""
    a, b = flat_fields(old), flat_fields(new)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def check_fingerprint(path: Path | str, fields: dict, recompute: bool = False, what: str = "stage") -> dict:
    """Record ``fields`` as the folder's fingerprint, or compare with the one it has.

    Same: nothing to do (a rerun resumes). Different: with ``recompute`` the folder's contents
    are removed (it is ours: claimed before) and the new fingerprint written; without it,
    StaleOutputError names the fields that changed. Returns the fingerprint written."""
    path = Path(path)
    fingerprint = {"digest": digest(fields), "fields": fields}
    old = read_fingerprint(path)
    if old is not None and old.get("digest") != fingerprint["digest"]:
        changed = changed_fields(old.get("fields", {}), fields)
        shown = [
            _what_changed(name, flat_fields(old.get("fields", {})).get(name), flat_fields(fields).get(name))
            for name in changed
        ]
        if not recompute:
            raise StaleOutputError(
                f"{path} holds a {what} made with other settings or inputs (changed: {', '.join(shown) or '?'}); "
                f"give a new output folder, or pass --recompute to redo it and what depends on it"
            )
        clear_output(path)
    elif old is None and _holds_our_output(path):
        # made before fingerprints existed, or by a process killed before it wrote one: unknown
        if not recompute:
            raise StaleOutputError(
                f"{path} holds a {what} without a fingerprint, so it cannot be checked "
                f"against the settings now; give a new output folder, or pass --recompute"
            )
        clear_output(path)
    if old is None or old.get("digest") != fingerprint["digest"]:
        write_text(path / FINGERPRINT, json.dumps(fingerprint, indent=1, sort_keys=True, default=str) + "\n")
    return fingerprint


def _what_changed(name: str, old: object, new: object) -> str:
    """A changed fingerprint field, and for a file listing ([name, size, mtime] rows) which files."""

    def listing(value):
        if isinstance(value, list) and all(isinstance(r, list) and len(r) == 3 for r in value):
            return {str(r[0]): (r[1], r[2]) for r in value}
        return None

    before, after = listing(old), listing(new)
    if before is None or after is None:
        return name
    parts = [
        f"{label} {', '.join(safe_name(n) for n in names[:3])}{' ...' if len(names) > 3 else ''}"
        for label, names in (
            ("added", sorted(set(after) - set(before))),
            ("removed", sorted(set(before) - set(after))),
            ("modified", sorted(n for n in set(before) & set(after) if before[n] != after[n])),
        )
        if names
    ]
    return f"{name}: {'; '.join(parts)}" if parts else name


def _holds_our_output(path: Path) -> bool:
    ours = written_names(path)
    return any(p.name not in (MARKER, LOCK) and (_owned_by_shape(p.name) or p.name in ours) for p in path.iterdir())


def _has_output(path: Path, ignore: tuple[str, ...] = ()) -> bool:
    return any(p.name not in (MARKER, LOCK, *ignore) for p in path.iterdir())


def clear_output(path: Path | str) -> list[str]:
    """Remove what humpback wrote in one of our output folders (keeping its marker and lock), and
    nothing else: a file or folder a user put there stays. Returns the names left in place."""
    path = Path(path)
    if output_kind(path) is None:
        raise OutputError(f"{path} is not a humpback output; refusing to empty it")
    ours = written_names(path)
    left = []
    for p in sorted(path.iterdir()):
        if p.name in (MARKER, LOCK):
            continue
        if not (_owned_by_shape(p.name) or p.name in ours):
            left.append(p.name + ("/" if p.is_dir() else ""))
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
    if left:
        log.warning(
            "%s: redone; left in place what humpback did not write: %s",
            safe_name(path),
            ", ".join(map(safe_name, left)),
        )
    return left


@contextlib.contextmanager
def owned_output(path: Path | str, kind: str) -> Iterator[Path]:
    """The one way a command gets an output folder: claimed (new, empty, or ours of this kind),
    locked for the block; if the block fails and the folder was made here and holds nothing but
    humpback's bookkeeping, it is removed again (a failed command leaves nothing it created)."""
    path = Path(path)
    created = [p for p in [path, *path.parents] if not p.exists()]  # the folders this call makes
    path = claim_output(path, kind)
    try:
        with output_lock(path):
            yield path
    except BaseException:
        if created and not _has_output(path, ignore=(FINGERPRINT,)):
            shutil.rmtree(path, ignore_errors=True)
            for parent in created[1:]:  # parents made for it, innermost first, if they are empty
                with contextlib.suppress(OSError):
                    parent.rmdir()
        raise


def writes_into(kind: str, param: str = "out_dir"):
    """Decorator of a function that writes into the folder its argument ``param`` names: the
    folder is owned (claimed as ``kind`` and locked, see owned_output) for the whole call."""

    def decorator(fn):
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            with owned_output(bound.arguments[param], kind) as path:
                bound.arguments[param] = path
                return fn(*bound.args, **bound.kwargs)

        return wrapper

    return decorator


@contextlib.contextmanager
def stage_output(path: Path | str, kind: str, fields: dict | None = None, recompute: bool = False) -> Iterator[Path]:
    """A stage's output folder for the block: owned (claimed and locked), and checked against (or
    given) the fingerprint ``fields``."""
    with owned_output(path, kind) as path:
        if fields is not None:
            check_fingerprint(path, fields, recompute, kind)
        yield path
