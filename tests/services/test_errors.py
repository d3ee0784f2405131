"""One error type, rendered as OpenAI error JSON with the right status."""

from __future__ import annotations

import json

from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from services.app import create_service_app
from services.errors import (
    BadRequestError,
    NotFoundError,
    ServiceUnavailableError,
    error_for_status,
    from_upstream_body,
    sse_error,
)


class Body(BaseModel):
    name: str
    count: int


def build() -> FastAPI:
    app = create_service_app("test")

    @app.get("/missing")
    async def missing() -> None:
        raise NotFoundError("no such thing", param="id", code="not_found")

    @app.get("/down")
    async def down() -> None:
        raise ServiceUnavailableError("the store is down")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    @app.post("/typed")
    async def typed(body: Body) -> Body:
        return body

    return app


client = TestClient(build(), raise_server_exceptions=False)


def error_of(response) -> dict:  # type: ignore[no-untyped-def]
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_raised_errors_keep_status_type_and_param() -> None:
    response = client.get("/missing")
    assert response.status_code == 404
    assert error_of(response) == {
        "message": "no such thing",
        "type": "not_found_error",
        "param": "id",
        "code": "not_found",
    }
    assert client.get("/down").status_code == 503


def test_unexpected_errors_are_500_without_internals() -> None:
    response = client.get("/boom")
    assert response.status_code == 500
    assert "secret" not in error_of(response)["message"]


def test_validation_errors_are_400_not_422() -> None:
    response = client.post("/typed", json={"name": "x", "count": "many"})
    assert response.status_code == 400
    error = error_of(response)
    assert error["type"] == "invalid_request_error" and error["param"] == "count"
    broken = client.post("/typed", content=b"{nope", headers={"content-type": "application/json"})
    assert broken.status_code == 400 and "JSON" in error_of(broken)["message"]


def test_unknown_routes_and_methods_are_openai_errors() -> None:
    assert client.get("/nowhere").status_code == 404 and error_of(client.get("/nowhere"))["type"] == "not_found_error"
    assert client.get("/typed").status_code == 405


def test_request_id_is_echoed_or_made() -> None:
    assert client.get("/health", headers={"X-Request-Id": "abc"}).headers["x-request-id"] == "abc"
    assert len(client.get("/health").headers["x-request-id"]) == 32


def test_upstream_errors_keep_their_status_and_message() -> None:
    upstream = json.dumps({"error": {"message": "bad top_k", "type": "BadRequestError", "param": "top_k", "code": 400}})
    error = from_upstream_body(400, upstream.encode())
    assert isinstance(error, BadRequestError) and error.message == "bad top_k" and error.param == "top_k"
    assert from_upstream_body(500, b"<html>oops</html>").status_code == 500
    assert error_for_status(422, "x").status_code == 400


def test_stream_errors_are_an_sse_event_then_done() -> None:
    payload = sse_error(ServiceUnavailableError("gone")).decode()
    first, second = payload.strip().split("\n\n")
    assert json.loads(first.removeprefix("data: "))["error"]["message"] == "gone"
    assert second == "data: [DONE]"


def test_vllm_validation_dumps_become_one_clear_sentence() -> None:
    from services.errors import from_upstream_body

    dict_dump = (
        "1 validation error:\n  {'type': 'int_parsing_size', 'loc': 'body.seed', 'msg': 'Unable to parse input "
        "string as an integer, exceeded maximum size', 'input': '1e+30'}"
    )
    body = json.dumps({"error": {"message": dict_dump, "type": "Bad Request", "param": "body.seed", "code": 400}})
    error = from_upstream_body(400, body.encode()).to_dict()["error"]
    assert error == {
        "message": "Invalid request at 'seed': Unable to parse input string as an integer, exceeded maximum size.",
        "type": "invalid_request_error",
        "param": "seed",
        "code": None,
    }
    pydantic_dump = (
        "7 validation errors for ValidatorIterator\n0.ChatCompletionContentPartTextParam.type\n  Input should be "
        "'text' [type=literal_error, input_value='foo', input_type=str]\n    For further information visit x"
    )
    body = json.dumps({"error": {"message": pydantic_dump, "type": "BadRequestError", "param": None, "code": 400}})
    error = from_upstream_body(400, body.encode()).to_dict()["error"]
    assert error["message"] == "Invalid request at '0.type': Input should be 'text'."
    assert "input_value" not in error["message"] and error["code"] is None
    plain = json.dumps({"error": {"message": "not a multimodal model", "type": "BadRequestError", "code": 400}})
    assert from_upstream_body(400, plain.encode()).to_dict()["error"]["message"] == "not a multimodal model"


def test_an_unhandled_error_is_one_openai_500_and_one_logged_traceback(caplog) -> None:  # type: ignore[no-untyped-def]
    app = create_service_app("test")

    @app.get("/boom")
    async def boom() -> None:
        raise RecursionError("deep")

    with caplog.at_level("INFO"), TestClient(app, raise_server_exceptions=True) as client:
        answer = client.get("/boom")
        assert client.get("/health").status_code == 200  # the app still serves
    assert answer.status_code == 500
    assert answer.json() == {
        "error": {
            "message": "The server had an error while processing your request.",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1 and "RecursionError" in caplog.text


def test_405_is_a_client_error() -> None:
    app = create_service_app("test")

    @app.post("/v1/thing")
    async def thing() -> dict[str, str]:
        return {}

    with TestClient(app) as client:
        answer = client.options("/v1/thing")
    assert answer.status_code == 405
    assert answer.json()["error"]["type"] == "invalid_request_error"
