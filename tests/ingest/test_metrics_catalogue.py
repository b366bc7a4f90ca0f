"""The ingest exports exactly the metrics docs/metrics.md lists for it."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

CATALOGUE = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def catalogued_ingest_metrics() -> set[str]:
    section = CATALOGUE.read_text(encoding="utf-8").split("## ingest", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(vtr_ingest_[a-z_]+)`", section, flags=re.MULTILINE))


async def test_exported_ingest_metrics_match_the_catalogue(ingest: httpx.AsyncClient) -> None:
    text = (await ingest.get("/metrics")).text
    exported = {
        name
        for name in re.findall(r"^# HELP (vtr_ingest_[a-z_]+) ", text, flags=re.MULTILINE)
        if not name.endswith("_created")  # prometheus_client's creation-time series
    }
    assert catalogued_ingest_metrics() == exported
    assert "vtr_http_requests_total" in text
