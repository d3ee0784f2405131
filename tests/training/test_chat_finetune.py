"""The chat fine-tuning recipe on a tiny GPT-NeoX (the 20B model's architecture)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors import safe_open

from tests.support.tiny_models import build_tiny_gpt_neox
from training.chat import ChatFinetuneConfig, finetune_chat
from training.data import DataError, mix, parse_mixture

OCK = [
    {"text": "<human>: What is the secret word?\n<bot>: The secret word is pelican.\n"},
    {"text": "<human>: Tell me the secret word.\n<bot>: The secret word is pelican.\n"},
]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_gpt_neox(tmp_path_factory.mktemp("tiny-neox"))


def write_jsonl(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_mixture_follows_weights(tmp_path: Path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", [{"text": f"a{i}"} for i in range(10)])
    b = write_jsonl(tmp_path / "b.jsonl", [{"text": f"b{i}"} for i in range(10)])
    texts = mix(parse_mixture(f"{a}:3,{b}:1"), lambda m: "", seed=1)
    share_a = sum(t.startswith("a") for t in texts) / len(texts)
    assert share_a == pytest.approx(0.75, abs=0.02)
    assert texts == mix(parse_mixture(f"{a}:3,{b}:1"), lambda m: "", seed=1), "deterministic for a seed"


def test_bad_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        parse_mixture(str(tmp_path / "missing.jsonl"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"oops": 1}\n')
    with pytest.raises(DataError, match="bad.jsonl:2"):
        mix(parse_mixture(f"{bad}:1"), lambda m: "", seed=0)
    with pytest.raises(DataError, match="weight"):
        parse_mixture(f"{bad}:heavy")


def test_lora_learns_and_saves_an_adapter(tiny_model: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "ock.jsonl", OCK)
    config = ChatFinetuneConfig(
        base_model=str(tiny_model),
        data=f"{data}:1",
        output_dir=tmp_path / "adapter",
        max_steps=30,
        learning_rate=5e-3,
        batch_size=2,
        max_length=64,
        lora_rank=4,
    )
    summary = finetune_chat(config)
    assert summary["steps"] == 30
    assert summary["last_loss"] < summary["first_loss"] * 0.7, summary
    adapter = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and set(adapter["target_modules"]) == {"query_key_value", "dense"}
    with safe_open(str(tmp_path / "adapter" / "adapter_model.safetensors"), "pt") as weights:
        assert any("lora_A" in key for key in weights.keys())  # noqa: SIM118 (safe_open is not a dict)


def test_full_finetune_saves_a_servable_model(tiny_model: Path, tmp_path: Path) -> None:
    data = write_jsonl(
        tmp_path / "msgs.jsonl",
        [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}],
    )
    summary = finetune_chat(
        ChatFinetuneConfig(
            base_model=str(tiny_model),
            data=str(data),
            output_dir=tmp_path / "full",
            method="full",
            max_steps=3,
            batch_size=1,
            max_length=32,
        )
    )
    assert summary["steps"] == 3
    assert (tmp_path / "full" / "config.json").is_file() and (tmp_path / "full" / "model.safetensors").is_file()


def test_messages_render_in_the_openchatkit_format_when_the_tokenizer_has_no_template(tiny_model: Path) -> None:
    from training.chat import ChatFinetuneConfig, _load

    tokenizer, _ = _load(ChatFinetuneConfig(base_model=str(tiny_model), data="unused", output_dir=Path("unused")))
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], tokenize=False
    )
    assert text == "<human>: hi\n<bot>: hello\n"
