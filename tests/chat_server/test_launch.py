"""The vLLM command line each profile produces (what a GPU box runs)."""

from __future__ import annotations

import json

from chat_server.config import ChatServerSettings
from chat_server.launch import build_vllm_launch
from chat_server.profiles import get_profile


def option(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_gpt_neoxt_20b_on_a_gpu_box() -> None:
    profile = get_profile("gpt-neoxt-chat-base-20b")
    launch = build_vllm_launch(profile, ChatServerSettings(tensor_parallel_size=2), profile.source)  # type: ignore[arg-type]
    argv = launch.argv
    assert argv[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert option(argv, "--model") == "togethercomputer/GPT-NeoXT-Chat-Base-20B"
    assert option(argv, "--served-model-name") == "gpt-neoxt-chat-base-20b"
    assert option(argv, "--dtype") == "float16"
    assert option(argv, "--max-model-len") == "2048"
    assert option(argv, "--tensor-parallel-size") == "2"
    assert option(argv, "--chat-template").endswith("openchatkit.jinja")
    assert json.loads(option(argv, "--override-generation-config")) == {
        "temperature": 0.6,
        "top_k": 40,
        "max_new_tokens": 128,
    }
    assert "--enforce-eager" not in argv, "torch.compile stays on"


def test_cpu_profile_is_offline_and_sizes_its_kv_cache(tmp_path) -> None:  # type: ignore[no-untyped-def]
    profile = get_profile("smollm2-135m-instruct")
    settings = ChatServerSettings(kv_cache_space_gib=3, lora_modules={"support-bot": str(tmp_path)})
    launch = build_vllm_launch(profile, settings, str(tmp_path))
    assert launch.env["VLLM_CPU_KVCACHE_SPACE"] == "3"
    assert launch.env["HF_HUB_OFFLINE"] == "1"
    assert "--enforce-eager" not in launch.argv
    assert "--gpu-memory-utilization" not in launch.argv
    assert "--chat-template" not in launch.argv, "SmolLM2 keeps its own template"
    assert option(launch.argv, "--lora-modules") == f"support-bot={tmp_path}"
    assert "--enable-lora" in launch.argv


def test_cpu_compiles_with_a_kept_inductor_cache(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """vllm-cpu 0.32's AOT artifacts do not load back (it recompiles every start): CPU runs leave AOT off and
    keep Inductor's kernel cache under the data dir; GPUs keep vLLM's AOT default."""
    cpu = build_vllm_launch(get_profile("smollm2-135m-instruct"), ChatServerSettings(data_dir=tmp_path), str(tmp_path))
    assert cpu.env["VLLM_USE_AOT_COMPILE"] == "0"
    assert cpu.env["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "compile-cache")
    gpu_profile = get_profile("gpt-neoxt-chat-base-20b")
    gpu = build_vllm_launch(gpu_profile, ChatServerSettings(compile_cache_dir=tmp_path / "c"), gpu_profile.source)  # type: ignore[arg-type]
    assert gpu.env["VLLM_USE_AOT_COMPILE"] == "1"
    assert gpu.env["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "c")


def test_lora_with_runtime_loading(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """On by default on GPUs; opt-in on CPU, where vllm-cpu 0.32 turns torch.compile off with LoRA."""
    gpu_profile = get_profile("gpt-neoxt-chat-base-20b")
    gpu = build_vllm_launch(gpu_profile, ChatServerSettings(), gpu_profile.source)  # type: ignore[arg-type]
    assert "--enable-lora" in gpu.argv and gpu.env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    profile = get_profile("smollm2-135m-instruct")
    assert "--enable-lora" not in build_vllm_launch(profile, ChatServerSettings(), str(tmp_path)).argv
    settings = ChatServerSettings(enable_lora=True, max_loras=3, max_lora_rank=32)
    launch = build_vllm_launch(profile, settings, str(tmp_path))
    assert "--enable-lora" in launch.argv and "--lora-modules" not in launch.argv
    assert option(launch.argv, "--max-loras") == "3" and option(launch.argv, "--max-lora-rank") == "32"
    assert launch.env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    off = build_vllm_launch(profile, ChatServerSettings(enable_lora=False), str(tmp_path))
    assert "--enable-lora" not in off.argv and "VLLM_ALLOW_RUNTIME_LORA_UPDATING" not in off.env


def test_vllm_logs_at_the_chat_log_level_whatever_its_parent_inherited(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Importing TRL sets VLLM_LOGGING_LEVEL=ERROR in its process; a vLLM started from a process
    that trained (tests, `openchatkit learn`) must still log at CHAT_LOG_LEVEL."""
    profile = get_profile("smollm2-135m-instruct")
    monkeypatch.setenv("VLLM_LOGGING_LEVEL", "ERROR")
    assert build_vllm_launch(profile, ChatServerSettings(), "m").env["VLLM_LOGGING_LEVEL"] == "INFO"
    quiet = ChatServerSettings(log_level="warning")
    assert build_vllm_launch(profile, quiet, "m").env["VLLM_LOGGING_LEVEL"] == "WARNING"
