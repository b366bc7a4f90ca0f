"""A credentials topic of each test's own on the session's broker, and the CLI run as an
operator runs it (``main`` with the environment's settings)."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from shared.credentials.__main__ import main
from tools.localstack import TansuBroker


@dataclass(frozen=True)
class CliRun:
    code: int
    out: str
    err: str

    def field(self, name: str) -> str:
        (line,) = [line for line in self.out.splitlines() if line.startswith(f"{name}: ")]
        return line.split(": ", 1)[1]


Cli = Callable[..., CliRun]


@pytest.fixture
def credential_env(kafka_broker: TansuBroker, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:8]
    env = {
        "VTR_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
        "VTR_CREDENTIALS_TOPIC": f"vtr.credentials.test-{suffix}",
        "VTR_CREDENTIAL_USAGE_TOPIC": f"vtr.credential-usage.test-{suffix}",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def cli(credential_env: dict[str, str]) -> Cli:
    def run(*arguments: str) -> CliRun:
        out, err = io.StringIO(), io.StringIO()
        code = main(list(arguments), out, err)
        return CliRun(code, out.getvalue(), err.getvalue())

    return run
