from moderation_server.app import build_app
from moderation_server.config import ModerationSettings
from services.server import serve

if __name__ == "__main__":
    settings = ModerationSettings()
    serve(build_app(settings), settings, "moderation")
