"""Segmenting: web documents -> header segments -> filtered, deduplicated segments.

A segment is the text that follows an HTML header, including the lower-level headers and text
under it (paper, section 2.3). Main-content extraction (trafilatura) drops navigation, cookie
banners, ads and link lists before segmenting; then each segment goes through the paper's
filters, in this order, each counted: header heuristics, the 600-3,000 character window,
repeated sentences, exact duplicates, MinHash near-duplicates.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from datasketch import MinHash, MinHashLSH
from lxml import etree

from .config import ExecutorConfig, SegmentConfig
from .corpus import (
    Document,
    RowGroup,
    Skipped,
    Unreadable,
    corpus_fingerprint,
    decode_html,
    expand_row_groups,
    read_corpus,
)
from .filters import is_boilerplate_line, is_navigation_header
from .outputs import items_fingerprint, stage_output
from .records import Reject, Segment
from .shards import reject, run_sharded, stable_id

_HEADER_TAG = re.compile(r"<h[1-6][\s>]", re.IGNORECASE)
_WORD = re.compile(r"\w+")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")
_MD_HEADER = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
# A header with no text (only tags or whitespace inside). Main-content extraction drops it and
# its section would merge into the one before; it is marked first so the paper's empty-header rule sees it.
_EMPTY_HEADER = re.compile(r"<h([1-6])(\s[^>]*)?>(\s|&nbsp;|<[^>]*>)*</h\1\s*>", re.IGNORECASE)
EMPTY_HEADER_MARK = "humpback-empty-header"


# --- documents -> blocks ------------------------------------------------------------------
# A block is (level, text): level 1..6 for a header, 0 for body text.


def html_blocks(html: str | bytes) -> tuple[list[tuple[int, str]], str]:
    """Main-content blocks of a page, and its title."""
    import trafilatura

    if isinstance(html, bytes):
        html = decode_html(html)
    html = _EMPTY_HEADER.sub(lambda m: f"<h{m.group(1)}>{EMPTY_HEADER_MARK}</h{m.group(1)}>", html)

    xml = trafilatura.extract(
        html,
        output_format="xml",
        include_formatting=True,
        include_tables=True,
        include_comments=False,
        include_links=False,
        include_images=False,
        with_metadata=True,
        favor_recall=True,
    )
    if not xml:
        return [], ""
    root = etree.fromstring(xml.encode("utf-8"))
    main = root.find("main")
    blocks: list[tuple[int, str]] = []
    for el in main if main is not None else []:
        if el.tag == "head":
            level = int((el.get("rend") or "h2").lstrip("h") or 2)
            text = _clean(" ".join(el.itertext()))
            blocks.append((min(max(level, 1), 6), "" if text == EMPTY_HEADER_MARK else text))
        elif el.tag == "list":
            items = [_clean(" ".join(i.itertext())) for i in el.iter("item")]
            blocks.append((0, "\n".join(f"- {i}" for i in items if i)))
        elif el.tag == "table":
            rows = [" | ".join(_clean(" ".join(c.itertext())) for c in row) for row in el.iter("row")]
            blocks.append((0, "\n".join(r for r in rows if r.strip(" |"))))
        elif el.tag == "code":
            blocks.append((0, "".join(el.itertext()).strip("\n")))
        else:  # p, quote, ...
            blocks.append((0, _clean(" ".join(el.itertext()))))
    # an empty header stays: the paper drops the segment under it, which otherwise would be merged
    # into the section before
    return [b for b in blocks if b[1] or b[0] > 0], _clean(root.get("title") or "")


def markdown_blocks(text: str) -> list[tuple[int, str]]:
    blocks: list[tuple[int, str]] = []
    for para in re.split(r"\n\s*\n", text):
        lines = para.strip("\n").split("\n")
        body: list[str] = []
        for line in lines:
            m = _MD_HEADER.match(line)
            if m:
                if body:
                    blocks.append((0, "\n".join(body).strip()))
                    body = []
                blocks.append((len(m.group(1)), m.group(2).strip()))
            else:
                body.append(line)
        if "".join(body).strip():
            blocks.append((0, "\n".join(body).strip()))
    return blocks


def _clean(text: str) -> str:
    return re.sub(r"[ \t\r\f\v]+", " ", text).strip()


def header_segments(blocks: list[tuple[int, str]], title: str = "") -> list[tuple[str | None, str]]:
    """(header, text) for every header: the blocks after it up to the next header of the same
    or a higher level. Text before the first header belongs to the page title."""
    segments: list[tuple[str | None, str]] = []
    if blocks and blocks[0][0] == 0 and title:
        blocks = [(1, title)] + blocks
    for i, (level, header) in enumerate(blocks):
        if level == 0:
            continue
        body = []
        for sub_level, text in blocks[i + 1 :]:
            if sub_level and sub_level <= level:
                break
            body.append(text)
        segments.append((header, "\n\n".join(body).strip()))
    return segments


def text_segments(text: str, max_chars: int) -> list[tuple[str | None, str]]:
    """Plain text has no headers: consecutive paragraphs packed into chunks of at most max_chars."""
    chunks, current = [], ""
    for para in (p.strip() for p in re.split(r"\n\s*\n", text)):
        if not para:
            continue
        if current and len(current) + 2 + len(para) > max_chars:
            chunks.append(current)
            current = ""
        current = f"{current}\n\n{para}" if current else para
    if current:
        chunks.append(current)
    return [(None, c) for c in chunks]


# --- filters ------------------------------------------------------------------------------


def header_problem(header: str | None, cfg: SegmentConfig) -> str | None:
    """Why a header disqualifies its segment (None if it does not). Plain text has no header."""
    if header is None:
        return None
    if not header.strip():
        return "empty_header"
    if is_navigation_header(header, cfg.nav_header_patterns):
        return "navigation_header"
    letters = [c for c in header if c.isalpha()]
    if letters:
        upper = sum(c.isupper() for c in letters) / len(letters)
        if (upper == 1.0 and len(letters) > 1) or upper > cfg.max_header_upper_ratio:
            return "uppercase_header"
    return None


def _ngrams(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def repeated_sentence_share(text: str, n: int, threshold: float) -> float:
    """Share of sentences whose word n-grams overlap an earlier sentence's with Jaccard >= threshold."""
    grams = [_ngrams(_WORD.findall(s.lower()), n) for s in _SENTENCE_SPLIT.split(text)]
    grams = [g for g in grams if g]
    if len(grams) < 2:
        return 0.0
    repeated = 0
    for i, g in enumerate(grams):
        if any(len(g & h) / len(g | h) >= threshold for h in grams[:i]):
            repeated += 1
    return repeated / len(grams)


