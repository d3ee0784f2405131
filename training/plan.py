"""``finetune chat --dry-run``: check a recipe without training it.

Validates the config, every data file (line by line, as training would) and the DeepSpeed
JSON (with DeepSpeed's own config models when DeepSpeed is installed, else against the keys
its documentation lists), counts total and trainable parameters on the meta device (no
weights needed: a config's ``architecture`` stands in for a model that is not here),
estimates memory per GPU for the chosen ZeRO stage, and prints the exact launch command.

Memory is DeepSpeed's model-states estimate (``estimate_zero{2,3}_model_states_mem_needs``:
mixed-precision Adam, 16 bytes per trainable parameter plus 2 per bf16 weight, sharded by
stage) plus activations after Korthikanti et al. 2022 (``s·b·h·(34 + 5·a·s/h)`` bytes per
layer; with gradient checkpointing only each layer's input is kept).
"""

from __future__ import annotations

import contextlib
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from training.config import LORA_TARGETS, RecipeConfig
from training.data import DataError, parse_mixture, read_examples, split_by_prompt

GIB = 1024**3
# Keys of a DeepSpeed config that the HF Trainer fills in when they read "auto".
AUTO_FROM_TRAINER = {
    "train_micro_batch_size_per_gpu",
    "gradient_accumulation_steps",
    "train_batch_size",
    "gradient_clipping",
}
# Top-level keys DeepSpeed documents (deepspeed.ai/docs/config-json), used when DeepSpeed is absent.
DEEPSPEED_KEYS = {
    "train_batch_size",
    "train_micro_batch_size_per_gpu",
    "gradient_accumulation_steps",
    "optimizer",
    "scheduler",
    "fp16",
    "bf16",
    "gradient_clipping",
    "zero_optimization",
    "zero_allow_untested_optimizer",
    "activation_checkpointing",
    "steps_per_print",
    "wall_clock_breakdown",
    "communication_data_type",
    "prescale_gradients",
    "gradient_predivide_factor",
    "sparse_gradients",
    "flops_profiler",
    "tensorboard",
    "aio",
    "data_types",
}
ZERO_KEYS = {
    "stage",
    "allgather_partitions",
    "allgather_bucket_size",
    "overlap_comm",
    "reduce_scatter",
    "reduce_bucket_size",
    "contiguous_gradients",
    "offload_param",
    "offload_optimizer",
    "stage3_max_live_parameters",
    "stage3_max_reuse_distance",
    "stage3_prefetch_bucket_size",
    "stage3_param_persistence_threshold",
    "sub_group_size",
    "stage3_gather_16bit_weights_on_model_save",
    "round_robin_gradients",
    "zero_hpz_partition_size",
    "zero_quantized_weights",
    "zero_quantized_gradients",
}


class PlanError(ValueError):
    pass


def model_config(config: RecipeConfig, base_model: str | None) -> Any:
    from transformers import AutoConfig

    if base_model and (Path(base_model) / "config.json").is_file():
        return AutoConfig.from_pretrained(base_model)
    if config.architecture:
        values = dict(config.architecture)
        return AutoConfig.for_model(values.pop("model_type"), **values)
    raise PlanError(f"{base_model or config.profile}: no local config.json and no 'architecture' in the recipe")


