"""Readable log lines for a person at a terminal; JSON for collectors."""

from __future__ import annotations

import logging

import orjson
import pytest

from shared.observability import JsonFormatter, TextFormatter, in_container, wants_text_logs
from tools.run_local import key_lines


def _record() -> logging.LogRecord:
    record = logging.makeLogRecord({"name": "services.ingest.routes", "levelname": "INFO", "msg": "webhook refused"})
    record.source = "yanwen"
    return record


def test_text_lines_read_as_time_level_logger_message_and_fields() -> None:
    line = TextFormatter().format(_record())
    assert line.endswith(" INFO    ingest.routes: webhook refused  source=yanwen")
    assert orjson.loads(JsonFormatter().format(_record()))["source"] == "yanwen"


@pytest.mark.parametrize(
    ("log_format", "env", "tty", "container", "text"),
    [
        ("auto", "dev", True, False, True),
        ("auto", "prod", True, False, False),
        ("auto", "dev", False, False, False),
        ("auto", "dev", True, True, False),
        ("json", "dev", True, False, False),
        ("text", "prod", False, True, True),
    ],
)
def test_text_only_for_a_person_at_a_terminal_unless_asked(
    monkeypatch: pytest.MonkeyPatch, log_format: str, env: str, tty: bool, container: bool, text: bool
) -> None:
    monkeypatch.setattr("sys.stderr.isatty", lambda: tty)
    monkeypatch.setattr("shared.observability.in_container", lambda: container)
    assert wants_text_logs(log_format, env) is text


def test_kubernetes_counts_as_a_container(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    assert in_container()


def test_make_run_prints_the_development_key_and_how_to_issue_a_seller_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VTR_API_KEYS", raising=False)
    lines = "\n".join(key_lines("127.0.0.1:9092", 9092, 8001))
    assert "dev-api-key" in lines and "python -m shared.credentials issue --seller <seller-id>" in lines
    monkeypatch.setenv("VTR_API_KEYS", "a-real-secret")
    assert "a-real-secret" not in "\n".join(key_lines("127.0.0.1:9999", 9999))
    assert "VTR_KAFKA_BOOTSTRAP=127.0.0.1:9999" in "\n".join(key_lines("127.0.0.1:9999", 9999))
