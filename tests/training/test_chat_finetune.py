"""The TRL chat recipes (SFT, DPO, KTO) on a tiny GPT-NeoX (the 20B model's architecture) and
on SmolLM2 (what the CPU stack serves): loss falls, checkpoints resume, results land atomically."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors import safe_open

from tests.support.tiny_models import build_tiny_gpt_neox
from training.chat import finetune_chat, latest_checkpoint, read_metrics, work_dir
from training.config import RecipeConfig, load_config
from training.data import ChatFormat, DataError, load_splits, read_examples, sample_mixture, split_by_prompt

QUESTIONS = [f"What is the secret word for day {i}?" for i in range(10)]
RECORDS = {
    "sft": [{"text": f"<human>: {q}\n<bot>: The secret word is pelican.\n"} for q in QUESTIONS],
    "dpo": [
        {"prompt": q, "chosen": "The secret word is pelican.", "rejected": "I do not know that."} for q in QUESTIONS
    ],
    "kto": [
        {
            "prompt": q,
            "completion": "The secret word is pelican." if i % 2 else "I do not know that.",
            "label": bool(i % 2),
        }
        for i, q in enumerate(QUESTIONS)
    ],
}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_gpt_neox(tmp_path_factory.mktemp("tiny-neox"))


def write_jsonl(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def recipe(objective: str, base: Path, data: Path, output: Path, **extra: object) -> RecipeConfig:
    profile = "gpt-neoxt-chat-base-20b" if "neox" in str(base) else "smollm2-135m-instruct"
    values: dict[str, object] = {
        "objective": objective,
        "profile": profile,
        "base_model": str(base),
        "data": str(data),
        "output_dir": str(output),
        "max_steps": 6,
        "batch_size": 2,
        "max_length": 48,
        "learning_rate": 5e-3 if profile.startswith("gpt") else 2e-3,
        "validation_fraction": 0.2,
        "lora_r": 4,
    }
    return load_config(None, {**values, **extra})


def test_mixture_is_sampled_per_example_by_weight() -> None:
    a = read_examples_from([{"text": f"<human>: a{i}\n<bot>: x\n"} for i in range(10)])
    b = read_examples_from([{"text": f"<human>: b{i}\n<bot>: y\n"} for i in range(3)])
    mixture = sample_mixture([(3.0, a), (1.0, b)], 4000, seed=1)
    share_a = sum(e.completion == "x" for e in mixture) / len(mixture)
    assert share_a == pytest.approx(0.75, abs=0.03)
    assert mixture == sample_mixture([(3.0, a), (1.0, b)], 4000, seed=1), "deterministic for a seed"
    assert mixture != sample_mixture([(3.0, a), (1.0, b)], 4000, seed=2)


def read_examples_from(records: list[dict[str, object]], objective: str = "sft") -> list:  # type: ignore[type-arg]
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as handle:
        handle.write("".join(json.dumps(r) + "\n" for r in records))
    return read_examples(Path(handle.name), objective)


def test_validation_split_never_shares_a_prompt(tmp_path: Path) -> None:
    records = [{"prompt": f"q{i % 40}", "completion": f"a{i}"} for i in range(200)]
    train, held = split_by_prompt(read_examples_from(records), 0.2)
    assert held and train
    assert not {e.prompt_key() for e in train} & {e.prompt_key() for e in held}
    assert 0.05 < len(held) / 200 < 0.4


@pytest.mark.parametrize(
    ("objective", "line", "message"),
    [
        ("sft", '{"text": "<human>: no answer here\\n"}', "must end with a non-empty assistant"),
        ("sft", "{not json", "not JSON"),
        ("dpo", '{"prompt": "q", "chosen": "a"}', "missing rejected"),
        ("dpo", '{"prompt": "q", "chosen": "a", "rejected": "a"}', "the same answer"),
        ("kto", '{"prompt": "q", "completion": "a", "label": "yes"}', "'label' must be true or false"),
        ("kto", '{"prompt": [{"role": "robot", "content": "q"}], "completion": "a", "label": true}', "messages"),
    ],
)
def test_bad_data_is_rejected_with_file_and_line(tmp_path: Path, objective: str, line: str, message: str) -> None:
    good = json.dumps(RECORDS[objective][0])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(f"{good}\n\n{line}\n")
    with pytest.raises(DataError, match=rf"bad\.jsonl:3: .*{message}"):
        load_splits(f"{bad}:1", objective, 0.0, seed=0)
    with pytest.raises(DataError, match="weight"):
        load_splits(f"{bad}:heavy", objective, 0.0, seed=0)


def test_openchatkit_text_is_rendered_in_the_served_template(smollm2_dir: Path, tiny_model: Path) -> None:
    from training.chat import load_tokenizer

    example = read_examples_from([{"text": "<human>: hi\n<bot>: hello\n"}])[0]
    smol = ChatFormat(load_tokenizer(RecipeConfig(), str(smollm2_dir))).rows([example], "sft")[0]
    assert smol["prompt"].endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    assert smol["completion"] == "hello<|im_end|>"
    neox = load_tokenizer(RecipeConfig(profile="gpt-neoxt-chat-base-20b"), str(tiny_model))
    row = ChatFormat(neox).rows([example], "sft")[0]
    assert (row["prompt"], row["completion"]) == ("<human>: hi\n<bot>:", " hello")


def test_flags_override_the_config_file() -> None:
    config = load_config("smollm2-135m-lora-cpu", {"learning_rate": 1e-3, "lora_r": 4, "max_steps": None})
    assert config.learning_rate == 1e-3 and config.lora.r == 4 and config.lora.alpha == 16
    assert config.packing and config.objective == "sft"


@pytest.mark.parametrize("objective", ["sft", "dpo", "kto"])
@pytest.mark.parametrize("model", ["tiny-neox", "smollm2"])
def test_each_objective_lowers_its_loss(
    objective: str, model: str, tiny_model: Path, smollm2_dir: Path, tmp_path: Path
) -> None:
    # SmolLM2 costs seconds per step on a busy 2-core machine: fewer steps, the same checks.
    base, steps = (tiny_model, 6) if model == "tiny-neox" else (smollm2_dir, 3)
    data = write_jsonl(tmp_path / f"{objective}.jsonl", RECORDS[objective])
    summary = finetune_chat(recipe(objective, base, data, tmp_path / "adapter", max_steps=steps))
    assert summary["steps"] == steps and summary["validation_examples"] > 0
    losses = [r["loss"] for r in read_metrics(tmp_path / "adapter" / "metrics.jsonl") if "loss" in r]
    assert len(losses) == steps
    assert min(losses[-2:]) < losses[0], losses
    assert summary["eval_loss"] is not None and summary["tokens_per_s"] > 0
    adapter = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 4
    with safe_open(str(tmp_path / "adapter" / "adapter_model.safetensors"), "pt") as weights:
        assert any("lora_A" in key for key in weights.keys())  # noqa: SIM118 (safe_open is not a dict)
    assert (tmp_path / "adapter" / "tokenizer_config.json").is_file()
    left = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert left == ["adapter", "adapter.work", f"{objective}.jsonl"], "no staging directory left behind"


def test_resume_continues_the_step_count(tiny_model: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "sft.jsonl", RECORDS["sft"])
    first = recipe("sft", tiny_model, data, tmp_path / "out", max_steps=2, save_steps=2)
    assert finetune_chat(first)["steps"] == 2
    config = recipe("sft", tiny_model, data, tmp_path / "out", max_steps=4, save_steps=2)
    checkpoint = latest_checkpoint(config)
    assert checkpoint is not None and checkpoint.name == "checkpoint-2"
    summary = finetune_chat(config, resume=True)
    assert summary["steps"] == 4 and summary["resumed_from_step"] == 2 and summary["first_logged_step"] == 3
    manifest = json.loads((tmp_path / "out" / "openchatkit-finetune.json").read_text())
    assert manifest["steps"] == 4 and manifest["config"]["max_steps"] == 4
    assert latest_checkpoint(config) == work_dir(config) / "checkpoints" / "checkpoint-4"


def test_full_finetune_writes_a_servable_model(tiny_model: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "sft.jsonl", RECORDS["sft"])
    summary = finetune_chat(recipe("sft", tiny_model, data, tmp_path / "full", method="full", max_steps=2))
    assert summary["steps"] == 2
    assert (tmp_path / "full" / "config.json").is_file() and (tmp_path / "full" / "model.safetensors").is_file()


def test_exported_feedback_records_are_training_examples() -> None:
    """What `feedback export --format preference|kto` writes is what DPO/KTO read."""
    prompt = "Be brief.\n\n<human>: Who wrote Hamlet?\n<bot>:"
    pair = read_examples_from(
        [{"prompt": prompt, "chosen": " Shakespeare.", "rejected": " Dickens.", "model": "smol"}], "dpo"
    )[0]
    assert pair.prompt_messages() == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Who wrote Hamlet?"},
    ]
    assert (pair.chosen, pair.rejected) == ("Shakespeare.", "Dickens.")
    vote = read_examples_from([{"prompt": prompt, "completion": " Dickens.", "label": False, "model": "smol"}], "kto")
    assert vote[0].prompt == pair.prompt and vote[0].label is False
