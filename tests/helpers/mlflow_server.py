"""An MLflow tracking server on a free loopback port for tests: ``with running_mlflow([...]) as url: ...``.

The command is given whole (``mlflow ui ...`` or ``mlflow server ...``, as the README shows them) plus
``--host 127.0.0.1 --port <free>``; it runs in its own process group, which is ended on exit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen) -> None:
    """End the server and the workers it started: its own process group, nothing else."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=30)
            break
        except subprocess.TimeoutExpired:
            continue
    proc.wait()


@contextlib.contextmanager
def running_mlflow(command: list[str | Path], log: Path, timeout_s: float = 120) -> Iterator[str]:
    """Start ``command`` on a free loopback port; yield its base URL once ``/health`` answers."""
    port = free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, whatever HTTP_PROXY says
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            assert proc.poll() is None, f"{command[1]} exited:\n{log.read_text()[-3000:]}"
            try:
                with direct.open(f"{base}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"mlflow not healthy in {timeout_s} s:\n{log.read_text()[-3000:]}"
            time.sleep(0.25)
        yield base
    finally:
        stop(proc)
