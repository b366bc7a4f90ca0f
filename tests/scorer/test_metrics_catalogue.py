"""The scorer exports exactly the metrics docs/metrics.md lists for it, with those labels."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram

from services.scorer import metrics

CATALOGUE = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def documented() -> dict[str, set[str]]:
    text = CATALOGUE.read_text()
    section = text.split("## scorer", 1)[1].split("\n## ", 1)[0]
    found: dict[str, set[str]] = {}
    for line in section.splitlines():
        match = re.match(r"\| `(vtr_scorer_\w+)` \| \w+ \|([^|]*)\|", line)
        if match:
            found[match.group(1)] = set(re.findall(r"`(\w+)`", match.group(2)))
    return found


def exported() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for value in vars(metrics).values():
        if isinstance(value, Counter | Gauge | Histogram):
            name = value._name + ("_total" if isinstance(value, Counter) else "")
            found[name] = set(value._labelnames)
    return found


def test_scorer_metrics_match_the_catalogue() -> None:
    docs = documented()
    assert docs, "no scorer section found in docs/metrics.md"
    code = exported()
    assert set(code) == set(docs)
    for name, labels in code.items():
        # The catalogue also lists label values in backticks; every label name must be there.
        assert labels <= docs[name], name
