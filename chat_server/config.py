from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from services.settings import ServiceSettings, under_data_dir


class ChatServerSettings(ServiceSettings):
    """How the chat model is served. Env prefix ``CHAT_``."""

    model_config = SettingsConfigDict(env_prefix="CHAT_", extra="ignore")

    port: int = 8001
    profile: str = "smollm2-135m-instruct"
    model_path: str | None = Field(
        default=None, description="Serve this directory or hub id instead of the profile's source."
    )
    cache_dir: Path = Field(
        default_factory=under_data_dir("models"), description="Where prepared models are kept (prepare-models)."
    )
    tensor_parallel_size: int | None = Field(default=None, ge=1, description="Overrides the profile's value.")
    max_model_len: int | None = Field(default=None, ge=64, description="Overrides the profile's value.")
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    kv_cache_space_gib: int = Field(default=2, ge=1, description="VLLM_CPU_KVCACHE_SPACE on CPU.")
    max_num_seqs: int | None = Field(default=None, ge=1)
    lora_modules: dict[str, str] = Field(default_factory=dict, description="Adapter name -> directory, served by name.")
    enable_lora: bool | None = Field(
        default=None,
        description="Serve LoRA adapters (--enable-lora) and let the internal API load and unload them at run time "
        "(VLLM_ALLOW_RUNTIME_LORA_UPDATING; `openchatkit adapters`), without a restart. Unset: on for GPU "
        "chat profiles; off on CPU, where vllm-cpu 0.32 turns torch.compile off whenever LoRA is enabled "
        "(about 3.5x fewer tokens/s): set true there to hot-load adapters.",
    )
    max_loras: int = Field(default=4, ge=1, description="Adapters served in one batch (--max-loras).")
    max_lora_rank: int = Field(default=16, ge=1, description="The largest adapter rank accepted (--max-lora-rank).")
    api_key: SecretStr | None = Field(
        default=None,
        description="The key vLLM requires on /v1 (VLLM_API_KEY); default CHAT_INTERNAL_TOKEN. The gateway "
        "sends it as its upstream's api_key.",
    )
    compile_cache_dir: Path = Field(
        default_factory=under_data_dir("compile-cache"),
        description="TorchInductor's cache of compiled kernels (TORCHINDUCTOR_CACHE_DIR), kept across restarts.",
    )
    aot_compile: bool | None = Field(
        default=None,
        description="VLLM_USE_AOT_COMPILE. Unset: off on CPU, where vllm-cpu 0.32 with torch 2.13 cannot load its own "
        "AOT artifacts (it recompiles on every start), vLLM's default on GPUs.",
    )
    extra_args: list[str] = Field(default_factory=list, description="Passed to vLLM as they are.")
