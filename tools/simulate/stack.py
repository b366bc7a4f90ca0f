"""Start vtrwatch services as production-like subprocesses (``python -m services.<name>``)
on free ports, for the acceptance test, the demo and the benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx

from tools.localstack import free_port

ROOT = Path(__file__).resolve().parents[2]


def wait_until_ready(url: str, timeout_seconds: float = 60.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``url`` (``/readyz``) until it answers 200."""
    deadline = time.monotonic() + timeout_seconds
    last = "no answer"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {process.returncode}")
        try:
            response = httpx.get(url, timeout=2.0)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code} {response.text[:200]}"
        except httpx.HTTPError as error:
            last = repr(error)
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout_seconds}s: {last}")


@dataclass
class ServiceProcess:
    """One service, migrated first when it keeps a database."""

    name: str
    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    migrate: bool = True
    _process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def _environment(self) -> dict[str, str]:
        return {**os.environ, **self.env, "VTR_HTTP_PORT": str(self.port), "VTR_HTTP_HOST": "127.0.0.1"}

    def start(self, ready_timeout_seconds: float = 60.0) -> ServiceProcess:
        with open(self.log_path, "ab") as log:
            if self.migrate and (ROOT / "services" / self.name / "migrations").is_dir():
                subprocess.run(
                    [sys.executable, "-m", f"services.{self.name}", "migrate"],
                    cwd=ROOT,
                    env=self._environment(),
                    stdout=log,
                    stderr=log,
                    check=True,
                )
            self._process = subprocess.Popen(
                [sys.executable, "-m", f"services.{self.name}"],
                cwd=ROOT,
                env=self._environment(),
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        wait_until_ready(f"{self.url}/readyz", ready_timeout_seconds, self._process)
        return self

    def stop(self, timeout_seconds: float = 20.0) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.stop()
