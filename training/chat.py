"""Fine-tune the chat model: LoRA (default) or full, on OpenChatKit JSONL.

The output of LoRA is a PEFT adapter directory that vLLM serves next to the base model
(``CHAT_LORA_MODULES='{"name": "DIR"}'``); the output of full fine-tuning is a model
directory that ``CHAT_MODEL_PATH`` serves. The same code trains SmolLM2 on a CPU and
GPT-NeoXT-Chat-Base-20B on GPUs; only the config changes.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from chat_server.profiles import TEMPLATES_DIR
from training.data import mix, parse_mixture

logger = logging.getLogger(__name__)

# Attention projections per architecture, for LoRA.
LORA_TARGETS = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "gpt_neox": ["query_key_value", "dense"],
    "gptj": ["q_proj", "k_proj", "v_proj", "out_proj"],
}

# Called as on_step(step, steps, loss).
StepCallback = Callable[[int, int, float], None]


class ChatFinetuneConfig(BaseModel):
    base_model: str = Field(description="A local model directory (or a hub id on a machine that may download).")
    data: str = Field(description="path:weight,... of OpenChatKit JSONL files.")
    output_dir: Path
    method: Literal["lora", "full"] = "lora"
    epochs: float = Field(default=1.0, gt=0)
    max_steps: int | None = Field(default=None, ge=1)
    learning_rate: float = Field(default=2e-4, gt=0)
    batch_size: int = Field(default=4, ge=1)
    gradient_accumulation: int = Field(default=1, ge=1)
    max_length: int = Field(default=512, ge=16)
    lora_rank: int = Field(default=8, ge=1)
    lora_alpha: int = Field(default=16, ge=1)
    lora_dropout: float = Field(default=0.05, ge=0, lt=1)
    seed: int = 42
    bf16: bool = False
    chat_template: Path | None = Field(
        default=None,
        description="Renders {'messages': ...} examples when the tokenizer has none (default: OpenChatKit's).",
    )


def _load(config: ChatFinetuneConfig) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(config.base_model)
    if tokenizer.chat_template is None:
        template = config.chat_template or TEMPLATES_DIR / "openchatkit.jinja"
        tokenizer.chat_template = Path(template).read_text()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = torch.bfloat16 if config.bf16 else torch.float32
    model = AutoModelForCausalLM.from_pretrained(config.base_model, dtype=dtype)
    if config.method == "lora":
        from peft import LoraConfig, get_peft_model

        targets = LORA_TARGETS.get(model.config.model_type)
        if targets is None:
            raise ValueError(f"no LoRA target modules known for model type {model.config.model_type!r}")
        lora = LoraConfig(
            r=config.lora_rank,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=targets,
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, lora)
    return tokenizer, model


def _batches(tokenizer: Any, texts: list[str], config: ChatFinetuneConfig) -> list[dict[str, Any]]:
    """Tokenized batches; padding is masked out of the loss."""
    batches = []
    for start in range(0, len(texts), config.batch_size):
        chunk = [t + (tokenizer.eos_token or "") for t in texts[start : start + config.batch_size]]
        encoded = tokenizer(chunk, truncation=True, max_length=config.max_length, padding=True, return_tensors="pt")
        labels = encoded["input_ids"].clone()
        labels[encoded["attention_mask"] == 0] = -100
        batches.append({**encoded, "labels": labels})
    return batches


def finetune_chat(config: ChatFinetuneConfig, on_step: StepCallback | None = None) -> dict[str, Any]:
    """Train and save; return a summary (steps, losses, time, output)."""
    import torch

    torch.manual_seed(config.seed)
    tokenizer, model = _load(config)
    render = lambda messages: tokenizer.apply_chat_template(messages, tokenize=False)  # noqa: E731
    texts = mix(parse_mixture(config.data), render, config.seed)
    batches = _batches(tokenizer, texts, config)
    steps_per_epoch = math.ceil(len(batches) / config.gradient_accumulation)
    steps = config.max_steps or max(1, math.ceil(steps_per_epoch * config.epochs))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 - s / max(steps, 1))
    model.train()
    losses: list[float] = []
    started = time.monotonic()
    cursor = 0
    for step in range(1, steps + 1):
        total = 0.0
        for _ in range(config.gradient_accumulation):
            batch = batches[cursor % len(batches)]
            cursor += 1
            loss = model(**batch).loss / config.gradient_accumulation
            loss.backward()
            total += float(loss)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        losses.append(total)
        if on_step:
            on_step(step, steps, total)
    config.output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(config.output_dir, safe_serialization=True)
    tokenizer.save_pretrained(config.output_dir)
    summary = {
        "method": config.method,
        "base_model": config.base_model,
        "examples": len(texts),
        "steps": steps,
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "seconds": round(time.monotonic() - started, 1),
        "output_dir": str(config.output_dir),
    }
    (config.output_dir / "openchatkit-finetune.json").write_text(
        json.dumps({**summary, "config": config.model_dump(mode="json")}, indent=2)
    )
    logger.info("fine-tuning finished", extra=summary)
    return summary
