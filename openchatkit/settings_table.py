"""The one table of environment variables: generated from the settings classes, so
``make run``, docker compose and the Helm chart are documented once (docs/settings.md).

    python -m openchatkit.settings_table --write   # regenerate docs/settings.md
    python -m openchatkit.settings_table --check   # exit 1 when docs/settings.md is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from services.settings import UnderDataDir

DOC = Path(__file__).resolve().parents[1] / "docs" / "settings.md"
MAX_DEFAULT_CHARS = 60

# Variables the deployments set that no settings class reads: vLLM's, Hugging Face's, the OS's,
# and the ones reserved for the gateway's internal token and admin API.
OTHER_VARIABLES = {
    "VLLM_API_KEY": "vLLM's --api-key, read from the environment by the model servers (compose, Helm).",
    "HF_TOKEN": "Hugging Face token for gated or private weights (GPU model servers).",
    "HF_HOME": "Hugging Face cache (the model-cache volume of the chart's model servers).",
    "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "vLLM's runtime LoRA API (load/unload adapters without a restart), set by "
    "the chat server on the chat model (compose, Helm); only the gateway and the CLI reach it.",
    "VLLM_CACHE_ROOT": "vLLM's cache, torch.compile kernels included (a volume: later starts skip the compile).",
    "PROMETHEUS_MULTIPROC_DIR": "Where a service run with several workers keeps its metrics samples (emptied at start; "
    "default: a fresh temporary directory), so /metrics sums every worker.",
    "HOME": "The home directory (the images set /tmp: their root filesystem is read-only).",
}


def settings_classes() -> list[tuple[str, type[BaseSettings]]]:
    """(what it configures, class), in the order of the table."""
    from chat_server.config import ChatServerSettings
    from feedback_server.config import FeedbackSettings
    from gateway.config import GatewaySettings
    from moderation_server.config import ModerationSettings
    from openchatkit.stack import StackSettings
    from retrieval_server.config import RetrievalSettings

    return [
        ("gateway (`python -m gateway`)", GatewaySettings),
        ("chat model server (`python -m chat_server`)", ChatServerSettings),
        ("moderation (`python -m moderation_server`)", ModerationSettings),
        ("retrieval (`python -m retrieval_server`)", RetrievalSettings),
        ("feedback API and worker (`python -m feedback_server`, `feedback_server.worker`)", FeedbackSettings),
        ("`openchatkit run` (the whole stack on one machine)", StackSettings),
    ]


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    text = text or str(annotation).replace("typing.", "")
    for noise in ("pathlib.", "pydantic.types.", "services.moderation_labels.", "retrieval_server.config.",
                  "gateway.config.", "gateway.retrieval.", "gateway.moderation.", "<class '", "'>"):  # fmt: skip
        text = text.replace(noise, "")
    return text


def _default(field: FieldInfo) -> str:
    if isinstance(field.default_factory, UnderDataDir):
        return str(field.default_factory)  # "<data_dir>/models": it moves with the data dir
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", exclude_defaults=True)
    if isinstance(value, list):
        value = [
            item.model_dump(mode="json", exclude_defaults=True) if isinstance(item, BaseModel) else item
            for item in value
        ]
    text = str(value) if isinstance(value, str | Path) else json.dumps(value, default=str)
    text = text.replace(str(Path.home()), "~")
    if "site-packages" in text:
        return "(from its installed package)"
    text = text.replace("\n", " ")
    return text if len(text) <= MAX_DEFAULT_CHARS else text[: MAX_DEFAULT_CHARS - 1] + "\u2026"


def env_rows(cls: type[BaseSettings]) -> Iterator[tuple[str, str, str, str]]:
    """(variable, type, default, description) per field; nested models also per sub-field."""
    prefix = str(cls.model_config.get("env_prefix", "")).upper()
    for name, field in cls.model_fields.items():
        variable = f"{prefix}{name.upper()}"
        annotation = field.annotation
        nested = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        kind = "JSON object" if nested else _type_name(annotation)
        yield variable, kind, "" if nested else _default(field), field.description or ""
        if nested:
            for sub_name, sub_field in annotation.model_fields.items():  # type: ignore[union-attr]
                yield (
                    f"{variable}__{sub_name.upper()}",
                    _type_name(sub_field.annotation),
                    _default(sub_field),
                    sub_field.description or "",
                )


def env_names() -> set[str]:
    """Every variable the settings classes read."""
    return {row[0] for _, cls in settings_classes() for row in env_rows(cls)}


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render() -> str:
    lines = [
        "# Settings",
        "",
        "<!-- Generated by `python -m openchatkit.settings_table --write` from the settings classes; do not edit. -->",
        "",
        "The same environment variables configure `make run`, docker compose (`docker-compose.yml`)",
        "and the Helm chart (`k8s/openchatkit`, each component's `env`). Lists and objects are JSON;",
        "a nested field can also be set alone with `__` (e.g. `GATEWAY_MODERATION__FAIL_MODE=open`).",
        "",
    ]
    for title, cls in settings_classes():
        lines += [f"## {title}", "", "| variable | type | default | description |", "| --- | --- | --- | --- |"]
        for variable, kind, default, description in env_rows(cls):
            default_cell = f"`{_cell(default)}`" if default else ""
            lines.append(f"| `{variable}` | {_cell(kind)} | {default_cell} | {_cell(description)} |")
        lines.append("")
    lines += ["## Read by other programs, or reserved", "", "| variable | description |", "| --- | --- |"]
    lines += [f"| `{name}` | {_cell(description)} |" for name, description in OTHER_VARIABLES.items()]
    lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description="Generate docs/settings.md from the settings classes.")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true", help="Write docs/settings.md.")
    group.add_argument("--check", action="store_true", help="Exit 1 when docs/settings.md differs.")
    args = parser.parse_args()
    text = render()
    if args.write:
        DOC.parent.mkdir(parents=True, exist_ok=True)
        DOC.write_text(text)
    elif args.check:
        if not DOC.is_file() or DOC.read_text() != text:
            print(f"{DOC} is stale: run python -m openchatkit.settings_table --write", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
