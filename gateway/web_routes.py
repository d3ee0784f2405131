"""The web chat page, served by the gateway at ``/``.

The page's own files live in ``gateway/web/static/`` (served under ``/static/``). The
browser libraries it uses (Markdown renderer, HTML sanitiser, syntax highlighter) are
installed from npm by ``make web`` (``npm ci`` against the committed ``package-lock.json``)
into ``gateway/web/node_modules`` and served from there under ``/static/vendor/<name>``;
only the files named in ``VENDOR`` are reachable. Without them the page still works and
shows answers as plain text.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from services.errors import NotFoundError

WEB_DIR = Path(__file__).parent / "web"
STATIC_DIR = WEB_DIR / "static"
NODE_MODULES = WEB_DIR / "node_modules"

VENDOR: dict[str, str] = {
    "marked.js": "marked/lib/marked.umd.js",
    "purify.js": "dompurify/dist/purify.min.js",
    "highlight.js": "@highlightjs/cdn-assets/highlight.min.js",
    "highlight-light.css": "@highlightjs/cdn-assets/styles/github.min.css",
    "highlight-dark.css": "@highlightjs/cdn-assets/styles/github-dark.min.css",
}
"""Public name -> file under ``node_modules`` (versions pinned in ``package-lock.json``)."""

# Defence in depth behind the sanitiser: only our own scripts, styles and connections.
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)


@router.get("/static/vendor/{name}")
async def vendor(name: str) -> FileResponse:
    """One of the npm-installed libraries; 404 when unknown or not installed (run ``make web``)."""
    relative = VENDOR.get(name)
    if relative is None or not (NODE_MODULES / relative).is_file():
        raise NotFoundError(f"'{name}' is not installed; run `make web`.", code="not_found")
    return FileResponse(NODE_MODULES / relative, headers={"Cache-Control": "no-cache"})


static_files = StaticFiles(directory=STATIC_DIR)
