"""Stream documents from a corpus: HTML (optionally .gz), WARC/WARC.gz, JSONL, TXT/MD.

A corpus is a file, a directory (searched recursively) or a glob. Files are read in sorted order
and one at a time, records inside a WARC or JSONL file one at a time, so huge inputs are never
loaded whole. Anything unreadable comes out as an ``Unreadable`` item that names the file (and
line), which the segment stage turns into a reject.
"""

from __future__ import annotations

import glob
import gzip
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterator

HTML_SUFFIXES = (".html", ".htm", ".html.gz", ".htm.gz")
WARC_SUFFIXES = (".warc", ".warc.gz")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")
TEXT_SUFFIXES = (".txt", ".txt.gz")
MARKDOWN_SUFFIXES = (".md", ".md.gz")
SUFFIXES = HTML_SUFFIXES + WARC_SUFFIXES + JSONL_SUFFIXES + TEXT_SUFFIXES + MARKDOWN_SUFFIXES


@dataclass
class Document:
    source: str
    kind: str  # "html" (content is bytes), "text" or "markdown" (content is str)
    content: bytes | str


@dataclass
class Unreadable:
    source: str
    reason: str


def demo_corpus_path() -> Path:
    return Path(str(resources.files("humpback") / "demo" / "web"))


def corpus_files(spec: str) -> list[Path]:
    """The corpus files a spec names, sorted; raises if it names none."""
    if spec == "demo":
        spec = str(demo_corpus_path())
    path = Path(spec).expanduser()
    if path.is_dir():
        files = [p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(SUFFIXES)]
    elif path.is_file():
        files = [path]
    else:
        files = [Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file()]
    if not files:
        raise FileNotFoundError(
            f"corpus {spec} names no readable file; give a file, directory or glob of "
            f"{', '.join(SUFFIXES)}"
        )
    return sorted(files)


def _open(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def read_corpus(spec: str, text_field: str = "text", max_chars: int = 5_000_000) -> Iterator[Document | Unreadable]:
    for path in corpus_files(spec):
        name = path.name.lower()
        try:
            if name.endswith(WARC_SUFFIXES):
                yield from _read_warc(path, max_chars)
            elif name.endswith(JSONL_SUFFIXES):
                yield from _read_jsonl(path, text_field, max_chars)
            else:
                yield from _read_whole(path, name, max_chars)
        except (OSError, EOFError) as e:  # truncated gzip, permission denied, ...
            yield Unreadable(str(path), f"unreadable file ({type(e).__name__}: {e})")


def _read_whole(path: Path, name: str, max_chars: int) -> Iterator[Document | Unreadable]:
    with _open(path) as f:
        data = f.read(max_chars + 1)
    if len(data) > max_chars:
        yield Unreadable(str(path), f"document larger than max_document_chars={max_chars}")
        return
    if name.endswith(HTML_SUFFIXES):
        yield Document(str(path), "html", data)  # the HTML parser detects the encoding
        return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        yield Unreadable(str(path), f"not valid UTF-8 text (byte {e.start})")
        return
    yield Document(str(path), "markdown" if name.endswith(MARKDOWN_SUFFIXES) else "text", text)


def _read_jsonl(path: Path, text_field: str, max_chars: int) -> Iterator[Document | Unreadable]:
    with _open(path) as f:
        for i, raw in enumerate(f, 1):
            where = f"{path}:{i}"
            if not raw.strip():
                continue
            if len(raw) > max_chars:
                yield Unreadable(where, f"record larger than max_document_chars={max_chars}")
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                yield Unreadable(where, "line is not valid UTF-8")
                continue
            except json.JSONDecodeError as e:
                yield Unreadable(where, f"malformed JSON ({e.msg})")
                continue
            text = record.get(text_field) if isinstance(record, dict) else None
            if not isinstance(text, str):
                yield Unreadable(where, f"record has no string field {text_field!r} (set segment.text_field)")
                continue
            yield Document(where, "text", text)


def _read_warc(path: Path, max_chars: int) -> Iterator[Document | Unreadable]:
    from warcio.archiveiterator import ArchiveIterator

    with open(path, "rb") as f:
        for record in ArchiveIterator(f):
            if record.rec_type != "response":
                continue
            uri = record.rec_headers.get_header("WARC-Target-URI") or "?"
            where = f"{path}#{uri}"
            ctype = (record.http_headers.get_header("Content-Type") or "") if record.http_headers else ""
            if "html" not in ctype.lower():
                continue  # images, PDFs, robots.txt: not web text
            body = record.content_stream().read(max_chars + 1)
            if len(body) > max_chars:
                yield Unreadable(where, f"document larger than max_document_chars={max_chars}")
                continue
            yield Document(where, "html", body)
