"""The OpenChatKit chat template, rendered by transformers as vLLM renders it."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from chat_server.profiles import PROFILES, get_profile
from tests.support.tiny_models import build_tiny_gpt_neox


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    directory = build_tiny_gpt_neox(tmp_path_factory.mktemp("tiny"))
    tok = AutoTokenizer.from_pretrained(directory)
    template = get_profile("gpt-neoxt-chat-base-20b").chat_template_path()
    assert template is not None
    tok.chat_template = Path(template).read_text()
    return tok


def render(tokenizer, messages, generation_prompt=True) -> str:  # type: ignore[no-untyped-def]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def test_turns_and_generation_prompt(tokenizer) -> None:  # type: ignore[no-untyped-def]
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "How are you?"},
    ]
    assert render(tokenizer, messages) == "<human>: Hi\n<bot>: Hello!\n<human>: How are you?\n<bot>:"


def test_system_text_is_a_plain_preamble(tokenizer) -> None:  # type: ignore[no-untyped-def]
    messages = [{"role": "system", "content": "Current Date: 2023-03-10\n"}, {"role": "user", "content": "Hi"}]
    assert render(tokenizer, messages) == "Current Date: 2023-03-10\n\n<human>: Hi\n<bot>:"


def test_content_parts_and_whitespace(tokenizer) -> None:  # type: ignore[no-untyped-def]
    messages = [{"role": "user", "content": [{"type": "text", "text": "  two "}, {"type": "text", "text": "parts  "}]}]
    assert render(tokenizer, messages, generation_prompt=False) == "<human>: two parts\n"


def test_openchatkit_profiles_share_format_and_defaults() -> None:
    for name in ("gpt-neoxt-chat-base-20b", "pythia-chat-base-7b"):
        profile = PROFILES[name]
        assert profile.stop == ["<human>"]
        assert profile.max_model_len == 2048 and profile.dtype == "float16" and profile.device == "cuda"
        assert profile.generation_config() == {"temperature": 0.6, "top_k": 40, "max_new_tokens": 128}
