"""``/v1/collections`` through the gateway: listed and deleted in the real retrieval service,
behind the gateway's API keys, with the service's errors relayed and deleting switchable off.
No chat model is needed, so these gateways point at a dead upstream."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Gateway, start_gateway
from tests.support.processes import free_port
from tests.support.retrieval import RetrievalServer, start_retrieval_server, unique_collection


@pytest.fixture(scope="module")
def retrieval(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RetrievalServer]:
    server = start_retrieval_server(log_dir, tmp_path_factory.mktemp("gateway-collections"))
    yield server
    server.process.stop()


@pytest.fixture(scope="module")
def gateway(log_dir: Path, retrieval: RetrievalServer) -> Iterator[Gateway]:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    started = start_gateway(log_dir, [{"url": dead}], {"GATEWAY_RETRIEVAL__URL": retrieval.url}, wait_ready=False)
    yield started
    started.process.stop()


def call(gateway: Gateway, method: str, path: str, auth: bool = True) -> httpx.Response:
    headers = {**(gateway.headers if auth else {}), "x-request-id": "req-collections-1"}
    return httpx.request(method, gateway.url + path, headers=headers, timeout=120)


def test_list_and_delete_through_the_gateway(gateway: Gateway, retrieval: RetrievalServer) -> None:
    name = unique_collection()
    retrieval.ingest_text("Skellan Head Lighthouse is banded red and white.", "lights/skellan.txt", collection=name)
    listed = call(gateway, "GET", "/v1/collections")
    assert listed.status_code == 200 and listed.headers["x-request-id"] == "req-collections-1"
    row = next(c for c in listed.json()["data"] if c["id"] == name)
    assert (row["object"], row["documents"], row["chunks"]) == ("collection", 1, 1)

    deleted = call(gateway, "DELETE", f"/v1/collections/{name}")
    assert deleted.status_code == 200 and deleted.json() == {"id": name, "object": "collection", "deleted": True}
    assert name not in {c["id"] for c in retrieval.get("/v1/collections").json()["data"]}
    missing = call(gateway, "DELETE", f"/v1/collections/{name}")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "collection_not_found"


def test_keys_reserved_names_and_read_only_gateways(
    log_dir: Path, gateway: Gateway, retrieval: RetrievalServer
) -> None:
    assert call(gateway, "GET", "/v1/collections", auth=False).status_code == 401
    reserved = call(gateway, "DELETE", "/v1/collections/documents__documents")
    assert reserved.status_code == 400 and reserved.json()["error"]["code"] == "reserved_collection_name"

    name = unique_collection()
    retrieval.ingest_text("Quellin Bakery bakes knotted cardamom buns.", "bakery/quellin.txt", collection=name)
    dead = f"http://127.0.0.1:{free_port()}/v1"
    read_only = start_gateway(
        log_dir,
        [{"url": dead}],
        {"GATEWAY_RETRIEVAL__URL": retrieval.url, "GATEWAY_RETRIEVAL__MANAGE_COLLECTIONS": "false"},
        wait_ready=False,
    )
    try:
        refused = call(read_only, "DELETE", f"/v1/collections/{name}")
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "collections_read_only"
        assert name in {c["id"] for c in call(read_only, "GET", "/v1/collections").json()["data"]}
    finally:
        read_only.process.stop()


def test_retrieval_down_is_a_503(log_dir: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    gateway = start_gateway(log_dir, [{"url": dead + "/v1"}], {"GATEWAY_RETRIEVAL__URL": dead}, wait_ready=False)
    try:
        answer = call(gateway, "GET", "/v1/collections")
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "upstream_unavailable"
    finally:
        gateway.process.stop()
