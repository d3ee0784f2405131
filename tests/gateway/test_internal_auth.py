"""The services behind the gateway answer only the gateway: vLLM started with an internal
key (``--api-key`` through VLLM_API_KEY), moderation and retrieval with the internal token.
Health, readiness and metrics stay open; the gateway, holding the secrets, works."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chat_server.config import ChatServerSettings
from chat_server.launch import build_vllm_launch
from chat_server.profiles import get_profile
from tests.conftest import CHAT_PROFILE, start_gateway
from tests.support.moderation import start_moderation, trained_classifier_dir
from tests.support.processes import ServiceProcess, free_port
from tests.support.retrieval import start_retrieval_server

SECRET = "internal-secret-for-tests"


def refuses_without_token(url: str, method: str, path: str, body: object) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        answer = httpx.request(method, url + path, json=body, headers=headers, timeout=60)
        assert answer.status_code == 401, (path, answer.text)
        assert answer.json()["error"]["type"] == "authentication_error"


def test_moderation_and_retrieval_want_the_internal_token(log_dir: Path, tmp_path: Path) -> None:
    moderation = start_moderation(log_dir, {
        "MODERATION_INTERNAL_TOKEN": SECRET,
        "MODERATION_ARTIFACT_DIR": str(trained_classifier_dir()),
        "MODERATION_TRAIN_IF_MISSING": "false",
    })  # fmt: skip
    retrieval = start_retrieval_server(log_dir, tmp_path / "retrieval", {"RETRIEVAL_INTERNAL_TOKEN": SECRET})
    token = {"Authorization": f"Bearer {SECRET}"}
    try:
        refuses_without_token(moderation.url, "POST", "/v1/classify", {"input": "hello"})
        refuses_without_token(moderation.url, "POST", "/v1/moderations", {"input": "hello"})
        ok = httpx.post(moderation.url + "/v1/classify", json={"input": "hello"}, headers=token, timeout=60)
        assert ok.status_code == 200 and ok.json()["results"][0]["label"]
        refuses_without_token(retrieval.url, "POST", "/v1/search", {"query": "hello"})
        refuses_without_token(retrieval.url, "POST", "/v1/documents", {"text": "x", "source": "x.txt"})
        refuses_without_token(retrieval.url, "GET", "/v1/documents", None)
        ok = httpx.post(retrieval.url + "/v1/search", json={"query": "hello"}, headers=token, timeout=60)
        assert ok.status_code == 200
        for service in (moderation.url, retrieval.url):
            for path in ("/health", "/ready", "/metrics"):
                assert httpx.get(service + path, timeout=30).status_code == 200
        # The gateway holds the token: moderation, document uploads and search through it
        # work for a key holder, and need a key.
        gateway = start_gateway(log_dir, [{"url": f"http://127.0.0.1:{free_port()}/v1"}], {
            "GATEWAY_INTERNAL_TOKEN": SECRET,
            "GATEWAY_MODERATION__ENABLED": "true",
            "GATEWAY_MODERATION__URL": moderation.url,
            "GATEWAY_RETRIEVAL__URL": retrieval.url,
        }, wait_ready=False)  # fmt: skip
        try:
            key = gateway.headers
            doc = {"text": "The staff canteen opens at 7:30.", "source": "canteen.txt"}
            assert httpx.post(gateway.url + "/v1/documents", json=doc, timeout=120).status_code == 401
            uploaded = httpx.post(gateway.url + "/v1/documents", json=doc, headers=key, timeout=120)
            assert uploaded.status_code == 200, uploaded.text
            found = httpx.post(gateway.url + "/v1/search", json={"query": "canteen hours"}, headers=key, timeout=60)
            assert found.status_code == 200 and found.json()["data"][0]["source"] == "canteen.txt"
            listed = httpx.get(gateway.url + "/v1/documents", params={"limit": 5}, headers=key, timeout=60)
            assert listed.status_code == 200 and len(listed.json()["data"]) == 1
            moderated = gateway.client().moderations.create(input="hello there")
            assert moderated.results[0].flagged is False
        finally:
            gateway.process.stop()
    finally:
        moderation.process.stop()
        retrieval.process.stop()


@pytest.fixture(scope="module")
def keyed_vllm(smollm2_dir: Path, log_dir: Path) -> Iterator[str]:
    """A second vLLM (the issue needs one started with an internal key), small KV cache."""
    port = free_port()
    settings = ChatServerSettings(
        port=port,
        profile=CHAT_PROFILE,
        kv_cache_space_gib=1,
        internal_token=SECRET,  # type: ignore[arg-type]
    )
    launch = build_vllm_launch(get_profile(CHAT_PROFILE), settings, str(smollm2_dir))
    assert SECRET not in " ".join(launch.argv)  # through the environment, not visible in `ps`
    process = ServiceProcess("vllm-keyed", launch.argv, launch.env, log_dir).start()
    try:
        process.wait_http(f"http://127.0.0.1:{port}/health", timeout=900)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


@pytest.mark.vllm
def test_vllm_refuses_requests_without_the_internal_key(keyed_vllm: str, log_dir: Path, smollm2_dir: Path) -> None:
    body = {"model": CHAT_PROFILE, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        assert (
            httpx.post(keyed_vllm + "/v1/chat/completions", json=body, headers=headers, timeout=60).status_code == 401
        )
        assert httpx.get(keyed_vllm + "/v1/models", headers=headers, timeout=60).status_code == 401
    assert httpx.get(keyed_vllm + "/health", timeout=30).status_code == 200
    upstream = {"url": keyed_vllm + "/v1", "api_key": SECRET, "tokenizer": str(smollm2_dir)}
    gateway = start_gateway(log_dir, [upstream])  # ready only once it could list vLLM's models with the key
    try:
        answer = gateway.client().chat.completions.create(
            model=CHAT_PROFILE, messages=[{"role": "user", "content": "Hi"}], max_tokens=2
        )
        assert answer.choices[0].message.content is not None
    finally:
        gateway.process.stop()
