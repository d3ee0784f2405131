"""``/v1/documents`` through the gateway (what the web page's Documents view uses): uploads
streamed to the real retrieval service, list, delete, the key check and the size limit.
No chat model is needed: the gateway is started in front of an unreachable upstream."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Gateway, start_gateway
from tests.support.processes import free_port
from tests.support.retrieval import RetrievalServer, jsonl, minimal_pdf, start_retrieval_server


@pytest.fixture(scope="module")
def retrieval(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RetrievalServer]:
    server = start_retrieval_server(log_dir, tmp_path_factory.mktemp("gateway-documents"))
    yield server
    server.process.stop()


@pytest.fixture(scope="module")
def gateway(log_dir: Path, retrieval: RetrievalServer) -> Iterator[Gateway]:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    env = {"GATEWAY_RETRIEVAL__URL": retrieval.url, "GATEWAY_MAX_UPLOAD_BYTES": str(64 * 1024)}
    started = start_gateway(log_dir, [{"url": dead}], env, wait_ready=False)
    yield started
    started.process.stop()


def test_upload_list_and_delete_through_the_gateway(gateway: Gateway, retrieval: RetrievalServer) -> None:
    files = [
        ("file", ("notes.md", b"# Quay notes\n\nThe Velmar quay opens at dawn.", "text/markdown")),
        ("file", ("guide.pdf", minimal_pdf(["The Velmar ferry sails at noon."]), "application/pdf")),
        ("file", ("faq.jsonl", jsonl([{"text": "Velmar tickets cost 4 crowns.", "title": "Tickets"}]), "text/plain")),
    ]
    answer = httpx.post(gateway.url + "/v1/documents", files=files, headers=gateway.headers, timeout=120)
    assert answer.status_code == 200, answer.text
    added = answer.json()["data"]
    assert {d["status"] for d in added} == {"created"} and all(d["chunks"] >= 1 for d in added)

    listed = httpx.get(gateway.url + "/v1/documents", params={"limit": 100}, headers=gateway.headers, timeout=30)
    assert listed.status_code == 200
    ids = {d["id"] for d in listed.json()["data"]}
    assert {d["id"] for d in added} <= ids

    gone = added[0]["id"]
    deleted = httpx.delete(f"{gateway.url}/v1/documents/{gone}", headers=gateway.headers, timeout=30)
    assert deleted.status_code == 200 and deleted.json() == {"id": gone, "object": "document", "deleted": True}
    assert gone not in {d["id"] for d in retrieval.documents()}
    again = httpx.delete(f"{gateway.url}/v1/documents/{gone}", headers=gateway.headers, timeout=30)
    assert again.status_code == 404 and again.json()["error"]["type"]


def test_documents_need_the_api_key(gateway: Gateway) -> None:
    for method, path in [("GET", "/v1/documents"), ("POST", "/v1/documents"), ("DELETE", "/v1/documents/x")]:
        answer = httpx.request(method, gateway.url + path, timeout=30)
        assert answer.status_code == 401, (method, path)
        assert answer.json()["error"]["code"] == "missing_api_key"
    wrong = httpx.get(gateway.url + "/v1/documents", headers={"Authorization": "Bearer sk-wrong"}, timeout=30)
    assert wrong.status_code == 401


def test_uploads_over_the_limit_and_bad_files_are_refused(gateway: Gateway) -> None:
    big = ("file", ("big.txt", b"x" * (70 * 1024), "text/plain"))
    answer = httpx.post(gateway.url + "/v1/documents", files=[big], headers=gateway.headers, timeout=60)
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "upload_too_large"

    # A chunked upload (no Content-Length) is counted as it streams through.
    def body() -> Iterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.txt"\r\n\r\n'
        for _ in range(80):
            yield b"y" * 1024
        yield b"\r\n--b--\r\n"

    headers = {**gateway.headers, "Content-Type": "multipart/form-data; boundary=b"}
    chunked = httpx.post(gateway.url + "/v1/documents", content=body(), headers=headers, timeout=60)
    assert chunked.status_code == 413, chunked.text
    odd = ("file", ("tool.exe", b"MZ\x90\x00", "application/octet-stream"))
    refused = httpx.post(gateway.url + "/v1/documents", files=[odd], headers=gateway.headers, timeout=60)
    assert refused.status_code in (400, 415), refused.text
    assert json.loads(refused.text)["error"]["message"]


def test_retrieval_service_down_is_a_503(log_dir: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    env = {"GATEWAY_RETRIEVAL__URL": dead}
    gateway = start_gateway(log_dir, [{"url": dead + "/v1"}], env, wait_ready=False)
    try:
        answer = httpx.get(gateway.url + "/v1/documents", headers=gateway.headers, timeout=30)
        assert answer.status_code == 503
        assert answer.json()["error"]["code"] == "upstream_unavailable"
    finally:
        gateway.process.stop()
