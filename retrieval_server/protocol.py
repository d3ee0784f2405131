"""Request and response bodies of the retrieval API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from retrieval_server.config import COLLECTION_PATTERN

DOCUMENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
FILTER_FIELDS = ("document_id", "source", "file_name", "type", "tags", "url")

MetadataValue = str | int | float | bool


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DocumentIn(Strict):
    text: str = Field(min_length=1)
    title: str | None = Field(default=None, max_length=1000)
    source: str | None = Field(
        default=None, min_length=1, max_length=2000, description="Where it came from; the document id derives from it."
    )
    url: str | None = Field(default=None, max_length=2000)
    id: str | None = Field(default=None, pattern=DOCUMENT_ID_PATTERN, description="Overrides the derived id.")
    format: Literal["txt", "md", "html"] = "txt"
    tags: list[str] = Field(default_factory=list, max_length=32)
    metadata: dict[str, MetadataValue] = Field(default_factory=dict, max_length=32)

    @field_validator("text")
    @classmethod
    def _has_text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text must not be blank")
        return value


class IngestRequest(Strict):
    documents: list[DocumentIn] = Field(min_length=1)
    collection: str | None = Field(default=None, pattern=COLLECTION_PATTERN)


class SearchRequest(Strict):
    query: str = Field(min_length=1, max_length=4000)
    top_k: int = Field(default=4, ge=1)
    filter: dict[str, str | list[str]] | None = None
    sources: list[str] | None = Field(default=None, min_length=1, max_length=16)
    collection: str | None = Field(default=None, pattern=COLLECTION_PATTERN)
    widen: bool = Field(default=False, description="Join neighbouring chunks of the top hit (OpenChatKit style).")
    widen_min_similarity: float | None = Field(default=None, ge=-1, le=1)

    @field_validator("query")
    @classmethod
    def _has_words(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query must not be blank")
        return value

    @field_validator("filter")
    @classmethod
    def _known_fields(cls, value: dict[str, str | list[str]] | None) -> dict[str, str | list[str]] | None:
        for name, wanted in (value or {}).items():
            if name not in FILTER_FIELDS:
                raise ValueError(f"cannot filter on '{name}'; filterable fields: {', '.join(FILTER_FIELDS)}")
            if isinstance(wanted, list) and not 1 <= len(wanted) <= 100:
                raise ValueError(f"filter '{name}' needs 1 to 100 values")
        return value


class DocumentOut(BaseModel):
    id: str
    object: Literal["document"] = "document"
    title: str
    source: str
    status: str
    chunks: int
    url: str | None = None
    type: str | None = None
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    content_hash: str | None = None
    created_at: float | None = None
    updated_at: float | None = None

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> DocumentOut:
        return cls(
            id=record["document_id"],
            title=record.get("title") or "",
            source=record.get("source") or "",
            status=record.get("status") or "ready",
            chunks=int(record.get("chunks") or 0),
            url=record.get("url"),
            type=record.get("type"),
            tags=record.get("tags") or [],
            metadata=record.get("metadata") or {},
            content_hash=record.get("content_hash"),
            created_at=record.get("created_at"),
            updated_at=record.get("updated_at"),
        )
