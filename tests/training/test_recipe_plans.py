"""`finetune chat --dry-run` of every recipe config: GPU recipes are checked here, on a CPU,
with DeepSpeed's own config models, parameter counts on the meta device, and the launch line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openchatkit.cli import app
from training.config import CONFIGS_DIR, load_config
from training.plan import PlanError, plan

GPU_CONFIGS = [
    "gpt-neoxt-20b-lora",
    "gpt-neoxt-20b-full",
    "gpt-neoxt-20b-full-offload",
    "pythia-chat-7b-full",
    "pythia-chat-7b-full-offload",
]


def test_every_named_config_exists() -> None:
    names = {p.stem for p in CONFIGS_DIR.glob("*.yaml")}
    assert {"smollm2-135m-lora-cpu", "dpo-lora", "kto-lora", *GPU_CONFIGS} <= names


@pytest.mark.parametrize("name", GPU_CONFIGS)
def test_gpu_recipe_dry_run(name: str, tmp_path: Path) -> None:
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps({"text": f"<human>: q{i}\n<bot>: a{i}\n"}) + "\n" for i in range(30)))
    result = CliRunner().invoke(app, ["finetune", "chat", "--config", name, "--data", str(data), "--dry-run"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    memory, params = report["memory"], report["parameters"]
    assert memory["zero_stage"] == 3 and memory["gpus"] == 8
    assert report["deepspeed"]["validated_with"]
    assert report["data"][str(data)]["train"] + report["data"][str(data)]["validation"] == 30
    expected_total = 20.55e9 if "20b" in name else 6.86e9  # GPT-NeoX-20B / Pythia-6.9B
    assert params["total"] == pytest.approx(expected_total, rel=0.01)
    if name.endswith("lora"):
        # r16 on query_key_value (6144 -> 3 * 6144) in 44 layers.
        assert params["trainable"] == 44 * 16 * (6144 + 3 * 6144)
        assert memory["model_states_gib_per_gpu"] < 10
    elif name.endswith("offload"):
        assert memory["offload_param"] and memory["cpu_offload_gib_per_node"] > 100
    else:
        # DeepSpeed's ZeRO-3 estimate: 18 bytes per parameter over 8 GPUs, plus the largest layer.
        assert memory["model_states_gib_per_gpu"] == pytest.approx(
            (18 * params["total"] / 8 + 4 * params["largest_layer"]) / 2**30, rel=0.05
        )
    assert report["launch"].startswith("accelerate launch --num_processes 8 --num_machines 1 --mixed_precision bf16")
    assert f"--config {name}" in report["launch"] and f"--data {data}" in report["launch"]


def test_cpu_recipe_dry_run_counts_the_real_model() -> None:
    report = plan(load_config("smollm2-135m-lora-cpu"))
    assert report["parameters"]["total"] == pytest.approx(135e6, rel=0.05)
    assert report["deepspeed"] is None and report["launch"].startswith("openchatkit finetune chat")


def test_a_broken_deepspeed_config_is_rejected(tmp_path: Path) -> None:
    broken = json.loads((CONFIGS_DIR / "deepspeed" / "zero3.json").read_text())
    broken["zero_optimization"]["stage3_prefetch_bukcet_size"] = 1
    path = tmp_path / "zero3.json"
    path.write_text(json.dumps(broken))
    config = load_config("gpt-neoxt-20b-lora", {"deepspeed": str(path)})
    with pytest.raises(PlanError, match="zero_optimization"):
        plan(config)
    broken = {"zero_optimization": {"stage": 3}, "train_batch_size": "auto", "optimizer": {"params": {"foo": "auto"}}}
    path.write_text(json.dumps(broken))
    with pytest.raises(PlanError, match="'foo' is 'auto'"):
        plan(config)


def test_dry_run_rejects_bad_data_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "prefs.jsonl"
    bad.write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n{"prompt": "q", "chosen": "a"}\n')
    result = CliRunner().invoke(app, ["finetune", "chat", "--config", "dpo-lora", "--data", f"{bad}:1", "--dry-run"])
    assert result.exit_code == 2
    assert f"{bad}:2" in result.output and "rejected" in result.output
