"""A fine-tuning recipe's settings: one YAML file under ``training/configs/``, CLI flags on top.

The same fields describe a LoRA run of SmolLM2 on this CPU and a DeepSpeed ZeRO-3 run of
GPT-NeoXT-Chat-Base-20B on eight GPUs; only the file changes. Field names follow
``transformers.TrainingArguments`` / TRL where one exists (``learning_rate``,
``gradient_accumulation_steps``, ``max_length``, ``beta``, ``save_steps``...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

CONFIGS_DIR = Path(__file__).parent / "configs"

Objective = Literal["sft", "dpo", "kto"]

# Attention (and output) projections per architecture, for LoRA.
LORA_TARGETS = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "gpt_neox": ["query_key_value", "dense"],
    "gptj": ["q_proj", "k_proj", "v_proj", "out_proj"],
}


class LoraSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    r: int = Field(default=8, ge=1)
    alpha: int = Field(default=16, ge=1)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] | None = Field(default=None, description="None: LORA_TARGETS of the architecture.")


class RecipeConfig(BaseModel):
    """One fine-tuning run. ``data`` is ``path:weight,...`` of JSONL files (see training.data)."""

    model_config = ConfigDict(extra="forbid")

    objective: Objective = "sft"
    profile: str = Field(
        default="smollm2-135m-instruct",
        description="The chat_server profile that will serve the result: its chat template is the training format.",
    )
    base_model: str | None = Field(default=None, description="Model directory or hub id; None: the profile's.")
    data: str | None = None
    output_dir: Path | None = None
    method: Literal["lora", "full"] = "lora"
    lora: LoraSettings = Field(default_factory=LoraSettings)
    # Optimisation (TrainingArguments names).
    epochs: float = Field(default=1.0, gt=0)
    max_steps: int | None = Field(default=None, ge=1)
    learning_rate: float = Field(default=2e-4, gt=0)
    lr_scheduler_type: str = "linear"
    warmup_ratio: float = Field(default=0.0, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)
    batch_size: int = Field(default=4, ge=1, description="Per device.")
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    max_length: int = Field(default=512, ge=16, description="Tokens per sequence (per packed block for SFT).")
    packing: bool = Field(default=True, description="SFT: pack examples into max_length blocks (best-fit).")
    bf16: bool = False
    gradient_checkpointing: bool = False
    seed: int = 42
    # Preference objectives.
    beta: float = Field(default=0.1, gt=0, description="DPO/KTO: strength of the KL term to the reference model.")
    desirable_weight: float = Field(default=1.0, gt=0, description="KTO: weight of thumbs-up examples.")
    undesirable_weight: float = Field(default=1.0, gt=0, description="KTO: weight of thumbs-down examples.")
    # Validation, checkpoints, logs.
    validation_fraction: float = Field(default=0.1, ge=0, lt=1, description="Held out by prompt hash.")
    eval_steps: int | None = Field(default=None, ge=1, description="None: validate at the end only.")
    save_steps: int | None = Field(default=None, ge=1, description="Checkpoint every N steps; None: none.")
    save_total_limit: int = Field(default=2, ge=1)
    logging_steps: int = Field(default=1, ge=1)
    # Scale-out: a DeepSpeed JSON (relative to training/configs/) used under `accelerate launch`.
    deepspeed: str | None = None
    num_gpus: int = Field(default=0, ge=0, description="GPUs per node the recipe is sized for (dry-run, launch).")
    num_nodes: int = Field(default=1, ge=1)
    architecture: dict[str, Any] | None = Field(
        default=None,
        description="A transformers config (model_type + sizes) used by --dry-run when the weights are not here.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> RecipeConfig:
        if self.deepspeed and self.num_gpus < 1:
            raise ValueError("a DeepSpeed recipe needs num_gpus >= 1")
        return self

    def deepspeed_path(self) -> Path | None:
        if not self.deepspeed:
            return None
        path = Path(self.deepspeed)
        return path if path.is_absolute() or path.exists() else CONFIGS_DIR / path


def config_path(name_or_path: str | Path) -> Path:
    """``NAME`` (a file in training/configs/) or a path to a YAML file."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    named = CONFIGS_DIR / f"{name_or_path}.yaml"
    if named.is_file():
        return named
    known = ", ".join(sorted(p.stem for p in CONFIGS_DIR.glob("*.yaml")))
    raise FileNotFoundError(f"no recipe config {name_or_path!r}; known: {known}")


def load_config(name_or_path: str | Path | None, overrides: dict[str, Any] | None = None) -> RecipeConfig:
    """The file's settings with ``overrides`` (CLI flags that were given; None values ignored) on top."""
    values: dict[str, Any] = {}
    if name_or_path is not None:
        path = config_path(name_or_path)
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of settings")
        values.update(loaded)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key.startswith("lora_"):
            values.setdefault("lora", {})[key.removeprefix("lora_")] = value
        else:
            values[key] = value
    return RecipeConfig.model_validate(values)