def strip_boilerplate_lines(text: str, cfg: SegmentConfig) -> tuple[str, list[str]]:
    """Drop whole boilerplate lines (filters.is_boilerplate_line); the text and the lines dropped."""
    kept, dropped = [], []
    for line in text.split("\n"):
        if is_boilerplate_line(
            line, cfg.boilerplate_line_patterns, cfg.boilerplate_line_chars, cfg.nav_header_patterns
        ):
            dropped.append(line.strip())
        else:
            kept.append(line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip(), dropped


def segment_problem(header: str | None, text: str, cfg: SegmentConfig) -> str | None:
    """The first per-segment filter that removes this segment, or None."""
    problem = header_problem(header, cfg)
    if problem:
        return problem
    if len(text) < cfg.min_chars:
        return "too_short"
    if len(text) > cfg.max_chars:
        return "too_long"
    if repeated_sentence_share(text, cfg.repeat_ngram, cfg.repeat_jaccard) > cfg.max_repeated_sentence_share:
        return "repetitive"
    return None


_language_identifier = None


def detect_language(text: str) -> tuple[str, float]:
    """The most likely language (ISO 639-1) and its probability, by py3langid (its model ships in the wheel)."""
    global _language_identifier
    if _language_identifier is None:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        _language_identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    language, probability = _language_identifier.classify(text)
    return language, float(probability)


def signature(text: str, cfg: SegmentConfig) -> tuple[bytes, MinHash]:
    """What deduplication compares: a digest of the normalised words (exact duplicates) and the
    MinHash of the word shingles (near duplicates). Computed where the segment is made, so on
    Ray it runs in parallel on the actors."""
    words = _WORD.findall(text.lower())
    digest = hashlib.blake2b(" ".join(words).encode("utf-8"), digest_size=16).digest()
    n = cfg.minhash_shingle
    shingles = {" ".join(words[i : i + n]) for i in range(max(1, len(words) - n + 1))}
    m = MinHash(num_perm=cfg.minhash_num_perm)
    m.update_batch([s.encode("utf-8") for s in shingles])
    return digest, m


@functools.lru_cache(maxsize=8)
def band_shape(threshold: float, num_perm: int, recall_weight: float) -> tuple[int, int]:
    """(bands, rows per band): datasketch's optimum for the threshold and the weight of a miss."""
    optimum = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(1 - recall_weight, recall_weight))
    return optimum.b, optimum.r


