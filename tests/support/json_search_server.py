"""A small real HTTP server answering JSON like a search API, for live-source tests.

    python -m tests.support.json_search_server PORT

GET /search?q=..&n=..   {"results": [{"title", "content", "url"}, ...]}
GET /nested?q=..        {"data": {"items": [{"headline", "body": {"text"}, "link"}]}}
GET /slow?q=..          /search after 3 seconds
GET /error              500
GET /text               200 with a body that is not JSON
GET /stats              {"requests": how many /search, /nested and /slow requests so far}
"""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_count = 0
_lock = threading.Lock()


def results(query: str, n: int) -> list[dict[str, str]]:
    return [
        {
            "title": f"Live result {i} for {query}",
            "content": f"Live source fact number {i} about {query}.",
            "url": f"https://live.example/{i}?q={urllib.parse.quote(query)}",
        }
        for i in range(1, n + 1)
    ]


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        return None

    def _json(self, status: int, body: object) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        global _count
        url = urllib.parse.urlparse(self.path)
        params = urllib.parse.parse_qs(url.query)
        query = params.get("q", [""])[0]
        n = int(params.get("n", ["3"])[0])
        if url.path in ("/search", "/nested", "/slow"):
            with _lock:
                _count += 1
        if url.path == "/search":
            self._json(200, {"results": results(query, n)})
        elif url.path == "/nested":
            items = [
                {"headline": r["title"], "body": {"text": r["content"]}, "link": r["url"]} for r in results(query, n)
            ]
            self._json(200, {"data": {"items": items}})
        elif url.path == "/slow":
            time.sleep(3)
            self._json(200, {"results": results(query, n)})
        elif url.path == "/error":
            self._json(500, {"error": "broken on purpose"})
        elif url.path == "/text":
            raw = b"this is not json"
            self.send_response(200)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)
        elif url.path in ("/stats", "/health"):
            self._json(200, {"requests": _count})
        else:
            self._json(404, {"error": "no such path"})


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
