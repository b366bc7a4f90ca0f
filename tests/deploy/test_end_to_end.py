"""End to end: the three services (as `python -m services.<name>`, on SQLite and a Tansu
broker), a real Prometheus scraping them with the vtrwatch rules loaded, and real traffic
(signed carrier webhooks, shipment uploads, a subscription, e-mail and Slack deliveries).
Then every PromQL expression of every dashboard panel and alert rule is evaluated against
that Prometheus and must return data, or be one of :data:`FAILURE_ONLY`: alerts that
only fire on a failure. Each of those has a promtool unit test that makes it fire
(test_monitoring.py checks that), their metrics must exist here, and the last tests below
cause two real failures (a service down, the broker down) and watch their alerts' queries
answer.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiosmtpd.controller import Controller

from tests.deploy.conftest import ROOT, require_tool
from tests.deploy.promql import Expression, all_expressions, series_names
from tools import monitoring
from tools.localstack import TansuBroker, free_port

pytestmark = pytest.mark.slow

SERVICE_NAMES = ("ingest", "scorer", "notifier")
DEV_API_KEY = "dev-api-key"
YUNEXPRESS_SECRET = "dev-yunexpress-secret"
SELLER = "E2E-SELLER-1"
SUBSCRIBER = "ops@seller.example"
BOUNCING = "nobody@seller.example"

#: Alert expressions that return nothing while everything works. Each one has a promtool
#: unit test that makes it fire (tests/deploy/test_monitoring.py checks that); the ones
#: marked "here" are also made to answer by a real failure at the end of this module.
FAILURE_ONLY = {
    "alert VtrServiceDown": "here: a service is stopped",
    "alert VtrIngestWorkerDown": "promtool: a worker unscrapable for 5 minutes (the stack runs no worker)",
    "alert VtrIngestErrorRatioHigh": "here: the broker is stopped",
    "alert VtrIngestLatencyHigh": "promtool: ingest slower than 500 ms at p99",
    "alert VtrCarrierSilent": "promtool: 3 hours without a push",
    "alert VtrCarrierScansStopped": "promtool: a carrier silent for every seller",
    "alert VtrScorerLagGrowing": "promtool: lag above 1000 and growing",
    "alert VtrScorerStuck": "promtool: lag and nothing applied for 10 minutes",
    "alert VtrScorerOutboxGrowing": "promtool: outbox growing for 15 minutes",
    "alert VtrNotifierStuck": "promtool: lag and nothing consumed for 10 minutes",
    "alert VtrNotifierOutboxGrowing": "promtool: outbox growing for 15 minutes",
    "alert VtrNotifierOutboxStale": "promtool: a notification older than 15 minutes",
    "alert VtrConsumerOffsetOutOfRange": "promtool: a partition stopped (tests/shared/consumer/test_upkeep.py)",
    "alert VtrConsumerRecordsParked": "promtool: a record parked (tests/shared/consumer/test_failures.py)",
    "alert VtrPushSourceOutage": "promtool: every carrier behind one push source silent while others scan",
    "alert VtrAmazonVtrDiffers": "promtool: Amazon's VTR and vtrwatch's differ by more than a point for a day",
    "alert VtrAmazonRoundStuck": "promtool: one seller's Amazon round running for six hours",
}
#: Grafana's built-in variables, as Grafana would expand them for a short time range.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "10m", "$__interval": "15s"}
DATA_DEADLINE_SECONDS = 60.0

Answers = dict[str, list[dict[str, Any]]]


# --- Stand-ins for the outside world --------------------------------------------------


@dataclass
class SmtpHandler:
    delivered: list[tuple[list[str], bytes]] = field(default_factory=list)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address == BOUNCING:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.delivered.append((list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted"


class SlackHook(BaseHTTPRequestHandler):
    received: list[bytes] = []  # noqa: RUF012 - shared by the handler instances of one server

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        SlackHook.received.append(self.rfile.read(length))
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_: Any) -> None:
        pass


# --- The stack --------------------------------------------------------------------------


@dataclass
class Stack:
    tmp: Path
    broker: TansuBroker
    ports: dict[str, int]
    prometheus_port: int
    smtp: SmtpHandler
    slack_url: str
    processes: dict[str, subprocess.Popen[bytes]]
    logs: dict[str, Path]

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = httpx.get(
            f"http://127.0.0.1:{self.prometheus_port}/api/v1/query", params={"query": expr}, timeout=10
        )
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", f"{expr}: {body}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def prometheus_api(self, path: str) -> Any:
        response = httpx.get(f"http://127.0.0.1:{self.prometheus_port}/api/v1/{path}", timeout=10)
        response.raise_for_status()
        return response.json()["data"]

    def stop(self, name: str) -> None:
        process = self.processes[name]
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def log_tail(self, name: str) -> str:
        path = self.logs.get(name)
        return path.read_text(errors="replace")[-3000:] if path and path.exists() else ""


def missing_services() -> list[str]:
    return [name for name in SERVICE_NAMES if not (ROOT / "services" / name / "__main__.py").exists()]


def wait_until(condition: Callable[[], bool], limit_seconds: float, what: str) -> None:
    """Poll background work (a safety-net timeout, not a timing assertion)."""
    deadline = time.monotonic() + limit_seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {limit_seconds}s: {what}")
        time.sleep(0.2)


def ready(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(url, timeout=2).status_code == 200
    return False


def service_environment(stack_tmp: Path, broker: TansuBroker, ports: dict[str, int], smtp_port: int) -> dict[str, str]:
    keep = {key: value for key, value in os.environ.items() if not key.startswith("VTR_")}
    return {
        **keep,
        "PYTHONPATH": str(ROOT),
        "VTR_ENV": "dev",
        "VTR_LOG_LEVEL": "WARNING",
        "VTR_KAFKA_BOOTSTRAP": broker.bootstrap,
        "VTR_KAFKA_TOPIC_PARTITIONS": "2",
        "VTR_DRAIN_SECONDS": "1",
        # ingest: answer 503 quickly when the broker is gone (the last test).
        "VTR_PRODUCE_DEADLINE_SECONDS": "1",
        "VTR_KAFKA_PRODUCE_TIMEOUT_SECONDS": "1",
        # scorer: publish and refresh its gauges often.
        "VTR_PUBLISH_INTERVAL_SECONDS": "0.2",
        "VTR_CLOCK_INTERVAL_SECONDS": "1",
        "VTR_GAUGES_INTERVAL_SECONDS": "1",
        "VTR_MODEL_REFRESH_SECONDS": "1",
        # notifier: no debounce, short waits, retries within the test.
        "VTR_SCORER_URL": f"http://127.0.0.1:{ports['scorer']}",
        "VTR_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "VTR_SLACK_ALLOWED_PREFIXES": "http://127.0.0.1:",
        "VTR_SLACK_ALLOW_PRIVATE_ADDRESSES": "true",
        "VTR_DEBOUNCE_SECONDS": "0",
        "VTR_TICK_SECONDS": "0.5",
        "VTR_OUTBOX_POLL_SECONDS": "0.2",
        "VTR_SCORER_WAIT_SECONDS": "5",
        "VTR_OUTBOX_DIR": str(stack_tmp / "outbox"),
    }


def prometheus_config(stack_tmp: Path, ports: dict[str, int]) -> Path:
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(monitoring.RULES_FILE)],
        "scrape_configs": [
            {"job_name": name, "static_configs": [{"targets": [f"127.0.0.1:{ports[name]}"]}]} for name in SERVICE_NAMES
        ],
    }
    path = stack_tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    missing = missing_services()
    if missing:
        pytest.skip(f"service packages not built yet: {', '.join(missing)} (services/<name>/__main__.py)")
    prometheus = require_tool("prometheus")
    tmp = tmp_path_factory.mktemp("e2e")
    broker = TansuBroker(log_path=tmp / "tansu.log").start()
    smtp = SmtpHandler()
    smtp_port = free_port()
    smtp_controller = Controller(smtp, hostname="127.0.0.1", port=smtp_port)
    smtp_controller.start()
    SlackHook.received = []
    slack_server = ThreadingHTTPServer(("127.0.0.1", 0), SlackHook)
    threading.Thread(target=slack_server.serve_forever, daemon=True).start()
    ports = {name: free_port() for name in SERVICE_NAMES}
    env = service_environment(tmp, broker, ports, smtp_port)
    processes: dict[str, subprocess.Popen[bytes]] = {}
    logs: dict[str, Path] = {}
    stack = Stack(
        tmp, broker, ports, free_port(), smtp, f"http://127.0.0.1:{slack_server.server_port}/hook", processes, logs
    )

    def start(name: str, command: list[str], extra_env: dict[str, str] | None = None) -> None:
        logs[name] = tmp / f"{name}.log"
        output = logs[name].open("ab")
        processes[name] = subprocess.Popen(
            command, cwd=tmp, env={**env, **(extra_env or {})}, stdout=output, stderr=output, start_new_session=True
        )
        output.close()

    try:
        for name in SERVICE_NAMES:
            database = {"VTR_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / (name + '.db')}"}
            if name != "ingest":
                migrated = subprocess.run(
                    [sys.executable, "-m", f"services.{name}", "migrate"],
                    cwd=tmp,
                    env={**env, **database},
                    capture_output=True,
                    timeout=120,
                    check=False,
                )
                assert migrated.returncode == 0, migrated.stderr.decode()[-3000:]
            start(name, [sys.executable, "-m", f"services.{name}"], {**database, "VTR_HTTP_PORT": str(ports[name])})
        for name in SERVICE_NAMES:
            wait_until(
                lambda name=name: ready(stack.url(name) + "/readyz"), 90, f"{name} ready\n{stack.log_tail(name)}"
            )
        start(
            "prometheus",
            [
                prometheus,
                f"--config.file={prometheus_config(tmp, ports)}",
                f"--storage.tsdb.path={tmp / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{stack.prometheus_port}",
                "--log.level=warn",
            ],
        )
        wait_until(
            lambda: ready(f"http://127.0.0.1:{stack.prometheus_port}/-/ready"),
            60,
            f"prometheus ready\n{stack.log_tail('prometheus')}",
        )
        yield stack
    finally:
        for name in reversed(list(processes)):
            stack.stop(name)
        slack_server.shutdown()
        smtp_controller.stop()
        broker.stop()


# --- Traffic ----------------------------------------------------------------------------


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {DEV_API_KEY}"}


def yunexpress_push(client: httpx.Client, stack: Stack, body: bytes, secret: str = YUNEXPRESS_SECRET) -> httpx.Response:
    from services.ingest.signatures import (
        YUNEXPRESS_SIGNATURE_HEADER,
        YUNEXPRESS_TIMESTAMP_HEADER,
        yunexpress_signature,
    )

    timestamp = str(int(time.time() * 1000))
    headers = {
        "content-type": "application/json",
        YUNEXPRESS_TIMESTAMP_HEADER: timestamp,
        YUNEXPRESS_SIGNATURE_HEADER: yunexpress_signature(timestamp, body, secret),
    }
    return client.post(stack.url("ingest") + "/v1/webhooks/yunexpress", content=body, headers=headers)


def waybill(index: int) -> str:
    return f"YT{2611260000000000 + index:016d}"


def send_traffic(stack: Stack) -> None:
    today = datetime.now(UTC).date()
    with httpx.Client(timeout=15) as client:
        subscription = {
            "emails": [SUBSCRIBER, BOUNCING],
            "slack_webhook_url": stack.slack_url,
            "language": "en",
            "min_level": "WATCH",
        }
        response = client.put(
            stack.url("notifier") + f"/v1/sellers/{SELLER}/subscription", json=subscription, headers=auth()
        )
        assert response.status_code == 200, response.text

        # 14 packages whose promised date has passed without a single scan: the category
        # is in breach, which the scorer publishes and the notifier announces.
        shipments = [
            {
                "order_id": f"113-E2E-{index:04d}",
                "seller_id": SELLER,
                "marketplace": "US",
                "category": "Toys",
                "carrier": "YunExpress",
                "tracking_number": waybill(index),
                "order_value": {"amount": "12.50", "currency": "USD"},
                "confirmed_at": (datetime.now(UTC) - timedelta(days=10)).isoformat(),
                "promised_delivery_date": (today - timedelta(days=3)).isoformat(),
            }
            for index in range(14)
        ]
        response = client.post(stack.url("ingest") + "/v1/shipments", json=shipments, headers=auth())
        assert response.status_code == 202, response.text
        cancelled = client.post(stack.url("ingest") + f"/v1/shipments/{waybill(13)}/cancel", json={}, headers=auth())
        assert cancelled.status_code == 202, cancelled.text
        # An upload that is not JSON: 400 and a dead letter.
        broken = client.post(
            stack.url("ingest") + "/v1/shipments",
            content=b"{not json",
            headers={**auth(), "content-type": "application/json"},
        )
        assert broken.status_code == 400, broken.text

        # Carrier pushes: scans for two packages, one with a code nobody mapped.
        scan_time = (datetime.now(UTC) - timedelta(days=8)).strftime("%Y-%m-%dT%H:%M:%SZ")
        for index, codes in ((0, ["PICKED_UP", "TRANSIT_OUT"]), (1, ["PICKED_UP", "E2E_BRAND_NEW_CODE"])):
            push = {
                "data_code": "tisPushData",
                "data": {
                    "waybill_number": waybill(index),
                    "track_events": [{"track_node_code": code, "process_utc_time": scan_time} for code in codes],
                },
            }
            response = yunexpress_push(client, stack, json.dumps(push).encode())
            assert response.status_code == 200, response.text
        forged = yunexpress_push(client, stack, b'{"data_code": "tisPushData"}', secret="not-the-secret")
        assert forged.status_code == 401, forged.text
        # Signed but unusable: answered as received (no carrier retry storm), dead-lettered.
        malformed = yunexpress_push(client, stack, b'{"data_code": "tisPushData"}')
        assert malformed.status_code == 200, malformed.text
        assert malformed.json()["dead_lettered"] is True

        # The internal read APIs.
        vtr = client.get(stack.url("scorer") + f"/v1/sellers/{SELLER}/vtr", headers=auth())
        assert vtr.status_code in (200, 404), vtr.text
        history = client.get(stack.url("notifier") + f"/v1/sellers/{SELLER}/notifications", headers=auth())
        assert history.status_code == 200, history.text


def expression_of(origin: str) -> str:
    (expr,) = [expression.expr for expression in all_expressions() if expression.origin == origin]
    return expr


def grafana_expanded(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


@pytest.fixture(scope="module")
def answers(stack: Stack) -> dict[str, list[dict[str, Any]]]:
    """Every expression's result once the traffic has gone through and been scraped."""
    send_traffic(stack)
    wait_until(
        lambda: any(SUBSCRIBER in recipients for recipients, _ in stack.smtp.delivered),
        60,
        f"an e-mail to {SUBSCRIBER}\n{stack.log_tail('notifier')}\n{stack.log_tail('scorer')}",
    )
    expressions = all_expressions()
    results: dict[str, list[dict[str, Any]]] = {}
    deadline = time.monotonic() + DATA_DEADLINE_SECONDS
    while True:
        for expression in expressions:
            if not results.get(expression.origin):
                results[expression.origin] = stack.query(grafana_expanded(expression.expr))
        waiting = [origin for origin, result in results.items() if not result and origin not in FAILURE_ONLY]
        if not waiting or time.monotonic() > deadline:
            return results
        time.sleep(1)


