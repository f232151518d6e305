"""A real OpenAI-compatible server for the serving-engine tests, and a real reverse proxy in front of it.

The server is llama-cpp-python's (`pip install -e ".[server]"`, which compiles llama.cpp once) serving the
bundled SmolLM2 GGUF under two names: the base model and an alias standing in for an adapter the server
"already serves". The proxy forwards every request to that server unchanged; tests tell it to answer the
next N requests with 429 (or every request after the Nth with 503) and read how many requests it had in
flight at once.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

BASE_ALIAS = "smollm2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_available() -> str:
    """"" when llama-cpp-python's server can be imported, else why not."""
    try:
        import llama_cpp.server.app  # noqa: F401
    except ImportError as exc:
        return f"llama-cpp-python[server] is not installed (make test installs the [server] extra): {exc}"
    return ""


class LlamaServer:
    """`python -m llama_cpp.server` on 127.0.0.1 with a config file; stopped by the test that started it."""

    def __init__(self, gguf: Path, folder: Path, aliases: list[str], n_ctx: int = 2048, threads: int = 1):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        models = [{"model": str(gguf), "model_alias": alias, "n_ctx": n_ctx, "n_threads": threads, "n_batch": 256,
                   "verbose": False} for alias in [BASE_ALIAS, *aliases]]
        self.config = Path(folder) / "server.json"
        self.config.write_text(json.dumps({"host": "127.0.0.1", "port": self.port, "models": models,
                                           "interrupt_requests": False}))
        self.log = open(Path(folder) / "server.log", "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--config_file", str(self.config)],
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def wait(self, timeout: float = 180.0) -> LlamaServer:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited: {Path(self.log.name).read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/models", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"llama.cpp server did not answer within {timeout} s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class Proxy:
    """A reverse proxy on 127.0.0.1 that forwards to `upstream` (streaming), with failure switches."""

    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/").removesuffix("/v1")
        self.reject_next = 0          # answer this many next requests with 429
        self.fail_after: int | None = None  # answer every request after this many forwarded ones with 503
        self.statuses: list[int] = []
        self.forwarded = 0
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        self.http = httpx.Client(timeout=None)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self) -> None:
        with self.lock:
            self.reject_next, self.fail_after, self.statuses, self.forwarded = 0, None, [], 0
            self.max_in_flight = self.in_flight

    def close(self) -> None:
        self.server.shutdown()
        self.http.close()

    def _decide(self) -> int | None:
        """The status to answer without forwarding, or None to forward."""
        with self.lock:
            if self.reject_next > 0:
                self.reject_next -= 1
                return 429
            if self.fail_after is not None and self.forwarded >= self.fail_after:
                return 503
            self.forwarded += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return None

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self._relay(None)

            def do_POST(self):
                self._relay(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

            def _relay(self, body):
                status = proxy._decide()
                if status is not None:
                    with proxy.lock:
                        proxy.statuses.append(status)
                    data = json.dumps({"error": {"message": f"proxy says {status}"}}).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                ended = False

                def end() -> None:  # the request leaves the count before the client can see its end
                    nonlocal ended
                    if not ended:
                        ended = True
                        with proxy.lock:
                            proxy.in_flight -= 1

                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() in {"content-type", "authorization"}}
                    with proxy.http.stream(self.command, proxy.upstream + self.path, content=body,
                                           headers=headers) as up:
                        with proxy.lock:
                            proxy.statuses.append(up.status_code)
                        self.send_response(up.status_code)
                        self.send_header("Content-Type", up.headers.get("content-type", "application/json"))
                        self.end_headers()  # HTTP/1.0: the body ends when the connection closes
                        for chunk in up.iter_raw():
                            if b"[DONE]" in chunk:  # a streaming client stops reading here
                                end()
                            self.wfile.write(chunk)
                            self.wfile.flush()
                finally:
                    end()

        return Handler
