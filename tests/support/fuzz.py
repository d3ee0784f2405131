"""Schemathesis against a running service: every operation of its OpenAPI, with a fixed,
small example budget (derandomized, so a run is repeatable), positive and negative data.

Checks: no 5xx, every error body in the OpenAI shape, and responses that match their
documented schema and content type. Returns the failures as readable lines."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

EXAMPLES_PER_OPERATION = 12
logger = logging.getLogger(__name__)


@schemathesis.check
def openai_error_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    """Error answers are ``{"error": {"message", "type", "param", "code"}}``."""
    if response.status_code < 400:
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        raise AssertionError(f"error body is not JSON: {response.content[:200]!r}") from None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or not {"message", "type", "param", "code"} <= set(error):
        raise AssertionError(f"error body is not in the OpenAI shape: {response.content[:200]!r}")
    if not isinstance(error["message"], str) or not error["message"]:
        raise AssertionError("error message is empty")
    return None


CHECKS = [not_a_server_error, openai_error_shape, response_schema_conformance, content_type_conformance]


def fuzz(
    base_url: str,
    headers: dict[str, str] | None = None,
    skip_paths: Iterable[str] = (),
    examples: int = EXAMPLES_PER_OPERATION,
) -> tuple[int, list[str]]:
    """(cases sent, failures) for every operation of ``base_url``/openapi.json."""
    schema = schemathesis.openapi.from_url(base_url + "/openapi.json", headers=headers or {})
    skipped = set(skip_paths)
    failures: list[str] = []
    sent = [0]
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path in skipped:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=examples,
                derandomize=True,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def run(case: Any) -> None:
                sent[0] += 1
                try:
                    case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, timeout=120)
                except AssertionError:
                    raise
                except Exception as exc:  # schemathesis's FailureGroup and friends
                    raise AssertionError(str(exc)) from exc

            started = time.monotonic()
            try:
                run()
            except Unsatisfiable:
                continue  # nothing to make invalid (an operation without parameters or body)
            except AssertionError as exc:
                failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}): {exc}"[:2000])
            finally:
                took = time.monotonic() - started
                logger.info("fuzzed %s %s (%s) in %.1fs", operation.method.upper(), operation.path, mode.value, took)
    return sent[0], failures
