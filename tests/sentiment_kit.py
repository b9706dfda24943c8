"""Shared by the sentiment tests: one small trained model folder per test session.

The distilled token table (one MiniLM pass over the vocabulary) and a static head trained on
800 English + all French training rows are built once, then copied into each test's
LAKEHOUSE_HOME/models (≈ 1 s)."""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_models: Path | None = None
_lock = threading.Lock()


def trained_models() -> Path:
    global _models
    with _lock:
        if _models is None:
            from sentiment.classifier import train_head

            folder = Path(tempfile.mkdtemp(prefix="sentiment-models-"))
            train_head(folder, "static", max_english=800)
            _models = folder
    return _models


def install_models(models_dir: Path) -> None:
    shutil.copytree(trained_models(), models_dir, dirs_exist_ok=True)


class Receiver:
    """A real HTTP server on a free port recording JSON POST bodies (the alert webhook)."""

    def __init__(self, status: int = 200) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
