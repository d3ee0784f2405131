"""Entry point of the ``openchatkit`` console script."""

from __future__ import annotations

# Each module registers its commands on the apps in openchatkit.apps.
from openchatkit.apps import app
from openchatkit.bench import cli as _bench  # noqa: F401  (every `bench` command)
from openchatkit.commands import adapters as _adapters  # noqa: F401  (adapters load/unload/list/promote/rollback)
from openchatkit.commands import chat as _chat  # noqa: F401
from openchatkit.commands import eval_chat as _eval_chat  # noqa: F401  (eval chat)
from openchatkit.commands import feedback as _feedback  # noqa: F401  (feedback export)
from openchatkit.commands import finetune_chat as _finetune_chat  # noqa: F401
from openchatkit.commands import keys as _keys  # noqa: F401  (keys create/list/revoke/rotate)
from openchatkit.commands import learn as _learn  # noqa: F401  (learn: feedback -> adapter -> promoted)
from openchatkit.commands import models as _models  # noqa: F401
from openchatkit.commands import moderation as _moderation  # noqa: F401  (finetune/eval moderation)
from openchatkit.commands import retrieval as _retrieval  # noqa: F401  (ingest, eval retrieval)
from openchatkit.commands import run as _run  # noqa: F401

__all__ = ["app", "main"]


def main() -> None:
    app()


if __name__ == "__main__":
    main()
