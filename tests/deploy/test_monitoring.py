"""Alert rules and dashboards: generated files up to date, the PrometheusRule identical to
the plain rules file, `promtool check rules` and `promtool test rules` pass, every alert
has a runbook paragraph and a firing unit test, every dashboard is well formed."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import ROOT
from tests.deploy.promql import alert_rules, all_expressions, dashboard_panels, metric_names
from tools import monitoring

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RULES_TEST_FILE = PROMETHEUS_DIR / "vtrwatch.rules.test.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"
METRICS_CATALOGUE = ROOT / "docs" / "metrics.md"
REQUIRED_ALERT_TOPICS = {
    "VtrIngestErrorRatioHigh": "vtr_http_requests_total",
    "VtrIngestLatencyHigh": "vtr_http_request_duration_seconds",
    "VtrCarrierSilent": "vtr_ingest_last_webhook_timestamp_seconds",
    "VtrDeadLettersAppearing": "vtr_ingest_deadletters_total",
    "VtrUnmappedCarrierCodes": "vtr_ingest_unmapped_codes_total",
    "VtrScorerLagGrowing": "vtr_scorer_consumer_lag",
    "VtrScorerStuck": "vtr_scorer_records_total",
    "VtrScorerOutboxGrowing": "vtr_scorer_outbox_backlog",
    "VtrNotifierOutboxGrowing": "vtr_notifier_outbox_backlog",
    "VtrNotifierDeliveryFailures": "vtr_notifier_notifications_total",
    "VtrAmazonVtrDiffers": "vtr_scorer_amazon_vtr_max_difference_points",
}


def github_anchor(heading: str) -> str:
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def test_generated_files_are_up_to_date() -> None:
    assert monitoring.stale_files() == [], "run `python -m tools.monitoring` and commit the result"


def test_prometheus_rule_holds_exactly_the_plain_rule_groups() -> None:
    plain = yaml.safe_load(monitoring.RULES_FILE.read_text())
    (wrapped,) = yaml.safe_load_all(monitoring.PROMETHEUS_RULE_FILE.read_text())
    assert wrapped["kind"] == "PrometheusRule"
    assert wrapped["spec"]["groups"] == plain["groups"]


def test_promtool_checks_the_plain_and_the_wrapped_rules(promtool: str, tmp_path: Path) -> None:
    (wrapped,) = yaml.safe_load_all(monitoring.PROMETHEUS_RULE_FILE.read_text())
    unwrapped = tmp_path / "from-prometheusrule.yml"
    unwrapped.write_text(yaml.safe_dump({"groups": wrapped["spec"]["groups"]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(monitoring.RULES_FILE), str(unwrapped)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == 2


def test_promtool_unit_tests_pass(promtool: str) -> None:
    result = subprocess.run(
        [promtool, "test", "rules", str(RULES_TEST_FILE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=PROMETHEUS_DIR,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test_that_makes_it_fire() -> None:
    tests = yaml.safe_load(RULES_TEST_FILE.read_text())["tests"]
    firing = {case["alertname"] for test in tests for case in test.get("alert_rule_test", []) if case.get("exp_alerts")}
    assert {rule["alert"] for rule in alert_rules()} <= firing


def test_the_issue_s_alerts_exist_on_the_right_metrics() -> None:
    by_name = {rule["alert"]: rule for rule in alert_rules()}
    for alert, metric in REQUIRED_ALERT_TOPICS.items():
        assert metric in metric_names(by_name[alert]["expr"]), alert


def test_every_alert_links_its_runbook_paragraph() -> None:
    anchors = {github_anchor(line.lstrip("#")) for line in RUNBOOK.read_text().splitlines() if line.startswith("## ")}
    for rule in alert_rules():
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning")
        url = annotations["runbook_url"]
        assert url.endswith("docs/runbook.md#" + rule["alert"].lower()), rule["alert"]
        assert rule["alert"].lower() in anchors, f"docs/runbook.md has no section for {rule['alert']}"


def test_queries_use_only_catalogued_metrics_and_never_a_seller() -> None:
    catalogue = set(re.findall(r"`(vtr_[a-z0-9_]+)`", METRICS_CATALOGUE.read_text()))
    expressions = all_expressions()
    assert len(expressions) > 40
    for expression in expressions:
        # A label or grouping by seller (the metric family vtr_scorer_seller_categories is fine).
        assert not re.search(r"\bseller(_id)?\b", expression.expr), expression.origin
        unknown = metric_names(expression.expr) - catalogue
        assert not unknown, f"{expression.origin}: {sorted(unknown)} not in docs/metrics.md"


@pytest.mark.parametrize("dashboard", monitoring.DASHBOARDS, ids=lambda dashboard: dashboard.slug)
def test_dashboard_json_is_well_formed(dashboard: monitoring.Dashboard) -> None:
    document = json.loads((monitoring.GRAFANA_DIR / f"{dashboard.slug}.json").read_text())
    assert document["title"] in ("vtrwatch / Service health", "vtrwatch / VTR overview")
    (variable,) = document["templating"]["list"]
    assert (variable["name"], variable["type"], variable["query"]) == ("datasource", "datasource", "prometheus")
    ids = [panel["id"] for panel in document["panels"]]
    assert len(ids) == len(set(ids))
    for panel in document["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"]["uid"] == "${datasource}"
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24


def test_both_dashboards_cover_what_operators_watch() -> None:
    titles = {title: [] for title, _ in dashboard_panels()}
    for title, panel in dashboard_panels():
        titles[title].append(panel)
    health = " ".join(target["expr"] for panel in titles["vtrwatch / Service health"] for target in panel["targets"])
    for metric in (
        "vtr_http_requests_total", "vtr_ingest_webhooks_total", "vtr_ingest_produce_latency_seconds_bucket",
        "vtr_ingest_deadletters_total", "vtr_scorer_consumer_lag", "vtr_scorer_db_transaction_seconds_bucket",
        "vtr_scorer_outbox_backlog", "vtr_notifier_outbox_backlog", "vtr_notifier_notifications_total",
    ):  # fmt: skip
        assert metric in health, metric
    overview = " ".join(target["expr"] for panel in titles["vtrwatch / VTR overview"] for target in panel["targets"])
    for needle in (
        "by (level)", "by (marketplace, level)", "vtr_scorer_packages", "by (carrier, status)", "by (channel",
    ):  # fmt: skip
        assert needle in overview, needle


def test_dashboard_configmaps_are_labelled_for_the_grafana_sidecar() -> None:
    documents = list(yaml.safe_load_all(monitoring.DASHBOARD_CONFIGMAPS_FILE.read_text()))
    assert len(documents) == len(monitoring.DASHBOARDS)
    for document, dashboard in zip(documents, monitoring.DASHBOARDS, strict=True):
        assert document["metadata"]["labels"] == {"grafana_dashboard": "1"}
        (content,) = document["data"].values()
        assert json.loads(content) == json.loads((monitoring.GRAFANA_DIR / f"{dashboard.slug}.json").read_text())