# --- The checks ---------------------------------------------------------------------------


def test_the_stack_received_the_traffic(stack: Stack, answers: Answers) -> None:
    delivered_to = {address for recipients, _ in stack.smtp.delivered for address in recipients}
    assert SUBSCRIBER in delivered_to
    message = message_from_bytes(
        next(content for recipients, content in stack.smtp.delivered if SUBSCRIBER in recipients)
    )
    assert message["To"] == SUBSCRIBER
    assert SlackHook.received, "no Slack delivery"
    targets = stack.prometheus_api("targets")["activeTargets"]
    assert {(target["labels"]["job"], target["health"]) for target in targets} == {
        (name, "up") for name in SERVICE_NAMES
    }


def test_every_dashboard_and_alert_expression_returns_data(answers: Answers) -> None:
    expressions = all_expressions()
    assert set(FAILURE_ONLY) <= {expression.origin for expression in expressions}, "stale FAILURE_ONLY entry"
    empty = [origin for origin, result in answers.items() if not result and origin not in FAILURE_ONLY]
    assert empty == [], "these expressions returned no data:\n" + "\n".join(empty)


def test_alerts_on_bad_input_fire_for_real(stack: Stack, answers: Answers) -> None:
    """The traffic held dead letters, an unmapped code and a bouncing address: those alerts fire."""
    assert answers["alert VtrDeadLettersAppearing"]
    assert {series["metric"]["carrier"] for series in answers["alert VtrUnmappedCarrierCodes"]} == {"yunexpress"}

    def firing() -> set[str]:
        return {
            alert["labels"]["alertname"]
            for alert in stack.prometheus_api("alerts")["alerts"]
            if alert["state"] == "firing"
        }

    expected = {"VtrDeadLettersAppearing", "VtrUnmappedCarrierCodes", "VtrNotifierDeliveryFailures"}
    wait_until(lambda: expected <= firing(), 30, "alerts firing")


