"""``python -m feedback_server``: the feedback API on :8004 (``FEEDBACK_WORKERS`` processes)."""

from feedback_server.app import build_app
from feedback_server.config import FeedbackSettings
from services.server import run_service


def main() -> None:
    settings = FeedbackSettings()
    run_service("feedback", settings, build_app, "feedback_server.app:create_app", settings.workers)


if __name__ == "__main__":
    main()
