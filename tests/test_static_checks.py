"""The static checks run with the suite (so `make test` runs them): ruff (lint and format)
over the tree, and mypy over the packages with the config in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout_s, check=False
    )


def test_ruff_finds_nothing_to_fix() -> None:
    lint = _run("ruff", "check", ".", timeout_s=300)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    layout = _run("ruff", "format", "--check", ".", timeout_s=300)
    assert layout.returncode == 0, layout.stdout + layout.stderr


def test_mypy_passes_on_every_package() -> None:
    # The first run takes a minute or two on a busy 2-core machine (torch and friends are skipped:
    # pyproject.toml); later runs reuse .mypy_cache and take seconds.
    result = _run("mypy", timeout_s=1200)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout
