"""From files and JSON bodies to :class:`SourceDocument` (title + sections of text).

Supported: .txt, .md, .html, .pdf, and JSONL/Parquet of ``{"title", "text", "url"}``
records (one document per record). Everything is read and checked before anything is
stored, so a bad upload is refused whole: binary junk and empty files are
:class:`InvalidDocument` (400), other types :class:`UnsupportedDocumentType` (415),
oversized ones :class:`DocumentTooLarge` (413).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from retrieval_server.chunking import Section, normalize_text
from services.jsonl import json_lines

TYPES_BY_SUFFIX = {
    ".txt": "txt",
    ".text": "txt",
    ".md": "md",
    ".markdown": "md",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
}
TYPES_BY_MEDIA = {
    "text/plain": "txt",
    "text/markdown": "md",
    "text/x-markdown": "md",
    "text/html": "html",
    "application/pdf": "pdf",
    "application/jsonl": "jsonl",
    "application/x-ndjson": "jsonl",
    "application/x-jsonlines": "jsonl",
    "application/vnd.apache.parquet": "parquet",
}
RECORD_TYPES = frozenset({"jsonl", "parquet"})
_HEADING_TAGS = ("h1", "h2", "h3", "h4", "h5", "h6")
_BLOCK_TAGS = (
    "p",
    "div",
    "li",
    "tr",
    "td",
    "th",
    "pre",
    "blockquote",
    "section",
    "article",
    "dd",
    "dt",
    "table",
    "ul",
    "ol",
    "figcaption",
    "header",
    "footer",
    "main",
    "aside",
    "nav",
    "br",
)
_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


class DocumentError(ValueError):
    """A document that cannot be ingested; ``code`` is the OpenAI error code we answer with."""

    code = "invalid_document"


class InvalidDocument(DocumentError):
    pass


class UnsupportedDocumentType(DocumentError):
    code = "unsupported_file_type"


class DocumentTooLarge(DocumentError):
    code = "document_too_large"


@dataclass
class SourceDocument:
    source: str
    """Where it came from (path, URL, upload name): the document id derives from it."""
    title: str
    sections: list[Section]
    type: str
    url: str | None = None
    document_id: str | None = None
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def chars(self) -> int:
        return sum(len(s.text) for s in self.sections)


def detect_type(name: str, media_type: str | None = None) -> str:
    kind = TYPES_BY_SUFFIX.get(Path(name).suffix.lower())
    if kind is None and media_type:
        kind = TYPES_BY_MEDIA.get(media_type.split(";")[0].strip().lower())
    if kind is None:
        supported = ", ".join(sorted(TYPES_BY_SUFFIX))
        raise UnsupportedDocumentType(f"'{name}' is not a supported document type (supported: {supported}).")
    return kind


def humanize(stem: str) -> str:
    return re.sub(r"[_\-]+", " ", stem).strip() or stem


def decode_text(data: bytes, name: str) -> str:
    """UTF-8 (or UTF-16 with a byte-order mark) text; anything else is treated as binary junk."""
    encoding = "utf-16" if data.startswith((b"\xff\xfe", b"\xfe\xff")) else "utf-8-sig"
    if b"\x00" in data and encoding != "utf-16":
        raise InvalidDocument(f"'{name}' contains binary data, not text.")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        raise InvalidDocument(f"'{name}' is not UTF-8 text (binary data?).") from None
    if text and len(_CONTROL.findall(text)) > max(2, len(text) // 200):
        raise InvalidDocument(f"'{name}' is mostly control characters, not text.")
    return text


def _require_text(sections: list[Section], name: str) -> list[Section]:
    kept = [s for s in sections if s.text.strip()]
    if not kept:
        raise InvalidDocument(f"'{name}' has no text to index.")
    return kept


def parse_plain(text: str, name: str) -> tuple[str, list[Section]]:
    return humanize(Path(name).stem), _require_text([Section("", normalize_text(text))], name)


def parse_markdown(text: str, name: str) -> tuple[str, list[Section]]:
    title = ""
    if text.startswith("---\n"):  # front matter
        end = text.find("\n---", 4)
        if end != -1:
            match = re.search(r"^title:\s*(.+)$", text[4:end], re.MULTILINE)
            title = match.group(1).strip().strip("\"'") if match else ""
            text = text[end + 4 :]
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    lines: list[str] = []
    in_code = False

    def flush() -> None:
        body = normalize_text("\n".join(lines))
        if body:
            sections.append(Section(" > ".join(h for _, h in path), body))
        lines.clear()

    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            in_code = not in_code
        match = None if in_code else _MD_HEADING.match(line)
        if match is None:
            lines.append(line)
            continue
        flush()
        level, heading = len(match.group(1)), match.group(2).strip()
        title = title or (heading if level == 1 else "")
        path = [(lv, h) for lv, h in path if lv < level] + [(level, heading)]
    flush()
    return title or humanize(Path(name).stem), _require_text(sections, name)


def parse_html(text: str, name: str) -> tuple[str, list[Section]]:
    from bs4 import BeautifulSoup, Comment

    soup = BeautifulSoup(text, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for junk in soup(["script", "style", "noscript", "template", "svg", "head", "iframe", "object"]):
        junk.decompose()
    for comment in soup.find_all(string=lambda s: isinstance(s, Comment)):
        comment.extract()
    marker = "\x00"
    for tag in soup.find_all(_HEADING_TAGS):
        heading = tag.get_text(" ", strip=True)
        tag.replace_with(f"\n{marker}{tag.name[1]}{heading}{marker}\n")
    for tag in soup.find_all(_BLOCK_TAGS):
        tag.append("\n")
    flat = soup.get_text("")
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    parts = flat.split(marker)
    body = parts[0]
    for i in range(1, len(parts), 2):
        sections.append(Section(" > ".join(h for _, h in path), normalize_text(body)))
        level, heading = int(parts[i][:1] or 1), parts[i][1:].strip()
        title = title or (heading if level == 1 else "")
        path = [(lv, h) for lv, h in path if lv < level] + [(level, heading)]
        body = parts[i + 1] if i + 1 < len(parts) else ""
    sections.append(Section(" > ".join(h for _, h in path), normalize_text(body)))
    return title or humanize(Path(name).stem), _require_text(sections, name)


def parse_pdf(data: bytes, name: str) -> tuple[str, list[Section]]:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    if not data.lstrip()[:5] == b"%PDF-":
        raise InvalidDocument(f"'{name}' is not a PDF file.")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise InvalidDocument(f"'{name}' is an encrypted PDF.")
        sections = [
            Section(f"page {i}", normalize_text(page.extract_text() or "")) for i, page in enumerate(reader.pages, 1)
        ]
        meta_title = (reader.metadata.title if reader.metadata else None) or ""
    except InvalidDocument:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise InvalidDocument(f"'{name}' is not a readable PDF: {exc}.") from None
    if not any(s.text for s in sections):
        raise InvalidDocument(f"'{name}' has no extractable text (a scanned PDF needs OCR first).")
    return str(meta_title).strip() or humanize(Path(name).stem), _require_text(sections, name)


def parse_single(kind: str, data: bytes, name: str) -> tuple[str, list[Section]]:
    if kind == "pdf":
        return parse_pdf(data, name)
    if not data.strip():
        raise InvalidDocument(f"'{name}' is empty.")
    text = decode_text(data, name)
    if kind == "md":
        return parse_markdown(text, name)
    if kind == "html":
        return parse_html(text, name)
    return parse_plain(text, name)


def _record_document(record: Any, where: str, file_source: str, default_title: str) -> SourceDocument:
    if not isinstance(record, dict):
        raise InvalidDocument(f"{where}: a record must be a JSON object with a 'text' field.")
    text, title, url = record.get("text"), record.get("title"), record.get("url")
    if not isinstance(text, str) or not text.strip():
        raise InvalidDocument(f"{where}: 'text' must be a non-empty string.")
    if title is not None and not isinstance(title, str) or url is not None and not isinstance(url, str):
        raise InvalidDocument(f"{where}: 'title' and 'url' must be strings.")
    key = record.get("id")
    source = url or f"{file_source}#{key if isinstance(key, (str, int)) and str(key) else default_title}"
    return SourceDocument(
        source=source,
        title=(title or "").strip() or default_title,
        sections=[Section("", normalize_text(text))],
        type="record",
        url=url or None,
    )


def iter_jsonl_records(lines: Iterable[bytes | str], name: str, file_source: str) -> Iterator[SourceDocument]:
    def not_json(number: int, exc: ValueError) -> InvalidDocument:
        return InvalidDocument(f"'{name}' line {number} is not JSON: {exc}.")

    for number, record in json_lines(lines, not_json):
        yield _record_document(record, f"'{name}' line {number}", file_source, f"{humanize(Path(name).stem)} #{number}")


def iter_parquet_records(source: IO[bytes] | str, name: str, file_source: str) -> Iterator[SourceDocument]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(source)
    except (pa.ArrowException, OSError) as exc:
        raise InvalidDocument(f"'{name}' is not a readable Parquet file: {exc}.") from None
    columns = [c for c in ("id", "title", "text", "url") if c in parquet.schema_arrow.names]
    if "text" not in columns:
        raise InvalidDocument(f"'{name}' has no 'text' column (expected title, text, url).")
    row = 0
    try:
        for batch in parquet.iter_batches(batch_size=1024, columns=columns):
            for record in batch.to_pylist():
                row += 1
                yield _record_document(
                    record, f"'{name}' row {row}", file_source, f"{humanize(Path(name).stem)} #{row}"
                )
    except pa.ArrowException as exc:
        raise InvalidDocument(f"'{name}' could not be read past row {row}: {exc}.") from None


def load_upload(
    name: str,
    data: bytes,
    *,
    source: str | None = None,
    title: str | None = None,
    media_type: str | None = None,
    max_chars: int,
) -> list[SourceDocument]:
    """Every document in one uploaded file, all checked (nothing is returned half-read)."""
    kind = detect_type(name, media_type)
    origin = source or name
    if kind in RECORD_TYPES:
        if not data.strip():
            raise InvalidDocument(f"'{name}' is empty.")
        if kind == "jsonl":
            decode_text(data, name)
            documents = list(iter_jsonl_records(data.splitlines(), name, origin))
        else:
            documents = list(iter_parquet_records(io.BytesIO(data), name, origin))
        if not documents:
            raise InvalidDocument(f"'{name}' holds no records.")
    else:
        parsed_title, sections = parse_single(kind, data, name)
        documents = [SourceDocument(source=origin, title=title or parsed_title, sections=sections, type=kind)]
    for document in documents:
        check_size(document, max_chars)
    return documents


def load_text(text: str, *, source: str, fmt: str = "txt", title: str | None = None, max_chars: int) -> SourceDocument:
    """A document sent as JSON text; ``fmt`` is txt, md or html."""
    name = f"{source}.{fmt}" if not Path(source).suffix else source
    parsed_title, sections = parse_single(fmt, text.encode("utf-8"), name)
    document = SourceDocument(source=source, title=title or parsed_title, sections=sections, type=fmt)
    check_size(document, max_chars)
    return document


def check_size(document: SourceDocument, max_chars: int) -> None:
    if document.chars > max_chars:
        raise DocumentTooLarge(
            f"'{document.source}' has {document.chars} characters of text; the limit is {max_chars}."
        )


def iter_paths(paths: Iterable[Path]) -> Iterator[Path]:
    """Files named directly (any type: unsupported ones fail loudly) and supported files under folders."""
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                hidden = any(part.startswith(".") for part in child.relative_to(path).parts)
                if child.is_file() and not hidden and child.suffix.lower() in TYPES_BY_SUFFIX:
                    yield child
        elif path.is_file():
            yield path
        else:
            raise FileNotFoundError(f"{path} does not exist")


def iter_file_documents(path: Path, *, max_file_bytes: int, max_chars: int) -> Iterator[SourceDocument]:
    """Documents in one file on disk; record files stream (a Wikipedia dump need not fit in memory)."""
    kind = detect_type(path.name)
    source = str(path.resolve())
    if kind == "jsonl":
        with path.open("rb") as lines:
            for document in iter_jsonl_records(lines, path.name, source):
                check_size(document, max_chars)
                yield document
        return
    if kind == "parquet":
        for document in iter_parquet_records(str(path), path.name, source):
            check_size(document, max_chars)
            yield document
        return
    size = path.stat().st_size
    if size > max_file_bytes:
        raise DocumentTooLarge(f"'{path.name}' is {size} bytes; the limit is {max_file_bytes}.")
    yield from load_upload(path.name, path.read_bytes(), source=source, max_chars=max_chars)
