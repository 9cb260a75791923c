"""A loopback stand-in for the Hugging Face hub: the routes ``hf_hub_download`` calls, over files the test makes.

``huggingface_hub`` downloads a file in two requests to
``{HF_ENDPOINT}/datasets/{repo}/resolve/{revision}/{path}``: a ``HEAD`` whose
``X-Repo-Commit``, ``ETag`` and ``Content-Length`` headers say which commit
and blob it is (no ``X-Xet-Hash``, so no Xet transfer), then a ``GET`` of the
bytes. A missing file or repo is a 404 with ``X-Error-Code`` set, as the hub does.
"""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class HubStandIn:
    """Serves ``files[(repo, path)] = bytes`` on 127.0.0.1 until ``stop()``; ``requests`` logs (method, url path)."""

    def __init__(self, files: dict[tuple[str, str], bytes]) -> None:
        self.files = files
        self.requests: list[tuple[str, str]] = []
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:
                self._answer(body=False)

            def do_GET(self) -> None:
                self._answer(body=True)

            def _answer(self, *, body: bool) -> None:
                standin.requests.append((self.command, self.path))
                found = standin._find(self.path)
                if isinstance(found, str):
                    self.send_response(404)
                    self.send_header("X-Error-Code", found)
                    self.send_header("X-Error-Message", f"{found} (stand-in)")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{hashlib.sha256(found).hexdigest()}"')
                self.send_header("Content-Length", str(len(found)))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                if body:
                    self.wfile.write(found)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _find(self, url_path: str) -> bytes | str:
        path = url_path.split("?", 1)[0]
        if not path.startswith("/datasets/") or "/resolve/" not in path:
            return "RepoNotFound"
        repo, _, rest = path[len("/datasets/") :].partition("/resolve/")
        _revision, _, file = rest.partition("/")
        if not any(r == repo for r, _ in self.files):
            return "RepoNotFound"
        return self.files.get((repo, file), "EntryNotFound")

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> HubStandIn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
