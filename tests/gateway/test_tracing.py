"""OpenTelemetry: with OTEL_EXPORTER_OTLP_ENDPOINT set, the gateway exports a server span per
request and a client span per outbound call in the same trace, and sends ``traceparent`` on."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import start_gateway
from tests.support.feedback import wait_until
from tests.support.otlp import OtlpReceiver
from tests.support.replicas import InstantReplica

MODEL = "traced-model"


def test_a_chat_turn_is_one_trace_exported_over_otlp(log_dir: Path) -> None:
    replica = InstantReplica("a", MODEL, log_dir).start()
    with OtlpReceiver() as receiver:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"}
        gateway = start_gateway(log_dir, [{"url": replica.v1}], env)
        try:
            answer = httpx.post(
                gateway.url + "/v1/chat/completions",
                json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
                headers=gateway.headers,
                timeout=120,
            )
            assert answer.status_code == 200, answer.text

            def turn_spans() -> list[dict[str, object]]:
                spans = receiver.snapshot()
                server = [s for s in spans if s["name"] == "POST /v1/chat/completions"]
                if not server:
                    return []
                return [s for s in spans if s["trace_id"] == server[0]["trace_id"]]

            wait_until(lambda: len(turn_spans()) >= 2, 60, "the turn's spans to be exported")
        finally:
            gateway.process.stop()
            replica.stop()
    spans = turn_spans()
    server = next(s for s in spans if s["name"] == "POST /v1/chat/completions")
    client = next(s for s in spans if s["name"] == "POST /chat/completions")
    assert server["service"] == client["service"] == "gateway"
    assert client["parent_id"] == server["span_id"]  # the upstream call sits inside the request's span
    assert server["kind"] == 2 and client["kind"] == 3  # SERVER, CLIENT
    # traceparent went on to the upstream (vLLM joins the trace with --otlp-traces-endpoint)
    assert f"00-{server['trace_id']}-{client['span_id']}-" in replica.process.log_path.read_text()  # type: ignore[union-attr]
