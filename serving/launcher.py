"""Start the real BentoML server in a child process and wait until it is ready.

Used by the end-to-end tests and the benchmarks, which both need a real server over HTTP.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path, port: int | None = None, timeout: float = 180.0,
                 log_path: Path | None = None, env: dict[str, str] | None = None
                 ) -> tuple[subprocess.Popen, str]:
    """Serve COOPSCORE_HOME=home on 127.0.0.1; returns the process and its base URL.
    `env` adds settings such as COOPSCORE_RATE_LIMIT or COOPSCORE_RELOAD_SECONDS."""
    port = port or free_port()
    env = {**os.environ, "COOPSCORE_HOME": str(home), "BENTOML_HOME": str(Path(home) / "bentoml"),
           **(env or {})}
    log_path = log_path or Path(home) / "server.log"
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", "serving.service:CoopScore",
                             "--host", "127.0.0.1", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited; its log:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"the server was not ready after {timeout:.0f} s; see {log_path}")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
