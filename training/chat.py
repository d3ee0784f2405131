"""Fine-tune the chat model with TRL: SFT (completion-only, packed), DPO or KTO, LoRA or full.

The training loop, checkpointing, resumption, mixed precision, gradient checkpointing and
DeepSpeed are TRL's and transformers' Trainer's (run under ``accelerate launch`` on GPUs);
this module only turns a ``RecipeConfig`` into their arguments, renders the data with the
serving template, and writes the result atomically:

- checkpoints go to ``<output>.work/checkpoints/checkpoint-N`` (``--resume`` continues from
  the latest one, step count included);
- metrics go to ``<output>.work/metrics.jsonl`` as they are logged (one JSON object per line:
  ``step``, ``loss`` or ``eval_loss``, ``learning_rate``, ``tokens``, ``seconds``...);
- the adapter (LoRA; a PEFT directory vLLM serves by name) or full model is written to a
  staging directory and swapped in under a lock, with ``openchatkit-finetune.json``
  (summary + config) and the metrics beside it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.locks import file_lock, swap_in
from training.config import LORA_TARGETS, RecipeConfig
from training.data import ChatFormat, DataError, load_splits

logger = logging.getLogger(__name__)

MANIFEST = "openchatkit-finetune.json"
METRICS = "metrics.jsonl"

# Called as on_log(record) for every logged metrics record.
LogCallback = Callable[[dict[str, Any]], None]


def resolve_base_model(config: RecipeConfig) -> str:
    """The model directory: the config's, else the profile's prepared model (no download)."""
    if config.base_model:
        return config.base_model
    from chat_server.config import ChatServerSettings
    from chat_server.prepare import prepare_model
    from chat_server.profiles import get_profile

    return prepare_model(get_profile(config.profile), ChatServerSettings().cache_dir)


def load_tokenizer(config: RecipeConfig, base_model: str) -> Any:
    """The tokenizer with the chat template the serving profile uses (its file, else the
    model's own, else OpenChatKit's ``<human>/<bot>``)."""
    from transformers import AutoTokenizer

    from chat_server.profiles import TEMPLATES_DIR, get_profile

    tokenizer = AutoTokenizer.from_pretrained(base_model)
    served = get_profile(config.profile).chat_template_path()
    if served is not None:
        tokenizer.chat_template = served.read_text()
    elif tokenizer.chat_template is None:
        tokenizer.chat_template = (TEMPLATES_DIR / "openchatkit.jinja").read_text()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def lora_config(config: RecipeConfig, model_type: str) -> Any:
    from peft import LoraConfig

    targets = config.lora.target_modules or LORA_TARGETS.get(model_type)
    if not targets:
        raise ValueError(f"no LoRA target modules known for model type {model_type!r}; set lora.target_modules")
    return LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=list(targets),
        task_type="CAUSAL_LM",
    )


def work_dir(config: RecipeConfig) -> Path:
    assert config.output_dir is not None
    return config.output_dir.with_name(f"{config.output_dir.name}.work")


def latest_checkpoint(config: RecipeConfig) -> Path | None:
    from transformers.trainer_utils import get_last_checkpoint

    checkpoints = work_dir(config) / "checkpoints"
    found = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    return Path(found) if found else None


def _training_args(config: RecipeConfig, has_validation: bool, progress: bool) -> dict[str, Any]:
    import importlib.util

    import torch

    periodic_eval = has_validation and config.eval_steps is not None
    ds = config.deepspeed_path()
    return {
        "output_dir": str(work_dir(config) / "checkpoints"),
        "num_train_epochs": config.epochs,
        "max_steps": config.max_steps or -1,
        "learning_rate": config.learning_rate,
        "lr_scheduler_type": config.lr_scheduler_type,
        "warmup_steps": config.warmup_ratio,
        "weight_decay": config.weight_decay,
        "per_device_train_batch_size": config.batch_size,
        "per_device_eval_batch_size": config.batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "bf16": config.bf16,
        "gradient_checkpointing": config.gradient_checkpointing,
        "seed": config.seed,
        "data_seed": config.seed,
        "logging_steps": config.logging_steps,
        "logging_first_step": True,
        "save_strategy": "steps" if config.save_steps else "no",
        "save_steps": config.save_steps or 500,
        "save_total_limit": config.save_total_limit,
        "eval_strategy": "steps" if periodic_eval else "no",
        "eval_steps": config.eval_steps,
        "include_num_input_tokens_seen": "non_padding",
        "report_to": ["tensorboard"] if importlib.util.find_spec("tensorboard") else "none",
        "deepspeed": str(ds) if ds and torch.cuda.is_available() else None,
        "use_cpu": not torch.cuda.is_available(),
        "disable_tqdm": not progress,
        "dataloader_num_workers": 0,
        "max_length": config.max_length,
    }


def _metrics_callback(path: Path, on_log: LogCallback | None) -> Any:
    from transformers import TrainerCallback

    class MetricsLog(TrainerCallback):
        """Appends every log record to metrics.jsonl, with wall time and tokens/s since the last one."""

        def __init__(self) -> None:
            self.started = time.monotonic()
            self.last: tuple[float, int] = (self.started, 0)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **_: Any) -> None:
            now, tokens = time.monotonic(), int(getattr(state, "num_input_tokens_seen", 0) or 0)
            record: dict[str, Any] = {"step": state.global_step, "seconds": round(now - self.started, 3)}
            record.update({k: v for k, v in (logs or {}).items() if isinstance(v, int | float | str)})
            if "loss" in record and tokens > self.last[1] and now > self.last[0]:
                record["tokens"] = tokens
                record["tokens_per_s"] = round((tokens - self.last[1]) / (now - self.last[0]), 1)
                self.last = (now, tokens)
            if state.is_world_process_zero:
                with path.open("a") as out:
                    out.write(json.dumps(record) + "\n")
            if on_log:
                on_log(record)

    return MetricsLog()


def build_trainer(
    config: RecipeConfig, *, progress: bool = False, on_log: LogCallback | None = None
) -> tuple[Any, dict[str, Any]]:
    """The TRL trainer for ``config`` and facts about its data (examples, validation)."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    if config.data is None or config.output_dir is None:
        raise ValueError("a run needs data and output_dir")
    if config.objective == "kto" and config.batch_size < 2:
        raise ValueError("KTO estimates its KL term within a batch: batch_size must be at least 2")
    splits = load_splits(config.data, config.objective, config.validation_fraction, config.seed)
    base_model = resolve_base_model(config)
    tokenizer = load_tokenizer(config, base_model)
    render = ChatFormat(tokenizer)
    train = Dataset.from_list(render.rows(splits.train, config.objective))
    validation = Dataset.from_list(render.rows(splits.validation, config.objective)) if splits.validation else None
    model = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.bfloat16 if config.bf16 else torch.float32)
    peft_config = lora_config(config, model.config.model_type) if config.method == "lora" else None
    work_dir(config).mkdir(parents=True, exist_ok=True)
    common = _training_args(config, validation is not None, progress)
    kwargs: dict[str, Any] = {
        "model": model,
        "train_dataset": train,
        "eval_dataset": validation,
        "processing_class": tokenizer,
        "peft_config": peft_config,
        "callbacks": [_metrics_callback(work_dir(config) / METRICS, on_log)],
    }
    if config.objective == "sft":
        from trl import SFTConfig, SFTTrainer

        args = SFTConfig(**common, packing=config.packing, eval_packing=False, completion_only_loss=True)
        trainer = SFTTrainer(args=args, **kwargs)
    elif config.objective == "dpo":
        from trl import DPOConfig, DPOTrainer

        trainer = DPOTrainer(args=DPOConfig(**common, beta=config.beta), **kwargs)
    else:
        from trl import KTOConfig, KTOTrainer

        args = KTOConfig(
            **common,
            beta=config.beta,
            desirable_weight=config.desirable_weight,
            undesirable_weight=config.undesirable_weight,
        )
        trainer = KTOTrainer(args=args, **kwargs)
    facts = {"base_model": base_model, "train_examples": len(train), "validation_examples": len(splits.validation)}
    return trainer, facts


