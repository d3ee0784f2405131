"""`openchatkit adapters merge`: the adapter folded into full weights gives the same logits as
base + adapter, and the directory is a plain model (weights, config, tokenizer, no adapter)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from typer.testing import CliRunner

from openchatkit.cli import app
from tests.support.tiny_models import build_tiny_gpt_neox


def test_merge_writes_a_plain_model_that_matches_base_plus_adapter(tmp_path: Path) -> None:
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_dir = build_tiny_gpt_neox(tmp_path / "tiny")
    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    # init_lora_weights=False: B is random too, so the adapter changes the output.
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["dense"], init_lora_weights=False, task_type="CAUSAL_LM")
    get_peft_model(base, lora).save_pretrained(tmp_path / "adapter")
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(tmp_path / "adapter")

    out = tmp_path / "merged"
    result = CliRunner().invoke(app, ["adapters", "merge", str(tmp_path / "adapter"), "--output", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["base_model"] == str(base_dir) and summary["output"] == str(out)
    files = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "openchatkit-merge.json"} <= files
    assert "adapter_config.json" not in files and not list(tmp_path.glob("merged.tmp-*"))

    ids = torch.tensor([[5, 17, 42, 7, 99]])
    fresh = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        plain = fresh(input_ids=ids).logits
        tuned = PeftModel.from_pretrained(fresh, tmp_path / "adapter").eval()(input_ids=ids).logits
        merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()(input_ids=ids).logits
    assert not torch.allclose(plain, tuned, atol=1e-3), "the adapter must matter for this test to mean anything"
    assert torch.allclose(merged, tuned, atol=1e-4)
    assert not any("lora" in name for name in merged_names(out))


def merged_names(directory: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(directory / "model.safetensors"), "pt") as weights:
        return list(weights.keys())


def test_merge_refuses_a_directory_without_an_adapter(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["adapters", "merge", str(tmp_path), "--output", str(tmp_path / "m")])
    assert result.exit_code == 1 and "adapter_config.json" in result.output
    assert not (tmp_path / "m").exists()
