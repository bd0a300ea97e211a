"""Stream documents from a corpus: HTML (optionally .gz), WARC/WARC.gz, JSONL, TXT/MD, and the
columnar files web-scale corpora ship as: Parquet (FineWeb, C4), Arrow, a ``datasets`` folder. A
corpus is a file, a directory (searched recursively) or a glob. Files are read in sorted order and
one at a time, records inside a WARC or JSONL file one at a time, so huge inputs are never loaded
whole (a Parquet file is read one row group at a time, in record batches). Anything unreadable
comes out as an ``Unreadable`` item that names the file (and line), which the segment stage turns
into a reject.

The segment stage asks for Parquet files as ``RowGroup`` references instead of their documents
(``row_groups=True``): the reader then opens only each file's footer, and whoever segments a shard
reads its row groups, so on Ray the actors read the corpus and the driver never holds its text.
"""

from __future__ import annotations

import codecs
import fnmatch
import glob
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .files import BadLine, jsonl_lines, open_maybe_gzip, safe_name

log = logging.getLogger("humpback")
OUTPUT_MARKER = ".humpback"  # outputs.MARKER: a folder humpback writes into

HTML_SUFFIXES = (".html", ".htm", ".html.gz", ".htm.gz")
WARC_SUFFIXES = (".warc", ".warc.gz")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")
TEXT_SUFFIXES = (".txt", ".txt.gz")
MARKDOWN_SUFFIXES = (".md", ".md.gz")
PARQUET_SUFFIXES = (".parquet",)
ARROW_SUFFIXES = (".arrow",)  # Arrow IPC, stream or file: what datasets.save_to_disk writes
TABLE_SUFFIXES = PARQUET_SUFFIXES + ARROW_SUFFIXES
SUFFIXES = HTML_SUFFIXES + WARC_SUFFIXES + JSONL_SUFFIXES + TEXT_SUFFIXES + MARKDOWN_SUFFIXES + TABLE_SUFFIXES
# what a datasets.save_to_disk folder holds beside its .arrow files: metadata, not documents
DATASETS_METADATA = ("dataset_info.json", "state.json", "dataset_dict.json")
BATCH_ROWS = 1024  # rows per record batch read from a Parquet or Arrow file


@dataclass
class Document:
    source: str  # where it came from, as the corpus was named (file, file:line, file#uri)
    kind: str  # "html" (content is bytes, or str once decoded), "text" or "markdown" (content is str)
    content: bytes | str
    key: str = ""  # the same place relative to the corpus root: what segment ids are made from

    def __post_init__(self):
        self.key = self.key or self.source


@dataclass
class RowGroup:
    """One row group of a Parquet file, not yet read: what a shard of a Parquet corpus is made of.
    ``rows`` and ``text_bytes`` come from the file's footer (the text column's uncompressed size),
    so shards are cut by documents and bytes before any text is read."""

    path: str
    rel: str
    number: int
    first_row: int  # the row index of its first row in the file
    rows: int
    text_bytes: int
    columns: tuple[str, str, str]  # text, url, id
    max_chars: int

    def documents(self) -> Iterator[Document | Unreadable]:
        """Its rows as documents, named ``FILE:rowN`` as the streaming reader names them; a group that
        cannot be read is one reject naming it, however far it got."""
        import pyarrow.parquet as pq

        path = Path(self.path)
        try:
            parquet = pq.ParquetFile(path)
            wanted = _columns(parquet.schema_arrow.names, self.columns[0], self.columns[1:], path)
            batches = parquet.iter_batches(BATCH_ROWS, row_groups=[self.number], columns=wanted)
            yield from _batch_documents(
                batches, safe_name(path), self.rel, self.first_row, self.columns, self.max_chars
            )
        except Exception as e:  # noqa: BLE001 - a corrupt page or column chunk, a file gone since it was listed
            yield Unreadable(
                f"{safe_name(path)}:rowgroup{self.number}",
                f"unreadable row group ({type(e).__name__}: {safe_name(e)})",
            )


