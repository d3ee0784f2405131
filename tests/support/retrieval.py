"""Real retrieval services for tests: the server process, a live JSON source, and files
(a minimal but valid PDF) to ingest."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.processes import ServiceProcess, free_port


def unique_collection(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@dataclass
class RetrievalServer:
    url: str
    data_dir: Path
    collection: str
    process: ServiceProcess
    env: dict[str, str]

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.post(self.url + path, timeout=120, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(self.url + path, timeout=60, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.delete(self.url + path, timeout=60, **kwargs)

    def ingest_text(self, text: str, source: str, **fields: Any) -> dict[str, Any]:
        answer = self.post("/v1/documents", json={"text": text, "source": source, **fields})
        assert answer.status_code == 200, answer.text
        return dict(answer.json()["data"][0])

    def search(self, query: str, **fields: Any) -> dict[str, Any]:
        answer = self.post("/v1/search", json={"query": query, **fields})
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def documents(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        after = None
        while True:
            params = {"limit": 100, **({"after": after} if after else {})}
            page = self.get("/v1/documents", params=params).json()
            out += page["data"]
            if not page["has_more"]:
                return out
            after = page["last_id"]


def start_retrieval_server(
    log_dir: Path, data_dir: Path, env: dict[str, str] | None = None, collection: str | None = None
) -> RetrievalServer:
    port = free_port()
    name = collection or unique_collection()
    full_env = {
        "RETRIEVAL_PORT": str(port),
        "RETRIEVAL_DATA_DIR": str(data_dir),
        "RETRIEVAL_COLLECTION": name,
        "RETRIEVAL_LOG_JSON": "false",
        **(env or {}),
    }
    process = ServiceProcess.module("retrieval", "retrieval_server", full_env, log_dir).start()
    server = RetrievalServer(f"http://127.0.0.1:{port}", data_dir, name, process, full_env)
    process.wait_http(server.url + "/ready", timeout=180)
    return server


def restart(server: RetrievalServer, log_dir: Path) -> RetrievalServer:
    """The same service (same data, port and settings) started again."""
    process = ServiceProcess.module("retrieval", "retrieval_server", server.env, log_dir).start()
    process.wait_http(server.url + "/ready", timeout=180)
    return RetrievalServer(server.url, server.data_dir, server.collection, process, server.env)


def start_json_source(log_dir: Path) -> tuple[str, ServiceProcess]:
    port = free_port()
    process = ServiceProcess.module("json-source", "tests.support.json_search_server", {}, log_dir)
    process.argv.append(str(port))
    process.start()
    url = f"http://127.0.0.1:{port}"
    process.wait_http(url + "/health", timeout=120)
    return url, process


def minimal_pdf(pages: list[str], title: str | None = None) -> bytes:
    """A valid PDF with one line of Helvetica text per page (what pypdf extracts)."""
    objects: list[bytes] = []
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(len(pages)))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    font_id = 3 + 2 * len(pages)
    for i, text in enumerate(pages):
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        stream = f"BT /F1 11 Tf 40 760 Td ({escaped}) Tj ET".encode()
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
            f"/Resources << /Font << /F1 {font_id} 0 R >> >> >>".encode()
        )
        objects.append(b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    info_ref = ""
    if title:
        objects.append(f"<< /Title ({title}) >>".encode())
        info_ref = f" /Info {len(objects)} 0 R"
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R{info_ref} >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def jsonl(records: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()
