from gateway.app import build_app
from gateway.config import GatewaySettings
from services.server import serve

if __name__ == "__main__":
    settings = GatewaySettings()
    serve(build_app(settings), settings, "gateway")