def band_hashes(m: MinHash, cfg: SegmentConfig) -> list[int]:
    """A MinHash as its LSH bands, each one 64-bit hash: all the index compares. Computed where the
    segment is made (on Ray, on the actors), so only b numbers travel to the index."""
    b, r = band_shape(cfg.minhash_threshold, cfg.minhash_num_perm, cfg.minhash_recall_weight)
    values = m.hashvalues
    return [
        int.from_bytes(hashlib.blake2b(values[i * r : (i + 1) * r].tobytes(), digest_size=8).digest(), "little")
        for i in range(b)
    ]


class DedupIndex:
    """What deduplication remembers of the segments kept so far: their digests (exact duplicates)
    and their LSH bands (near duplicates), one set of 64-bit hashes per band. datasketch's
    MinHashLSH keeps a set of keys per bucket and every key's bucket list, which measured 3.8 GB
    per million segments here; this keeps 0.9 GB (bench/dedup_memory.py). Same answers: a segment
    is a near-duplicate candidate exactly when one of its bands was seen.

    On the Ray executor it lives in an actor of its own (``executor.Hosted``), so the driver that
    writes the shards stays flat in memory whatever the corpus size; locally it is an object here."""

    def __init__(self, cfg: SegmentConfig):
        bands, _ = band_shape(cfg.minhash_threshold, cfg.minhash_num_perm, cfg.minhash_recall_weight)
        self.dedup_exact = cfg.dedup_exact
        self.exact: set[bytes] = set()
        self.tables: list[set[int]] = [set() for _ in range(bands)]

    def verdicts(self, signatures: list[tuple[bytes, list[int]]]) -> list[str | None]:
        """Per (digest, bands), in order: 'exact_duplicate', 'near_duplicate' or None, remembering
        each that passes (so a later one in the same list is compared with it)."""
        out: list[str | None] = []
        for digest, bands in signatures:
            if self.dedup_exact and digest in self.exact:
                out.append("exact_duplicate")
            elif any(band in table for band, table in zip(bands, self.tables)):
                out.append("near_duplicate")
            else:
                self.exact.add(digest)
                for band, table in zip(bands, self.tables):
                    table.add(band)
                out.append(None)
        return out

    def nbytes(self) -> int:
        """The bytes its sets and their members take (what grows with the kept segments)."""
        sets: list[set] = [self.exact, *self.tables]
        return sum(sys.getsizeof(t) + sum(sys.getsizeof(x) for x in t) for t in sets)


LEARN_BATCH = 2000  # segments of earlier shards sent to the index per call on resume


