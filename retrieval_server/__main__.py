"""``python -m retrieval_server``: the retrieval API on RETRIEVAL_HOST:RETRIEVAL_PORT (default :8003)."""

from __future__ import annotations

from retrieval_server.app import build_app
from retrieval_server.config import RetrievalSettings
from services.server import serve


def main() -> None:
    settings = RetrievalSettings()
    serve(build_app(settings), settings, "retrieval")


if __name__ == "__main__":
    main()
