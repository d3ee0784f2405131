"""aiohttp failures become our upstream errors, against real sockets."""

from __future__ import annotations

import socket

import pytest

from services.errors import ServiceUnavailableError, UpstreamTimeoutError
from services.http import build_aiohttp_session, map_aiohttp_errors


async def test_a_refused_connection_is_unavailable() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with build_aiohttp_session(timeout=5) as session:
        with pytest.raises(ServiceUnavailableError) as caught, map_aiohttp_errors("the chat model"):
            await session.get(f"http://127.0.0.1:{port}/v1/models")
    assert caught.value.code == "upstream_unavailable"


async def test_a_server_that_never_answers_times_out() -> None:
    with socket.socket() as silent:  # accepts the connection, never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        async with build_aiohttp_session(timeout=0.2) as session:
            with pytest.raises(UpstreamTimeoutError) as caught, map_aiohttp_errors("the chat model"):
                await session.get(f"http://127.0.0.1:{port}/v1/models")
    assert caught.value.code == "upstream_timeout"
