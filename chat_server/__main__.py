"""``python -m chat_server``: prepare the profile's model, then become vLLM's server."""

from __future__ import annotations

import os

from chat_server.config import ChatServerSettings
from chat_server.launch import build_vllm_launch
from chat_server.prepare import prepare_model
from chat_server.profiles import get_profile
from services.logging import configure_logging


def main() -> None:
    settings = ChatServerSettings()
    configure_logging("chat_server", settings.log_level, settings.log_json)
    profile = get_profile(settings.profile)
    model = settings.model_path or prepare_model(profile, settings.cache_dir)
    launch = build_vllm_launch(profile, settings, model)
    # exec: vLLM gets our pid, so the supervisor's signals reach it directly.
    os.execve(launch.argv[0], launch.argv, launch.env)


if __name__ == "__main__":
    main()
