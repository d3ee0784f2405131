"""``python -m feedback_server``: the feedback API on :8004."""

from feedback_server.app import build_app
from feedback_server.config import FeedbackSettings
from services.server import serve


def main() -> None:
    settings = FeedbackSettings()
    if settings.workers == 1:
        serve(build_app(settings), settings, "feedback")
        return
    import uvicorn

    from services.logging import configure_logging

    configure_logging("feedback", settings.log_level, settings.log_json)
    uvicorn.run(
        "feedback_server.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
