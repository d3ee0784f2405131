from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from retrieval_server.loaders import (
    DocumentTooLarge,
    InvalidDocument,
    UnsupportedDocumentType,
    iter_file_documents,
    iter_paths,
    load_text,
    load_upload,
)
from tests.support.retrieval import jsonl, minimal_pdf

LIMIT = 1_000_000


def test_plain_text_title_comes_from_the_file_name() -> None:
    [doc] = load_upload("orbital_station-notes.txt", b"Line one.\n\n\nLine two.", max_chars=LIMIT)
    assert doc.title == "orbital station notes" and doc.type == "txt" and doc.source == "orbital_station-notes.txt"
    assert doc.sections[0].text == "Line one.\n\nLine two."


def test_markdown_sections_follow_headings() -> None:
    text = "---\ntitle: Front Title\n---\n# Top\nintro\n## Sub\nbody\n```\n# not a heading\n```\n## Other\nmore"
    [doc] = load_upload("x.md", text.encode(), max_chars=LIMIT)
    assert doc.title == "Front Title"
    assert [(s.heading, s.text) for s in doc.sections] == [
        ("Top", "intro"),
        ("Top > Sub", "body\n```\n# not a heading\n```"),
        ("Top > Other", "more"),
    ]


def test_html_text_is_extracted_without_scripts_and_split_at_headings() -> None:
    html = (
        "<html><head><title>Page</title><script>var x = 'secret';</script></head><body>"
        "<h1>Main</h1><p>First <b>bold</b> para.</p><!-- hidden --><h2>Part</h2><ul><li>one</li><li>two</li></ul>"
        "<style>.a{}</style></body></html>"
    )
    [doc] = load_upload("p.html", html.encode(), max_chars=LIMIT)
    assert doc.title == "Page"
    assert [(s.heading, s.text) for s in doc.sections] == [("Main", "First bold para."), ("Main > Part", "one\ntwo")]
    assert "secret" not in str(doc.sections) and "hidden" not in str(doc.sections)


def test_pdf_pages_become_sections() -> None:
    [doc] = load_upload(
        "report.pdf", minimal_pdf(["The reactor output is 42 MW.", "Page two text."], "Reactor"), max_chars=LIMIT
    )
    assert doc.title == "Reactor" and doc.type == "pdf"
    assert [(s.heading, s.text) for s in doc.sections] == [
        ("page 1", "The reactor output is 42 MW."),
        ("page 2", "Page two text."),
    ]


def test_jsonl_and_parquet_records_are_documents() -> None:
    records = [
        {"title": "Alpha", "text": "Alpha text.", "url": "https://w.example/Alpha"},
        {"title": "Beta", "text": "Beta text."},
    ]
    docs = load_upload("dump.jsonl", jsonl(records), max_chars=LIMIT)
    assert [(d.title, d.source, d.url) for d in docs] == [
        ("Alpha", "https://w.example/Alpha", "https://w.example/Alpha"),
        ("Beta", "dump.jsonl#dump #2", None),
    ]
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(records), buffer)
    parquet_docs = load_upload("dump.parquet", buffer.getvalue(), max_chars=LIMIT)
    assert [d.title for d in parquet_docs] == ["Alpha", "Beta"] and parquet_docs[0].url == "https://w.example/Alpha"


@pytest.mark.parametrize(
    ("name", "data", "error", "needle"),
    [
        ("junk.txt", bytes(range(256)) * 20, InvalidDocument, "binary"),
        ("junk.md", b"caf\xe9 " + b"\x80\x81\xfa" * 100, InvalidDocument, "UTF-8"),
        ("empty.txt", b"", InvalidDocument, "empty"),
        ("blank.md", b"   \n\n  ", InvalidDocument, "empty"),
        ("nothing.html", b"<html><script>x()</script></html>", InvalidDocument, "no text"),
        ("fake.pdf", b"%PDF-1.4 garbage garbage", InvalidDocument, "PDF"),
        ("notpdf.pdf", b"hello", InvalidDocument, "not a PDF"),
        ("empty.pdf", minimal_pdf([""]), InvalidDocument, "no extractable text"),
        ("bad.jsonl", b'{"text": "ok"}\n{broken\n', InvalidDocument, "line 2"),
        ("notext.jsonl", b'{"title": "no text"}\n', InvalidDocument, "'text'"),
        ("bad.parquet", b"PAR1 not really", InvalidDocument, "Parquet"),
        ("tool.exe", b"MZ\x90\x00", UnsupportedDocumentType, "not a supported"),
        ("data.docx", b"PK\x03\x04", UnsupportedDocumentType, "not a supported"),
    ],
)
def test_bad_files_are_refused_clearly(name: str, data: bytes, error: type[Exception], needle: str) -> None:
    with pytest.raises(error) as caught:
        load_upload(name, data, max_chars=LIMIT)
    assert needle in str(caught.value)


def test_too_much_text_is_refused() -> None:
    with pytest.raises(DocumentTooLarge):
        load_upload("big.txt", b"word " * 1000, max_chars=1000)
    with pytest.raises(DocumentTooLarge):
        load_text("x" * 2000, source="s", max_chars=1000)


def test_media_type_names_a_file_without_suffix() -> None:
    [doc] = load_upload("upload", b"<p>hello</p>", media_type="text/html; charset=utf-8", max_chars=LIMIT)
    assert doc.type == "html" and doc.sections[0].text == "hello"


def test_folders_are_walked_for_supported_files(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# A\ntext")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("b")
    (tmp_path / "c.exe").write_bytes(b"MZ")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "d.txt").write_text("d")
    assert [p.name for p in iter_paths([tmp_path])] == ["a.md", "b.txt"]
    with pytest.raises(FileNotFoundError):
        list(iter_paths([tmp_path / "missing"]))


def test_jsonl_files_stream_with_absolute_sources(tmp_path: Path) -> None:
    path = tmp_path / "wiki.jsonl"
    path.write_text("\n".join(json.dumps({"title": f"T{i}", "text": f"text {i}"}) for i in range(3)))
    docs = list(iter_file_documents(path, max_file_bytes=LIMIT, max_chars=LIMIT))
    assert [d.source for d in docs] == [f"{path.resolve()}#wiki #{i}" for i in (1, 2, 3)]
