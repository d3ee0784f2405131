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
    """``{nodeid: group}``: ``vllm:<fixtures>`` for tests that use a vLLM server, else the module."""
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


def grouping(config: pytest.Config) -> bool:
    return config.pluginmanager.hasplugin("xdist") and config.getvalue("dist") == "loadgroup"


def prepare_controller(config: pytest.Config) -> None:
    """In the controller, before the workers start: the directory they write their groups to."""
    if not hasattr(config, "workerinput") and grouping(config):
        os.environ[GROUPS_DIR_ENV] = tempfile.mkdtemp(prefix="openchatkit-test-groups-")


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
        staging.write_text(json.dumps(groups_of(items)))
        staging.replace(path)


def make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist's load-scope scheduling with our groups as the scopes (None: not grouping)."""
    if not grouping(config):
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):  # type: ignore[misc]
        groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:
                self.groups = {}
                for path in Path(os.environ[GROUPS_DIR_ENV]).glob("*.json"):
                    self.groups.update(json.loads(path.read_text()))
            return self.groups.get(nodeid, nodeid)

    return GroupScheduling(config, log)