class Deduplicator:
    """Exact and MinHash-LSH near-duplicate removal over the whole corpus; keeps the first
    occurrence. Its index sees every kept segment in corpus order, in one place, whichever executor
    made the segments: no pair is missed because its halves were signed on different workers.
    ``index`` is a DedupIndex here, or one hosted in a Ray actor (the same methods)."""

    def __init__(self, cfg: SegmentConfig, index=None):
        self.cfg = cfg
        self.index = index if index is not None else DedupIndex(cfg)

    def check(self, key: str, digest: bytes, m: MinHash) -> str | None:
        """'exact_duplicate', 'near_duplicate' or None; remembers segments that pass. (``key``, the
        segment id, is not stored: only whether a band was seen matters.)"""
        return self.index.verdicts([(digest, band_hashes(m, self.cfg))])[0]

    def learn(self, kept: Iterable[dict]) -> None:
        """Remember segments an earlier attempt already kept (a resumed stage's written shards)."""
        batch = []
        for seg in kept:
            digest, m = signature(seg["text"], self.cfg)
            batch.append((digest, band_hashes(m, self.cfg)))
            if len(batch) >= LEARN_BATCH:
                self.index.verdicts(batch)
                batch = []
        if batch:
            self.index.verdicts(batch)

    def finish_shard(
        self, segments: list[dict], rejects: list[Reject], counts: dict
    ) -> tuple[list[dict], list[Reject], dict]:
        """The shard's segments that are not duplicates of an earlier one, without their signatures."""
        signatures = [(seg.pop("_digest"), seg.pop("_bands")) for seg in segments]
        kept = []
        for seg, problem in zip(segments, self.index.verdicts(signatures) if signatures else []):
            if problem:
                counts[f"removed_{problem}"] += 1
            else:
                kept.append(seg)
        counts["segments_kept"] = len(kept)
        return kept, rejects, counts


# --- the stage ----------------------------------------------------------------------------


def document_segments(doc: Document, cfg: SegmentConfig) -> tuple[list[tuple[str | None, str]], str | None]:
    """All (header, text) segments of a document, or the reason it has none."""
    if doc.kind == "html":
        if isinstance(doc.content, bytes):
            doc.content = decode_html(doc.content)
        if not _HEADER_TAG.search(doc.content):
            return [], "HTML has no headers (h1-h6) to segment by"
        blocks, title = html_blocks(doc.content)
        if not blocks:
            return [], "no main text found in the HTML"
        return header_segments(blocks, title), None
    if isinstance(doc.content, bytes):  # only HTML is read as bytes
        doc.content = doc.content.decode("utf-8", errors="replace")
    if not doc.content.strip():
        return [], "empty document"
    if doc.kind == "markdown" and any(level for level, _ in markdown_blocks(doc.content)):
        return header_segments(markdown_blocks(doc.content)), None
    return text_segments(doc.content, cfg.max_chars), None


def segment_documents(docs: list[Document | Unreadable | Skipped | RowGroup], cfg: SegmentConfig):
    """One shard: documents (a Parquet row group's, read here) -> segments that pass the
    per-segment filters (with their dedup signatures), rejects and filter counters.
    Deduplication follows, in corpus order."""
    kept: list[dict] = []
    rejects: list[Reject] = []
    counts: dict = Counter()  # counters, and the filters' examples under "_examples"
    examples: dict[str, list[str]] = {}
    for doc in expand_row_groups(docs):
        if isinstance(doc, Skipped):
            rejects.append(reject("segment", doc.source, f"skipped: {doc.reason}"))
            counts["files_skipped"] += 1
            continue
        counts["documents"] += 1
        if isinstance(doc, Unreadable):
            rejects.append(reject("segment", doc.source, doc.reason))
            counts["documents_rejected"] += 1
            continue
        try:
            pieces, problem = document_segments(doc, cfg)
        except Exception as e:  # a parser failure on one page must not stop the run
            pieces, problem = [], f"could not parse ({type(e).__name__}: {e})"
        if problem:
            rejects.append(reject("segment", doc.source, problem))
            counts["documents_rejected"] += 1
            continue
        for position, (header, text) in enumerate(pieces):
            counts["segments_found"] += 1
            text, dropped = strip_boilerplate_lines(text, cfg)
            counts["boilerplate_lines_dropped"] += len(dropped)
            for line in dropped:
                _example(examples, "boilerplate_line", line)
            problem = segment_problem(header, text, cfg)
            if problem:
                counts[f"removed_{problem}"] += 1
                _example(examples, problem, f"{header or ''} | {text[:160]}")
                continue
            language, confidence = detect_language(text)
            if cfg.languages and language not in cfg.languages and confidence >= cfg.min_language_confidence:
                counts["removed_language"] += 1
                _example(examples, "language", f"{language} ({confidence:.2f}) | {text[:160]}")
                continue
            digest, minhash = signature(text, cfg)
            # the signature travels with the segment to the deduplication, which drops it
            kept.append(
                {
                    **Segment(
                        id=stable_id(doc.key, position),
                        source=f"{doc.source}#{position}",
                        header=header or "",
                        text=text,
                        language=language,
                        language_confidence=round(confidence, 4),
                    ),
                    "_digest": digest,
                    "_bands": band_hashes(minhash, cfg),
                }
            )
    counts["_examples"] = examples  # what each filter removed, a few per shard, for the report
    return kept, rejects, counts