def finetune_chat(
    config: RecipeConfig, *, resume: bool = False, progress: bool = False, on_log: LogCallback | None = None
) -> dict[str, Any]:
    """Train, validate and write the result atomically; return the summary that is also saved
    as ``openchatkit-finetune.json`` (steps, first/last loss, eval_loss, step time, tokens/s)."""
    assert config.output_dir is not None
    with file_lock(config.output_dir.with_name(f".{config.output_dir.name}.lock")):
        trainer, facts = build_trainer(config, progress=progress, on_log=on_log)
        checkpoint = latest_checkpoint(config) if resume else None
        metrics = work_dir(config) / METRICS
        if checkpoint is not None:
            # Keep the curve up to the checkpoint; what a stopped run logged after it is redone.
            kept = [r for r in read_metrics(metrics) if r["step"] <= _step_of(checkpoint)] if metrics.exists() else []
            metrics.write_text("".join(json.dumps(r) + "\n" for r in kept))
        else:
            if resume:
                logger.info("no checkpoint to resume from; starting at step 0")
            shutil.rmtree(work_dir(config) / "checkpoints", ignore_errors=True)
            metrics.unlink(missing_ok=True)
        started = time.monotonic()
        result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        seconds = time.monotonic() - started
        final_eval = trainer.evaluate() if trainer.eval_dataset is not None else {}
        summary = _summary(config, facts, result, final_eval, seconds, checkpoint)
        staging = config.output_dir.with_name(f"{config.output_dir.name}.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            if trainer.accelerator.is_main_process:
                trainer.save_model(str(staging))
                trainer.processing_class.save_pretrained(str(staging))
                shutil.copy(work_dir(config) / METRICS, staging / METRICS)
                manifest = {**summary, "config": config.model_dump(mode="json")}
                (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
                swap_in(staging, config.output_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    logger.info("fine-tuning finished", extra=summary)
    return summary


def read_metrics(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _summary(
    config: RecipeConfig,
    facts: dict[str, Any],
    result: Any,
    final_eval: dict[str, Any],
    seconds: float,
    checkpoint: Path | None,
) -> dict[str, Any]:
    start = _step_of(checkpoint) if checkpoint else 0
    logged = read_metrics(work_dir(config) / METRICS)
    records = [r for r in logged if r["step"] > start]
    losses = [r for r in records if "loss" in r]
    evals = [r["eval_loss"] for r in records if "eval_loss" in r]
    # Tokens trained in this run (from the checkpoint's count on) over its wall time, warm-up included.
    before = [r["tokens"] for r in logged if r["step"] <= start and "tokens" in r]
    tokens = max((r["tokens"] for r in losses if "tokens" in r), default=0) - (before[-1] if before else 0)
    run_steps = result.global_step - start
    return {
        "objective": config.objective,
        "method": config.method,
        **facts,
        "steps": result.global_step,
        "resumed_from_step": start if checkpoint else None,
        "first_logged_step": losses[0]["step"] if losses else None,
        "first_loss": losses[0]["loss"] if losses else None,
        "last_loss": losses[-1]["loss"] if losses else None,
        "eval_loss": final_eval.get("eval_loss"),
        "eval_losses": evals,
        "seconds": round(seconds, 1),
        "step_seconds": round(seconds / max(run_steps, 1), 3),
        "tokens": tokens,
        "tokens_per_s": round(tokens / seconds, 1) if tokens and seconds > 0 else None,
        "output_dir": str(config.output_dir),
    }


def _step_of(checkpoint: Path) -> int:
    return int(checkpoint.name.rsplit("-", 1)[1])


__all__ = ["DataError", "build_trainer", "finetune_chat", "latest_checkpoint", "read_metrics"]