def test_failure_only_expressions_read_metrics_that_exist(stack: Stack, answers: Answers) -> None:
    by_origin: dict[str, Expression] = {expression.origin: expression for expression in all_expressions()}
    for origin in FAILURE_ONLY:
        for name in series_names(by_origin[origin].expr):
            assert stack.query(f"count({name})"), f"{origin}: no series {name} in Prometheus"


def test_prometheus_evaluates_every_rule_without_error(stack: Stack, answers: Answers) -> None:
    groups = stack.prometheus_api("rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) == sum(len(group["rules"]) for group in monitoring.load_rule_groups())
    assert [rule["name"] for rule in rules if rule["health"] != "ok"] == []


def test_a_stopped_service_answers_the_service_down_query(stack: Stack, answers: Answers) -> None:
    stack.stop("notifier")
    expr = expression_of("alert VtrServiceDown")
    wait_until(lambda: bool(stack.query(expr)), 30, "up == 0 for the notifier")
    assert {series["metric"]["job"] for series in stack.query(expr)} == {"notifier"}


def test_a_broker_outage_answers_the_ingest_error_ratio_query(stack: Stack, answers: Answers) -> None:
    stack.broker.stop()
    push = {"data_code": "tisPushData", "data": {"waybill_number": waybill(2), "track_events": [
        {"track_node_code": "PICKED_UP", "process_utc_time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    ]}}  # fmt: skip
    body = json.dumps(push).encode()
    with httpx.Client(timeout=30) as client:
        statuses = [yunexpress_push(client, stack, body).status_code for _ in range(6)]
        # rate() needs the 503 series scraped before it grows: a series is born at its
        # first scraped value, and increase() only sees what comes after.
        wait_until(lambda: bool(stack.query('vtr_http_requests_total{job="ingest", status="503"}')), 30, "503s scraped")
        statuses += [yunexpress_push(client, stack, body).status_code for _ in range(6)]
    assert set(statuses) == {503}
    expr = next(
        expression.expr for expression in all_expressions() if expression.origin == "alert VtrIngestErrorRatioHigh"
    )
    wait_until(lambda: bool(stack.query(expr)), 30, "the ingest 5xx ratio above 2%")


def test_grafana_variables_cover_every_expression() -> None:
    leftovers = {expression.origin for expression in all_expressions() if "$" in grafana_expanded(expression.expr)}
    assert leftovers == set()


def test_the_stack_environment_names_real_settings(tmp_path: Path) -> None:
    """A misspelt VTR_ variable here would silently leave a default in place."""
    from tests.deploy.test_manifests import SERVICES, env_names

    known = set().union(*(env_names(settings_class).values() for settings_class in SERVICES.values()))
    ports = dict.fromkeys(SERVICE_NAMES, 1)
    environment = service_environment(tmp_path, TansuBroker(port=1), ports, 1)
    assert {name for name in environment if name.startswith("VTR_")} - known == set()
