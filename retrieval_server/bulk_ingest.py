"""Ingesting files and folders from the command line, into a running retrieval service
(``RemoteIngest``, over its API) or straight into the embedded index (``LocalIngest``,
while no service holds it). Both report through the same callbacks."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from retrieval_server.config import RetrievalSettings
from retrieval_server.documents import DocumentStore, IngestOutcome
from retrieval_server.loaders import (
    RECORD_TYPES,
    DocumentError,
    SourceDocument,
    detect_type,
    iter_file_documents,
)

RECORDS_PER_REQUEST = 64


@dataclass
class IngestReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    chunks: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)

    def add(self, outcome: IngestOutcome) -> None:
        setattr(self, outcome.status, getattr(self, outcome.status) + 1)
        if outcome.status != "unchanged":
            self.chunks += outcome.chunks


OnChunks = Callable[[int], None]
OnDocument = Callable[[IngestOutcome], None]
OnFile = Callable[[Path, str | None], None]
"""A file is done; the second argument is its error, if it failed."""


class IngestFailed(RuntimeError):
    pass


class LocalIngest:
    def __init__(self, store: DocumentStore, collection: str, settings: RetrievalSettings) -> None:
        self.store = store
        self.collection = collection
        self.settings = settings

    def run(
        self, files: list[Path], report: IngestReport, on_chunks: OnChunks, on_document: OnDocument, on_file: OnFile
    ) -> None:
        def progress(chunks: int, outcome: IngestOutcome | None) -> None:
            if chunks:
                on_chunks(chunks)
            if outcome is not None:
                report.add(outcome)
                on_document(outcome)

        for path in files:
            try:
                for _ in self.store.ingest(self._documents(path), self.collection, progress):
                    pass
            except DocumentError as exc:
                report.failures.append((str(path), str(exc)))
                on_file(path, str(exc))
                continue
            on_file(path, None)

    def _documents(self, path: Path) -> Iterator[SourceDocument]:
        return iter_file_documents(
            path, max_file_bytes=self.settings.max_upload_bytes, max_chars=self.settings.max_document_chars
        )


class RemoteIngest:
    """Files go up as uploads; record files (JSONL/Parquet) are read here and sent in batches,
    so a dump larger than the upload limit still goes through."""

    def __init__(
        self,
        url: str,
        collection: str | None,
        settings: RetrievalSettings,
        timeout_s: float = 600.0,
        api_key: str | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout_s, headers=headers, trust_env=False)
        self.collection = collection
        self.settings = settings

    def close(self) -> None:
        self.http.close()

    def run(
        self, files: list[Path], report: IngestReport, on_chunks: OnChunks, on_document: OnDocument, on_file: OnFile
    ) -> None:
        for path in files:
            try:
                if detect_type(path.name) in RECORD_TYPES:
                    self._send_records(path, report, on_chunks, on_document)
                else:
                    self._upload(path, report, on_chunks, on_document)
            except (DocumentError, IngestFailed) as exc:
                report.failures.append((str(path), str(exc)))
                on_file(path, str(exc))
                continue
            on_file(path, None)

    def _upload(self, path: Path, report: IngestReport, on_chunks: OnChunks, on_document: OnDocument) -> None:
        form = {"source": str(path.resolve())}
        if self.collection:
            form["collection"] = self.collection
        with path.open("rb") as handle:
            answer = self._post(files={"file": (path.name, handle)}, data=form)
        self._account(answer, report, on_chunks, on_document)

    def _send_records(self, path: Path, report: IngestReport, on_chunks: OnChunks, on_document: OnDocument) -> None:
        batch: list[dict[str, Any]] = []
        documents = iter_file_documents(
            path, max_file_bytes=self.settings.max_upload_bytes, max_chars=self.settings.max_document_chars
        )
        for document in documents:
            batch.append(
                {
                    "text": "\n\n".join(s.text for s in document.sections),
                    "title": document.title,
                    "source": document.source,
                    "url": document.url,
                }
            )
            if len(batch) >= RECORDS_PER_REQUEST:
                self._send_batch(batch, report, on_chunks, on_document)
                batch = []
        if batch:
            self._send_batch(batch, report, on_chunks, on_document)

    def _send_batch(
        self, batch: list[dict[str, Any]], report: IngestReport, on_chunks: OnChunks, on_document: OnDocument
    ) -> None:
        body: dict[str, Any] = {"documents": batch}
        if self.collection:
            body["collection"] = self.collection
        self._account(self._post(json=body), report, on_chunks, on_document)

    def _post(self, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self.http.post("/v1/documents", **kwargs)
        except httpx.HTTPError as exc:
            raise IngestFailed(f"the retrieval service at {self.http.base_url} is unreachable: {exc}") from exc
        if response.status_code != 200:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:300]
            raise IngestFailed(f"HTTP {response.status_code}: {message}")
        return dict(response.json())

    @staticmethod
    def _account(answer: dict[str, Any], report: IngestReport, on_chunks: OnChunks, on_document: OnDocument) -> None:
        for item in answer.get("data") or []:
            outcome = IngestOutcome(
                item["id"], item.get("source", ""), item.get("title", ""), item["status"], int(item.get("chunks") or 0)
            )
            report.add(outcome)
            if outcome.status != "unchanged":
                on_chunks(outcome.chunks)
            on_document(outcome)


def report_json(report: IngestReport) -> str:
    return json.dumps(
        {
            "created": report.created,
            "updated": report.updated,
            "unchanged": report.unchanged,
            "chunks": report.chunks,
            "failures": [{"path": p, "error": e} for p, e in report.failures],
        }
    )
