"""``python -m gateway``: the public API on :8000 (``GATEWAY_WORKERS`` processes)."""

from gateway.app import build_app
from gateway.config import GatewaySettings
from services.server import run_service


def main() -> None:
    settings = GatewaySettings()
    run_service("gateway", settings, build_app, "gateway.app:create_app", settings.workers)


if __name__ == "__main__":
    main()