EXAMPLES_PER_SHARD = 3


def _example(examples: dict, reason: str, text: str) -> None:
    shown = examples.setdefault(reason, [])
    if len(shown) < EXAMPLES_PER_SHARD and text not in shown:
        shown.append(text)


def segment(
    corpus: str | Iterable,
    out_dir: Path,
    cfg: SegmentConfig | None = None,
    executor: ExecutorConfig | None = None,
    recompute: bool = False,
) -> dict:
    """Segment a corpus (a path spec, or an iterable of Documents) into ``out_dir/part-*``.
    With a Ray ``executor`` documents are parsed, filtered and signed on Ray actors; the
    deduplication join runs here over their signatures, in corpus order.

    ``out_dir`` must be new, empty or a segments folder; a rerun resumes it only when the corpus
    and the config are what made it (else StaleOutputError, or with ``recompute`` it is redone)."""
    cfg = cfg or SegmentConfig()
    out_dir = Path(out_dir)
    docs: Iterable
    source: list | str  # the corpus files' names, sizes and times; or what items_fingerprint makes of records
    if isinstance(corpus, (str, Path)):
        source = corpus_fingerprint(str(corpus))
        docs = read_corpus(
            str(corpus), cfg.text_field, cfg.max_document_chars, cfg.url_field, cfg.id_field, row_groups=True
        )
    else:
        docs, source = corpus, items_fingerprint(corpus)
    fields = {"corpus": source, "config": cfg.model_dump(mode="json")}
    with stage_output(out_dir, "segments", fields, recompute), _index(cfg, executor) as index:
        dedup = Deduplicator(cfg, index)
        if executor is not None:
            executor = executor.model_copy(update={"ray_gpus_per_actor": 0.0})  # parsing needs no GPU
        return run_sharded(
            docs,
            out_dir,
            cfg.documents_per_shard,
            lambda: lambda docs, _index: segment_documents(docs, cfg),
            desc="segment",
            executor=executor,
            finish=dedup.finish_shard,
            resume=dedup.learn,
            max_bytes=cfg.shard_max_bytes,
            size_of=document_size,
            count_of=document_count,
        )


@contextlib.contextmanager
def _index(cfg: SegmentConfig, executor: ExecutorConfig | None):
    """The deduplication index: here, or on Ray in an actor of its own (made at its first use,
    so a finished stage starts none), killed when the stage ends."""
    if executor is None or executor.executor != "ray":
        yield DedupIndex(cfg)
        return
    from .executor import Hosted

    hosted = Hosted(DedupIndex, executor, cfg)
    try:
        yield hosted
    finally:
        hosted.close()


def document_count(item: object) -> int:
    """How many documents an item of the corpus stands for: a Parquet row group its rows, else one."""
    return item.rows if isinstance(item, RowGroup) else 1


def document_size(item: object) -> int:
    """What a document holds in memory, roughly: its content's length (0 for a reject); a Parquet
    row group its text column's uncompressed size, from the file's footer."""
    if isinstance(item, RowGroup):
        return item.text_bytes
    content = getattr(item, "content", None)
    return len(content) if isinstance(content, (str, bytes)) else 0
