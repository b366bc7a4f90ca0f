"""The decoding guard's pure checks: no false refusal of real JSON, exact nesting depth,
and the rules it exists for."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.db import is_transient
from shared.guard import (
    MAX_JSON_DEPTH,
    InputRejected,
    check_json_body,
    check_target,
    day_in_calendar,
    in_calendar,
    json_depth,
)

# Text that stresses the string skipping: brackets, quotes and backslashes inside strings.
tricky_text = st.text(alphabet=st.sampled_from(list('[]{}"\\ab中\n\t/')) | st.characters(), max_size=12).filter(
    lambda text: "\x00" not in text and not any(0xD800 <= ord(char) <= 0xDFFF for char in text)
)
documents = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | tricky_text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(tricky_text, children, max_size=3),
    max_leaves=25,
)


def depth_of(document: Any) -> int:
    if isinstance(document, list):
        return 1 + max((depth_of(item) for item in document), default=0)
    if isinstance(document, dict):
        return 1 + max((depth_of(item) for item in document.values()), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(document=documents, ascii_only=st.booleans())
def test_real_json_passes_and_its_depth_is_measured_exactly(document: Any, ascii_only: bool) -> None:
    raw = json.dumps(document, ensure_ascii=ascii_only).encode()
    check_json_body(raw)  # never refuses what a serializer writes (no NUL, no surrogate)
    depth = depth_of(document)
    measured = json_depth(raw)
    # Small documents are judged by their bracket count (an upper bound), the rest exactly.
    assert measured == depth or (measured <= MAX_JSON_DEPTH and measured >= depth)


@pytest.mark.parametrize(
    ("raw", "status", "words"),
    [
        (b"[" * 65 + b"]" * 65, 400, "nests deeper"),
        (b'{"a":' * 65 + b"1" + b"}" * 65, 400, "nests deeper"),
        (b'{"a": "\xff"}', 400, "UTF-8"),
        (b'{"a": "x\\u0000"}', 422, "NUL"),
        (b'{"a": "x\x00"}', 422, "NUL"),
        (b'{"a": "\\ud800"}', 422, "surrogate"),
    ],
)
def test_the_rules(raw: bytes, status: int, words: str) -> None:
    with pytest.raises(InputRejected) as refused:
        check_json_body(raw)
    assert refused.value.status == status and words in str(refused.value)


def test_nesting_up_to_the_limit_and_brackets_in_strings_pass() -> None:
    check_json_body(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH)
    check_json_body(b'{"a": "' + b"[" * 500 + b'"}')
    check_json_body(b'{"a": "\\\\u0000 is text, not a NUL"}')


@pytest.mark.parametrize(
    ("path", "query"),
    [("/v1/sellers/a%00b/vtr", b""), ("/v1/x", b"category=%00"), ("/v1/x", b"category=%ff"), ("/v1/%c3", b"")],
)
def test_targets_with_nul_or_invalid_utf8_are_refused(path: str, query: bytes) -> None:
    with pytest.raises(InputRejected):
        check_target({"raw_path": path.encode(), "path": path, "query_string": query})


def test_calendar_edges_are_value_errors_not_overflows() -> None:
    for moment in (
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))),
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-14))),
        datetime(1999, 12, 31, tzinfo=UTC),
    ):
        with pytest.raises(ValueError, match="must lie between"):
            in_calendar(moment)
    assert in_calendar(datetime(2026, 11, 20, 8, tzinfo=timezone(timedelta(hours=8)))) == datetime(
        2026, 11, 20, 0, tzinfo=UTC
    )
    with pytest.raises(ValueError):
        day_in_calendar(date(9999, 12, 31))


class _DriverError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"driver error {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (ConnectionRefusedError(111, "refused"), True),
        (_DriverError("25006"), True),  # read-only transaction
        (_DriverError("53100"), True),  # disk full
        (_DriverError("57P01"), True),  # admin shutdown
        (_DriverError("40001"), True),  # serialization failure
        (_DriverError("22021"), False),  # invalid byte sequence: the record's fault
        (_DriverError("23505"), False),  # unique violation
        (RuntimeError("3 package(s) changed concurrently"), True),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), False),
        (ValueError("year 0 is out of range"), False),
    ],
)
def test_what_is_retried_forever_and_what_may_be_parked(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient
