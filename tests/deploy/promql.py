"""Every PromQL expression vtrwatch ships (dashboard panels and alert rules), and the metric
names they use. Shared by the static monitoring tests and the end-to-end test."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tools import monitoring

_METRIC = re.compile(r"\b(vtr_[a-z0-9_]+)")
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


@dataclass(frozen=True)
class Expression:
    origin: str  # "dashboard <title> / <panel>" or "alert <name>"
    expr: str


def metric_names(expr: str) -> set[str]:
    """The vtr_* metric families an expression reads (histogram series mapped to their family)."""
    names = set()
    for name in _METRIC.findall(expr):
        for suffix in _HISTOGRAM_SUFFIXES:
            if name.endswith(suffix) and not name.endswith("_total" + suffix):
                name = name.removesuffix(suffix)
                break
        names.add(name)
    return names


def series_names(expr: str) -> set[str]:
    """The series names as written (``..._bucket`` kept), for asking Prometheus about them."""
    return set(_METRIC.findall(expr))


def dashboard_panels() -> list[tuple[str, dict[str, Any]]]:
    panels = []
    for dashboard in monitoring.DASHBOARDS:
        document = monitoring.dashboard_json(dashboard)
        for panel in document["panels"]:
            if panel["type"] != "row":
                panels.append((document["title"], panel))
    return panels


def dashboard_expressions() -> list[Expression]:
    return [
        Expression(f"dashboard {title} / {panel['title']} / {target['refId']}", target["expr"])
        for title, panel in dashboard_panels()
        for target in panel["targets"]
    ]


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in monitoring.load_rule_groups() for rule in group["rules"] if "alert" in rule]


def alert_expressions() -> list[Expression]:
    return [Expression(f"alert {rule['alert']}", rule["expr"]) for rule in alert_rules()]


def all_expressions() -> list[Expression]:
    return dashboard_expressions() + alert_expressions()
