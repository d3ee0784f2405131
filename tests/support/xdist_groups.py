"""Which tests run together on one pytest-xdist worker (``make test`` runs two).

Tests that use a vLLM server fixture form one group per server, so each server starts once and
is shared; servers that one test uses together share a group. Every other test goes with its
module, so module-scoped processes start once too. Groups are scheduled whole, like xdist's
``--dist loadgroup``, whose own ``xdist_group`` marker no longer reaches the scheduler under
pytest 9 (it renames ``item._nodeid``, which node ids are no longer read from).

The groups come from each test's fixtures, which only the workers see (they collect; the
controller does not): each worker writes ``{nodeid: group}`` to a directory the controller made
(``GROUPS_DIR_ENV``, inherited by the workers), before it reports its collection, and the
controller's scheduler reads it when every worker has reported.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

GROUPS_DIR_ENV = "OPENCHATKIT_TEST_GROUPS_DIR"
VLLM_FIXTURES = ("chat_stack", "lora_vllm")


def groups_of(items: list[pytest.Item]) -> dict[str, str]:
    """``{nodeid: group}``: ``vllm:<fixtures>`` for tests that use a shared vLLM server, else the module."""
    uses = {item.nodeid: {f for f in VLLM_FIXTURES if f in getattr(item, "fixturenames", ())} for item in items}
    together: dict[str, set[str]] = {f: {f} for f in VLLM_FIXTURES}
    for used in uses.values():
        merged = set().union(*(together[f] for f in used)) if used else set()
        for fixture in merged:
            together[fixture] = merged
    return {
        nodeid: "vllm:" + "+".join(sorted(together[min(used)])) if used else nodeid.split("::")[0]
        for nodeid, used in uses.items()
    }


def heavy_groups(items: list[pytest.Item], groups: dict[str, str]) -> list[str]:
    """Groups that start or use a vLLM server (a test marked ``vllm``): scheduled first, so the
    long ones do not end the run alone on one worker."""
    return sorted({groups[item.nodeid] for item in items if item.get_closest_marker("vllm")})


def grouping(config: pytest.Config) -> bool:
    return config.pluginmanager.hasplugin("xdist") and config.getvalue("dist") == "loadgroup"


def prepare_controller(config: pytest.Config) -> None:
    """In the controller, before the workers start: the directory they write their groups to."""
    if not hasattr(config, "workerinput") and grouping(config):
        os.environ[GROUPS_DIR_ENV] = tempfile.mkdtemp(prefix="openchatkit-test-groups-")


def share_cores(config: pytest.Config) -> None:
    """In a worker: torch's threads for in-process work (training, classifiers) are this worker's
    share of the cores. Two workers each running torch on every core slow each other down ~10x
    (OpenMP threads spin while waiting); services the tests start keep their own settings."""
    workers = getattr(config, "workerinput", {}).get("workercount")
    if workers:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(workers)))


def finish_controller(config: pytest.Config) -> None:
    """In the controller, at the end: the groups' directory goes."""
    where = os.environ.get(GROUPS_DIR_ENV)
    if where and not hasattr(config, "workerinput"):
        shutil.rmtree(where, ignore_errors=True)


def record_groups(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a worker, after collection: its ``{nodeid: group}``, written whole (rename)."""
    where = os.environ.get(GROUPS_DIR_ENV)
    worker = getattr(config, "workerinput", {}).get("workerid")
    if where and worker:
        path = Path(where) / f"{worker}.json"
        staging = path.with_suffix(".tmp")
        groups = groups_of(items)
        staging.write_text(json.dumps({"groups": groups, "heavy": heavy_groups(items, groups)}))
        staging.replace(path)


def make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist's load-scope scheduling with our groups as the scopes (None: not grouping)."""
    if not grouping(config):
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):  # type: ignore[misc]
        recorded: dict[str, Any] | None = None
        ordered = False  # the work queue is put in our order once, before the first unit goes out

        def _recorded(self) -> dict[str, Any]:
            if self.recorded is None:
                self.recorded = {"groups": {}, "heavy": []}
                for path in Path(os.environ[GROUPS_DIR_ENV]).glob("*.json"):
                    found = json.loads(path.read_text())
                    self.recorded["groups"].update(found["groups"])
                    self.recorded["heavy"] += found["heavy"]
            return self.recorded

        def _split_scope(self, nodeid: str) -> str:
            return str(self._recorded()["groups"].get(nodeid, nodeid))

        def _assign_work_unit(self, node: Any) -> None:
            if not self.ordered:
                # The heavy groups first, then the larger first.
                heavy = set(self._recorded()["heavy"])
                units = sorted(self.workqueue.items(), key=lambda unit: (unit[0] not in heavy, -len(unit[1])))
                self.workqueue.clear()
                self.workqueue.update(units)
                self.ordered = True
            super()._assign_work_unit(node)

    return GroupScheduling(config, log)