def parquet_row_groups(path: Path, rel: str, columns: tuple[str, str, str], max_chars: int) -> Iterator[RowGroup]:
    """The row groups of a Parquet file, from its footer alone (a file without the text column is
    refused here, naming its columns)."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    names = parquet.schema_arrow.names
    _columns(names, columns[0], columns[1:], path)
    text_column = names.index(columns[0])
    first = 0
    for number in range(parquet.num_row_groups):
        meta = parquet.metadata.row_group(number)
        size = meta.column(text_column).total_uncompressed_size if text_column < meta.num_columns else 0
        yield RowGroup(str(path), rel, number, first, meta.num_rows, size, columns, max_chars)
        first += meta.num_rows


def expand_row_groups(items: list) -> Iterator:
    """A shard's items with every RowGroup replaced by its documents (read here, in order)."""
    for item in items:
        if isinstance(item, RowGroup):
            yield from item.documents()
        else:
            yield item


@dataclass
class Unreadable:
    source: str
    reason: str


@dataclass
class Skipped:
    """A file in the corpus folder that is not read (its type, a broken link): counted, kept in rejects."""

    source: str
    reason: str


def demo_corpus_path() -> Path:
    return Path(str(resources.files("humpback") / "demo" / "web"))


def _spec_path(spec: str) -> str:
    return str(demo_corpus_path()) if spec == "demo" else spec


def corpus_root(spec: str) -> Path:
    """The folder corpus paths are made relative to: the directory given, a file's folder, or
    the part of a glob before its first wildcard. Ids made from relative paths are the same
    however the corpus is spelled (relative, absolute, with a trailing slash)."""
    path = Path(_spec_path(spec)).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.is_file():
        return path.resolve().parent
    parts = []
    for part in Path(_spec_path(spec)).expanduser().parts:
        if glob.has_magic(part):
            break
        parts.append(part)
    return Path(*parts).resolve() if parts else Path.cwd()


def relative_name(path: Path, root: Path) -> str:
    """The file's name relative to the corpus root, as one printable line (safe_name)."""
    try:
        return safe_name(path.resolve().relative_to(root).as_posix())
    except ValueError:
        return safe_name(path.resolve().as_posix())


def walk(root: Path) -> Iterator[Path]:
    """Every entry under ``root``, sorted, following links to folders but entering each real folder
    once (a link loop, or two links to one folder, never reads a file twice or hangs). A folder
    that is a humpback output (it holds the ``.humpback`` marker) is never entered: an ``--out``
    inside the corpus is not corpus."""
    seen: set[tuple[int, int]] = set()

    def visit(folder: Path) -> Iterator[Path]:
        try:
            st = folder.stat()
        except OSError:
            return
        if (st.st_dev, st.st_ino) in seen:
            return
        seen.add((st.st_dev, st.st_ino))
        if (folder / OUTPUT_MARKER).is_file():
            log.info("corpus: %s is a humpback output folder; not read as corpus", safe_name(folder))
            return
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            return
        for entry in entries:
            if entry.is_dir():
                yield from visit(entry)
            else:
                yield entry

    if (root / OUTPUT_MARKER).is_file():
        return  # the whole corpus is an output folder: nothing in it is corpus
    yield from visit(root)


def _glob(spec: str) -> list[Path]:
    """Paths a glob names. A recursive ``**`` glob walks with ``walk`` (each real folder once),
    matching every path below the part before the first wildcard component by component."""
    if "**" not in spec:
        return sorted(Path(p) for p in glob.glob(spec))
    parts = Path(spec).expanduser().parts
    fixed = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    root = Path(*parts[:fixed]) if fixed else Path(".")
    pattern = parts[fixed:]
    return [p for p in walk(root) if _matches(p.relative_to(root).parts, pattern)]