def count_parameters(config: RecipeConfig, arch: Any) -> dict[str, int]:
    """total, trainable and largest-layer parameter counts, built on the meta device."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(arch)
    total = sum(p.numel() for p in model.parameters())
    largest = max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())
    if config.method == "full":
        return {"total": total, "trainable": total, "largest_layer": largest}
    targets = config.lora.target_modules or LORA_TARGETS.get(arch.model_type) or []
    if not targets:
        raise PlanError(f"no LoRA target modules known for {arch.model_type!r}; set lora.target_modules")
    trainable = sum(
        config.lora.r * (m.in_features + m.out_features)
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and name.rsplit(".", 1)[-1] in targets
    )
    if trainable == 0:
        raise PlanError(f"LoRA targets {targets} match no linear layer of {arch.model_type!r}")
    return {"total": total + trainable, "trainable": trainable, "largest_layer": largest}


def load_deepspeed(config: RecipeConfig) -> dict[str, Any] | None:
    path = config.deepspeed_path()
    if path is None:
        return None
    if not path.is_file():
        raise PlanError(f"DeepSpeed config {path} does not exist")
    try:
        loaded = json.loads(path.read_text())
    except ValueError as exc:
        raise PlanError(f"{path}: not JSON ({exc})") from None
    if not isinstance(loaded, dict):
        raise PlanError(f"{path}: expected a JSON object")
    return loaded


def resolve_auto(ds: dict[str, Any], config: RecipeConfig, hidden: int) -> dict[str, Any]:
    """The DeepSpeed config as the HF Trainer would hand it to DeepSpeed ("auto" filled in)."""
    world = max(config.num_gpus, 1) * config.num_nodes
    fills = {
        "train_micro_batch_size_per_gpu": config.batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "train_batch_size": config.batch_size * config.gradient_accumulation_steps * world,
        "gradient_clipping": 1.0,
        "reduce_bucket_size": hidden * hidden,
        "stage3_prefetch_bucket_size": int(0.9 * hidden * hidden),
        "stage3_param_persistence_threshold": 10 * hidden,
        "lr": config.learning_rate,
        "weight_decay": config.weight_decay,
        "warmup_max_lr": config.learning_rate,
        "warmup_min_lr": 0,
        "warmup_num_steps": 0,
        "total_num_steps": config.max_steps or 1000,
        "betas": [0.9, 0.999],
        "eps": 1e-8,
    }

    def fill(node: Any, key: str | None = None) -> Any:
        if isinstance(node, dict):
            if key in {"bf16", "fp16"} and node.get("enabled") == "auto":
                node = {**node, "enabled": config.bf16 if key == "bf16" else False}
            return {k: fill(v, k) for k, v in node.items()}
        if node == "auto":
            if key not in fills:
                raise PlanError(f"DeepSpeed key {key!r} is 'auto' but the Trainer does not fill it")
            return fills[key]
        return node

    return fill(ds)


def _validate_documented_keys(ds: dict[str, Any], source: Path) -> str:
    """Without DeepSpeed: the keys and values its config documentation lists."""
    unknown = set(ds) - DEEPSPEED_KEYS
    if unknown:
        raise PlanError(f"{source}: unknown DeepSpeed keys {sorted(unknown)}")
    zero = ds.get("zero_optimization", {})
    unknown = set(zero) - ZERO_KEYS
    if unknown:
        raise PlanError(f"{source}: unknown zero_optimization keys {sorted(unknown)}")
    if zero.get("stage") not in {0, 1, 2, 3}:
        raise PlanError(f"{source}: zero_optimization.stage must be 0-3")
    for part in ("offload_param", "offload_optimizer"):
        if part in zero and zero[part].get("device") not in {"cpu", "nvme", "none"}:
            raise PlanError(f"{source}: zero_optimization.{part}.device must be cpu, nvme or none")
    return "documented keys (DeepSpeed not installed)"


def validate_deepspeed(ds: dict[str, Any], source: Path) -> str:
    """Check the resolved config; returns which validator ran."""
    try:
        # DeepSpeed logs its accelerator choice to stdout on import; keep stdout for the report.
        with contextlib.redirect_stdout(sys.stderr):
            from deepspeed.runtime.zero.config import DeepSpeedZeroConfig
    except ImportError:
        return _validate_documented_keys(ds, source)
    from pydantic import ValidationError

    try:
        DeepSpeedZeroConfig(**ds.get("zero_optimization", {}))
    except ValidationError as exc:
        raise PlanError(f"{source}: zero_optimization: {exc}") from None
    unknown = set(ds) - DEEPSPEED_KEYS
    if unknown:
        raise PlanError(f"{source}: unknown DeepSpeed keys {sorted(unknown)}")
    micro, accum, total = (
        ds.get("train_micro_batch_size_per_gpu"),
        ds.get("gradient_accumulation_steps"),
        ds.get("train_batch_size"),
    )
    if micro and accum and total and total % (micro * accum):
        raise PlanError(f"{source}: train_batch_size is not micro batch x accumulation x GPUs")
    import deepspeed

    return f"DeepSpeed {deepspeed.__version__} config models"


def estimate_memory(
    config: RecipeConfig, params: dict[str, int], arch: Any, ds: dict[str, Any] | None
) -> dict[str, Any]:
    """Bytes per GPU (model states + activations) and CPU bytes for offload, for the ZeRO stage in use."""
    zero = (ds or {}).get("zero_optimization", {})
    stage = int(zero.get("stage", 0))
    offload_opt = zero.get("offload_optimizer", {}).get("device", "none") in {"cpu", "nvme"}
    offload_param = zero.get("offload_param", {}).get("device", "none") in {"cpu", "nvme"}
    gpus = max(config.num_gpus, 1) * config.num_nodes
    gpus_per_node = max(config.num_gpus, 1)
    total, trainable, largest = params["total"], params["trainable"], params["largest_layer"]
    weight_bytes = 2 if config.bf16 else 4
    frozen = total - trainable
    # Per trainable parameter: gradient + fp32 master weight and Adam m, v (DeepSpeed counts 16).
    states_per_trainable = 16
    shard = gpus if stage >= 1 else 1
    optimizer = 0 if offload_opt else states_per_trainable * trainable / shard
    if stage == 3:
        weights = 0 if offload_param else weight_bytes * total / gpus
        gpu = 4 * largest + weights + optimizer
    else:
        gpu = weight_bytes * total + optimizer
    cpu = 0.0
    if offload_opt:
        cpu = trainable * max(4 * gpus_per_node, 16) * 1.5
    if offload_param:
        cpu += weight_bytes * frozen * 1.5
    hidden, layers = arch.hidden_size, arch.num_hidden_layers
    heads = arch.num_attention_heads
    s, b = config.max_length, config.batch_size
    per_layer = s * b * hidden * (34 + 5 * heads * s / hidden)
    activations = layers * 2 * s * b * hidden + per_layer if config.gradient_checkpointing else layers * per_layer
    logits = 4 * s * b * arch.vocab_size
    return {
        "zero_stage": stage,
        "offload_optimizer": offload_opt,
        "offload_param": offload_param,
        "gpus": gpus,
        "model_states_gib_per_gpu": round(gpu / GIB, 2),
        "activations_gib_per_gpu": round((activations + logits) / GIB, 2),
        "total_gib_per_gpu": round((gpu + activations + logits) / GIB, 2),
        "cpu_offload_gib_per_node": round(cpu / GIB, 1),
    }


def launch_command(config: RecipeConfig, config_file: str | None, overrides: list[str]) -> list[str]:
    """``accelerate launch`` (DeepSpeed through the Trainer's ``deepspeed`` argument) on GPUs;
    the plain CLI on a CPU."""
    run = ["finetune", "chat", "--objective", config.objective]
    run += (["--config", config_file] if config_file else []) + overrides
    if config.num_gpus < 1:
        return ["openchatkit", *run]
    world = config.num_gpus * config.num_nodes
    argv = ["accelerate", "launch", "--num_processes", str(world), "--num_machines", str(config.num_nodes)]
    if config.bf16:
        argv += ["--mixed_precision", "bf16"]
    if config.num_nodes > 1:
        argv += ["--machine_rank", "$NODE_RANK", "--main_process_ip", "$MASTER_ADDR", "--main_process_port", "29500"]
    return [*argv, "-m", "openchatkit.cli", *run]


def plan(config: RecipeConfig, config_file: str | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    """Everything --dry-run reports; PlanError / DataError when something would fail."""
    data: dict[str, Any] = {}
    if config.data:
        for dataset in parse_mixture(config.data):
            examples = read_examples(dataset.path, config.objective)
            train, held = split_by_prompt(examples, config.validation_fraction)
            data[str(dataset.path)] = {"weight": dataset.weight, "train": len(train), "validation": len(held)}
    if config.objective == "kto" and config.batch_size < 2:
        raise PlanError("KTO estimates its KL term within a batch: batch_size must be at least 2")
    base = config.base_model
    if base is None and config.architecture is None:
        from training.chat import resolve_base_model

        base = resolve_base_model(config)
    arch = model_config(config, base)
    params = count_parameters(config, arch)
    ds = load_deepspeed(config)
    resolved = resolve_auto(ds, config, arch.hidden_size) if ds is not None else None
    validator = validate_deepspeed(resolved, config.deepspeed_path()) if resolved is not None else None  # type: ignore[arg-type]
    command = launch_command(config, config_file, overrides or [])
    return {
        "objective": config.objective,
        "method": config.method,
        "profile": config.profile,
        "base_model": base or "(architecture from the recipe)",
        "data": data,
        "parameters": params,
        "trainable_percent": round(100 * params["trainable"] / params["total"], 4),
        "memory": estimate_memory(config, params, arch, resolved),
        "deepspeed": {"config": str(config.deepspeed_path()), "validated_with": validator} if ds else None,
        "launch": " ".join(shlex.quote(a) if not a.startswith("$") else a for a in command),
    }


__all__ = ["DataError", "PlanError", "plan"]
