"""The durable store: turns and feedback, SQLite by default or PostgreSQL by URL."""

from feedback_server.store.turns_and_feedback import ExportRow, FeedbackStore, StoreUnavailable

__all__ = ["ExportRow", "FeedbackStore", "StoreUnavailable"]