def _matches(parts: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":  # zero or more folders (hidden ones excluded, as glob does)
        return any(
            _matches(parts[i:], rest) for i in range(len(parts) + 1) if not any(p.startswith(".") for p in parts[:i])
        )
    if not parts or (parts[0].startswith(".") and not head.startswith(".")):
        return False
    return fnmatch.fnmatchcase(parts[0], head) and _matches(parts[1:], rest)


def corpus_listing(spec: str) -> tuple[list[Path], list[Skipped]]:
    """The corpus files a spec names, sorted, and what was passed over with why; raises if it
    names no readable file."""
    spec = _spec_path(spec)
    path = Path(spec).expanduser()
    skipped: list[Skipped] = []
    if path.is_dir():
        candidates = list(walk(path))
    elif path.is_file():
        candidates = [path]
    else:
        candidates = _glob(spec)
    files = []
    for p in candidates:
        if p.is_symlink() and not p.exists():
            skipped.append(Skipped(safe_name(p), "broken symbolic link"))
        elif p.is_dir():
            continue
        elif not p.is_file():
            skipped.append(Skipped(safe_name(p), "not a regular file"))
        elif not p.name.lower().endswith(SUFFIXES):
            if p.name in DATASETS_METADATA and any(p.parent.glob("*.arrow")):
                continue  # a datasets folder's own description of its .arrow files
            if not p.name.startswith("."):
                skipped.append(Skipped(safe_name(p), f"not a corpus file type ({', '.join(SUFFIXES)})"))
        else:
            files.append(p)
    if not files:
        raise FileNotFoundError(
            f"corpus {safe_name(spec)} names no readable file; give a file, directory or glob of {', '.join(SUFFIXES)}"
        )
    return files, skipped


def corpus_files(spec: str) -> list[Path]:
    """The corpus files a spec names, sorted; raises if it names none."""
    return corpus_listing(spec)[0]


def corpus_fingerprint(spec: str) -> list:
    """What the corpus is, for resume checks: each file's corpus-relative name, size and mtime."""
    root = corpus_root(spec)
    files, skipped = corpus_listing(spec)
    listing = []
    for p in files:
        st = p.stat()
        listing.append([relative_name(p, root), st.st_size, st.st_mtime_ns])
    return listing


def read_corpus(
    spec: str,
    text_field: str = "text",
    max_chars: int = 5_000_000,
    url_field: str = "url",
    id_field: str = "id",
    row_groups: bool = False,
) -> Iterator[Document | Unreadable | Skipped | RowGroup]:
    """Every document of the corpus, in file order. Whatever goes wrong with a file (a broken
    compressed stream, a malformed WARC, an unexpected parser error) becomes an Unreadable that
    names the file and where in it, and the next file is read: one bad file never stops a run.
    With ``row_groups`` a Parquet file gives its RowGroup references, read later by whoever
    segments them (``expand_row_groups``)."""
    root = corpus_root(spec)
    files, skipped = corpus_listing(spec)
    yield from skipped
    for path in files:
        name = path.name.lower()
        rel = relative_name(path, root)
        try:
            if name.endswith(WARC_SUFFIXES):
                yield from _read_warc(path, rel, max_chars)
            elif name.endswith(JSONL_SUFFIXES):
                yield from _read_jsonl(path, rel, text_field, max_chars)
            elif row_groups and name.endswith(PARQUET_SUFFIXES):
                yield from parquet_row_groups(path, rel, (text_field, url_field, id_field), max_chars)
            elif name.endswith(TABLE_SUFFIXES):
                yield from _read_table(path, rel, (text_field, url_field, id_field), max_chars)
            else:
                yield from _read_whole(path, rel, name, max_chars)
        except Exception as e:  # noqa: BLE001 - truncated gzip, zlib.error, permission denied, a library bug ...
            yield Unreadable(safe_name(path), f"unreadable file ({type(e).__name__}: {safe_name(e)})")


def _read_whole(path: Path, rel: str, name: str, max_chars: int) -> Iterator[Document | Unreadable]:
    with open_maybe_gzip(path) as f:
        data = f.read(max_chars + 1)
    if len(data) > max_chars:
        yield Unreadable(safe_name(path), f"document larger than max_document_chars={max_chars}")
        return
    if name.endswith(HTML_SUFFIXES):
        yield Document(safe_name(path), "html", decode_html(data), rel)
        return
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark is not text
    except UnicodeDecodeError as e:
        yield Unreadable(safe_name(path), f"not valid UTF-8 text (byte {e.start})")
        return
    yield Document(safe_name(path), "markdown" if name.endswith(MARKDOWN_SUFFIXES) else "text", text, rel)


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([\w.:-]+)""", re.IGNORECASE)


def decode_html(data: bytes, declared: str | None = None) -> str:
    """HTML bytes as text: the charset the page (or its HTTP header) declares, else UTF-8 when
    the bytes are valid UTF-8, else windows-1252 (what browsers assume for undeclared Western
    pages; a latin-1 page is a subset of it)."""
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8) :].decode("utf-8", errors="replace")
    if declared is None:
        match = _META_CHARSET.search(data[:4096])
        declared = match.group(1).decode("ascii", "ignore") if match else None
    if declared:
        try:
            return data.decode(declared, errors="replace")
        except LookupError:
            pass  # an unknown charset name: sniff as if none were declared
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _read_jsonl(path: Path, rel: str, text_field: str, max_chars: int) -> Iterator[Document | Unreadable]:
    for where, record in jsonl_lines(path, max_line_bytes=max_chars):
        if isinstance(record, BadLine):
            yield Unreadable(
                where, f"record larger than max_document_chars={max_chars}" if record.too_long else record.reason
            )
            continue
        text = record.get(text_field) if isinstance(record, dict) else None
        if not isinstance(text, str):
            yield Unreadable(where, f"record has no string field {text_field!r} (set segment.text_field)")
            continue
        yield Document(where, "text", text, f"{rel}:{where.rsplit(':', 1)[1]}")


def _read_table(
    path: Path, rel: str, columns: tuple[str, str, str], max_chars: int
) -> Iterator[Document | Unreadable]:
    """The rows of a Parquet or Arrow file, a document each: the text column's text, the source
    ``FILE:rowN`` (rows counted from 0, as ``datasets`` indexes them) with the URL (or id) column's
    value after a ``#`` when the file has one. A Parquet row group that cannot be read is one
    reject naming it, and reading goes on at the next; a row without text is a reject naming it."""
    name = safe_name(path)
    row = 0
    for group, batches in _table_batches(path, columns[0], columns[1:]):
        try:
            yield from _batch_documents(batches, name, rel, row, columns, max_chars)
        except Exception as e:  # noqa: BLE001 - a corrupt page or column chunk
            if group is None:
                raise
            yield Unreadable(f"{name}:rowgroup{group}", f"unreadable row group ({type(e).__name__}: {safe_name(e)})")
        if group is not None:
            row = group.end  # the rows of a group cut short are not renumbered onto the next


def _batch_documents(
    batches, name: str, rel: str, row: int, columns: tuple[str, str, str], max_chars: int
) -> Iterator[Document | Unreadable]:
    """The rows of record batches as documents, counting rows from ``row``."""
    text_field, url_field, id_field = columns
    for batch in batches:
        texts = batch.column(text_field).to_pylist()
        labels = _labels(batch, url_field, id_field)
        for i, text in enumerate(texts):
            where = f"{name}:row{row + i}"
            if labels[i]:
                where += f"#{safe_name(labels[i])}"
            if not isinstance(text, str):
                yield Unreadable(where, f"row has no text in column {text_field!r}")
            elif len(text) > max_chars:
                yield Unreadable(where, f"document larger than max_document_chars={max_chars}")
            else:
                yield Document(where, "text", text, f"{rel}:row{row + i}")
        row += batch.num_rows


@dataclass
class _Group:
    """One Parquet row group: its number and the row index after its last row."""

    number: int
    end: int

    def __str__(self) -> str:
        return str(self.number)


def _table_batches(path: Path, text_field: str, optional: tuple[str, ...]):
    """(row group or None, record batches) of a Parquet or Arrow file, reading only the text
    column and those of ``optional`` the file has; a file without the text column is refused
    naming its columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.name.lower().endswith(PARQUET_SUFFIXES):
        parquet = pq.ParquetFile(path)
        names = parquet.schema_arrow.names
        wanted = _columns(names, text_field, optional, path)
        end = 0
        for number in range(parquet.num_row_groups):
            end += parquet.metadata.row_group(number).num_rows
            yield _Group(number, end), parquet.iter_batches(BATCH_ROWS, row_groups=[number], columns=wanted)
        return
    with pa.memory_map(str(path)) as source:
        try:
            reader = pa.ipc.open_stream(source)  # datasets writes the stream format
            batches = iter(reader)
        except pa.ArrowInvalid:
            source.seek(0)
            file_reader = pa.ipc.open_file(source)
            reader = file_reader
            batches = (file_reader.get_batch(i) for i in range(file_reader.num_record_batches))
        wanted = _columns(reader.schema.names, text_field, optional, path)
        yield None, (batch.select(wanted) for batch in batches)


def _columns(names: list[str], text_field: str, optional: tuple[str, ...], path: Path) -> list[str]:
    if text_field not in names:
        raise ValueError(f"no column {text_field!r} (its columns: {', '.join(names[:12])}); set segment.text_field")
    return [text_field, *dict.fromkeys(c for c in optional if c and c in names and c != text_field)]


def _labels(batch, url_field: str, id_field: str) -> list[str]:
    """Per row, the URL (else the id) a source names, or "" where the file has neither."""
    for field in (url_field, id_field):
        if field and field in batch.schema.names:
            return ["" if v is None else str(v) for v in batch.column(field).to_pylist()]
    return [""] * batch.num_rows


def _read_warc(path: Path, rel: str, max_chars: int) -> Iterator[Document | Unreadable]:
    """HTML response records of a WARC. A record that cannot be read is a reject naming its
    offset, and reading goes on at the next record found after it (the next ``WARC/1.`` line, or
    the next gzip member of a .warc.gz); a file cut in the middle of a record ends with a reject
    for the missing bytes."""
    from warcio.archiveiterator import ArchiveIterator

    marker = b"\x1f\x8b\x08" if path.name.lower().endswith(".gz") else b"WARC/1."
    size = path.stat().st_size
    name = safe_name(path)
    base = 0
    with open(path, "rb") as f:
        while base < size:
            f.seek(base)
            records = ArchiveIterator(f)
            last = None  # offset (from base) of the last record read
            while True:
                try:
                    record = next(records)
                except StopIteration:
                    end = base + (last or 0) + ((records.get_record_length() or 0) if last is not None else 0)
                    if last is not None and end < size and not _only_blank(f, end, size):
                        yield Unreadable(
                            f"{name}@{end}",
                            f"WARC cut short: the {size - end} bytes after offset {end} are not a complete record",
                        )
                    return
                except Exception as e:  # noqa: BLE001 - ArchiveLoadFailed, a header warcio cannot parse, ...
                    failed = _next_marker(f, base + (last + 1 if last is not None else 0), marker)
                    offset = failed if failed is not None else base + (last or 0)
                    if type(e).__name__ == "ArchiveLoadFailed":
                        why = f"unreadable WARC record at offset {offset} (ArchiveLoadFailed: {safe_name(e)})"
                    else:  # warcio trips over a header it cannot use (cut short inside it, a field missing)
                        why = (
                            f"WARC record header at offset {offset} is incomplete or malformed (a required field "
                            f"missing, or the file cut short inside it: {size - offset} bytes remain from there)"
                        )
                    yield Unreadable(f"{name}@{offset}", why)
                    resume = None if failed is None else _next_marker(f, failed + 1, marker)
                    if resume is None:
                        return
                    base = resume
                    break
                uri, body, problem = _warc_payload(record, max_chars)  # read before asking the offset
                last = records.get_record_offset()
                if uri is None and problem is None:
                    continue  # not an HTML response: images, PDFs, robots.txt, request records
                uri = safe_name(uri) if uri else uri
                where = f"{name}#{uri}" if uri else f"{name}@{base + last}"
                if problem:
                    yield Unreadable(where, problem)
                    continue
                # the URI and the record's offset: two captures of one URI in a crawl are two documents
                yield Document(where, "html", body, f"{rel}#{uri}@{base + last}")


def _only_blank(f, start: int, size: int) -> bool:
    """A record's closing blank lines are not always counted in its length: they are no cut."""
    if size - start > 64:
        return False
    f.seek(start)
    return not f.read(64).strip()


def _next_marker(f, start: int, marker: bytes) -> int | None:
    """Offset of the next record start at or after ``start``, or None."""
    f.seek(start)
    position, carry = start, b""
    while chunk := f.read(1 << 20):
        found = (carry + chunk).find(marker)
        if found >= 0:
            return position - len(carry) + found
        carry = chunk[-len(marker) :]
        position += len(chunk)
    return None


def _warc_payload(record, max_chars: int) -> tuple[str | None, str, str | None]:
    """(uri, decoded HTML, problem) of an HTML response record; (None, '', None) for any other."""
    try:
        if record.rec_type != "response":
            return None, "", None
        uri = record.rec_headers.get_header("WARC-Target-URI") or ""
        ctype = (record.http_headers.get_header("Content-Type") or "") if record.http_headers else ""
        if "html" not in ctype.lower():
            return None, "", None
        body = record.content_stream().read(max_chars + 1)
    except Exception as e:  # noqa: BLE001 - a broken chunked encoding, a bad content encoding, ...
        return "", "", f"unreadable WARC record ({type(e).__name__}: {e})"
    if len(body) > max_chars:
        return uri, "", f"document larger than max_document_chars={max_chars}"
    missing = getattr(record.raw_stream, "limit", 0)  # bytes the header promised that the file lacks
    if missing:
        return uri, "", f"WARC record cut short: {missing} of its {record.length} bytes are missing"
    charset = re.search(r"charset\s*=\s*[\"']?([\w.:-]+)", ctype, re.IGNORECASE)
    return uri, decode_html(body, charset.group(1) if charset else None), None
