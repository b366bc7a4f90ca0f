"""Fixtures for the deployment tests: the rendered kustomize overlays and the external
tools they need (kubectl with kustomize, Prometheus' promtool and server).

`make test` installs the tools when missing (Makefile target `tools`). Run directly
without them, these tests skip with the reason, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ("dev", "prod")


def _running_in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_tool(name: str) -> str:
    """The path of a command-line tool, from PATH or the project's virtualenv."""
    found = shutil.which(name) or shutil.which(name, path=str(ROOT / ".venv" / "bin"))
    if found is None:
        message = f"{name} is not installed (run `make tools`)"
        if _running_in_ci():
            pytest.fail(message + " (CI=true: deployment tests must run)")
        pytest.skip(message)
    return found


def render_overlay(overlay: str) -> list[dict[str, Any]]:
    kubectl = require_tool("kubectl")
    result = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "deploy" / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, f"kubectl kustomize {overlay} failed:\n{result.stderr}"
    return [document for document in yaml.safe_load_all(result.stdout) if document]


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """overlay name -> the objects `kubectl kustomize deploy/k8s/overlays/<name>` renders."""
    return {overlay: render_overlay(overlay) for overlay in OVERLAYS}


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_tool("promtool")
