"""Entry point of the ``openchatkit`` console script."""

from __future__ import annotations

# Each module registers its commands on the apps in openchatkit.apps.
from openchatkit.apps import app
from openchatkit.commands import bench_gateway as _bench_gateway  # noqa: F401
from openchatkit.commands import chat as _chat  # noqa: F401
from openchatkit.commands import feedback as _feedback  # noqa: F401  (feedback export, bench feedback)
from openchatkit.commands import finetune_chat as _finetune_chat  # noqa: F401
from openchatkit.commands import models as _models  # noqa: F401
from openchatkit.commands import moderation as _moderation  # noqa: F401  (finetune/eval/bench moderation)
from openchatkit.commands import retrieval as _retrieval  # noqa: F401  (ingest, eval/bench retrieval)
from openchatkit.commands import run as _run  # noqa: F401

__all__ = ["app", "main"]


def main() -> None:
    app()


if __name__ == "__main__":
    main()
