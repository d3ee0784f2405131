"""Real services the gateway tests put behind the gateway."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.moderation import ModerationService, start_moderation, trained_classifier_dir


@pytest.fixture(scope="module")
def moderation(log_dir: Path) -> Iterator[ModerationService]:
    """The moderation service with the trained CPU classifier, one per test module."""
    service = start_moderation(
        log_dir, {"MODERATION_ARTIFACT_DIR": str(trained_classifier_dir()), "MODERATION_TRAIN_IF_MISSING": "false"}
    )
    yield service
    service.process.stop()
