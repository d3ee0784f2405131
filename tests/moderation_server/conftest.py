from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.moderation import ModerationService, start_moderation, trained_classifier_dir

MAX_CHARS = 2000
MAX_INPUTS = 32


@pytest.fixture(scope="session")
def classifier_dir() -> Path:
    return trained_classifier_dir()


@pytest.fixture(scope="module")
def moderation(classifier_dir: Path, log_dir: Path) -> Iterator[ModerationService]:
    service = start_moderation(
        log_dir,
        {
            "MODERATION_ARTIFACT_DIR": str(classifier_dir),
            "MODERATION_TRAIN_IF_MISSING": "false",
            "MODERATION_MAX_CHARS": str(MAX_CHARS),
            "MODERATION_MAX_INPUTS": str(MAX_INPUTS),
        },
    )
    yield service
    service.process.stop()
