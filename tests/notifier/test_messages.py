"""Message composition: the committed examples, subjects, actions per reason and language."""

from __future__ import annotations

import json

import msgspec
import pytest

from services.notifier.alerts import NoticeKind
from services.notifier.messages import AlertMessage, compose_email, compose_slack, slack_escape
from shared.schemas import Level, Money, Reason
from shared.wording import ACTIONS, REASON_LABELS, Language, action_for
from tests.notifier.conftest import EXAMPLE_PACKAGES, EXAMPLES_DIR, FIXED_TIME, make_package, make_snapshot
from tests.notifier.examples import render_examples


def message(
    kind: NoticeKind = NoticeKind.ESCALATED,
    previous: Level = Level.OK,
    level: Level = Level.AT_RISK,
    language: Language = Language.EN,
    listed: bool = True,
    category: str = "Toys & Games",
) -> AlertMessage:
    return AlertMessage(
        kind=kind,
        previous_level=previous,
        level=level,
        snapshot=make_snapshot(level, category=category),
        packages=EXAMPLE_PACKAGES if listed else None,
        language=language,
    )


def test_committed_examples_match_what_the_templates_render() -> None:
    rendered = render_examples()
    committed = {path.relative_to(EXAMPLES_DIR) for path in EXAMPLES_DIR.rglob("*") if path.is_file()}
    assert committed == set(rendered), "run: .venv/bin/python -m tests.notifier.examples"
    for relative, content in rendered.items():
        assert (EXAMPLES_DIR / relative).read_text(encoding="utf-8") == content, relative


@pytest.mark.parametrize(
    ("kind", "previous", "level", "language", "subject"),
    [
        (
            NoticeKind.ESCALATED,
            Level.OK,
            Level.AT_RISK,
            Language.EN,
            "[AT RISK] Toys & Games (SG): VTR 96.0%, forecast below 95% in 5 days",
        ),
        (
            NoticeKind.ESCALATED,
            Level.AT_RISK,
            Level.BREACH,
            Language.EN,
            "[BREACH] Toys & Games (SG): VTR 94.0%, below 95%",
        ),
        (
            NoticeKind.RECOVERED,
            Level.BREACH,
            Level.OK,
            Language.EN,
            "[RECOVERED] Toys & Games (SG): VTR 99.0%, back above the warning levels",
        ),
        (NoticeKind.REMINDER, Level.WATCH, Level.WATCH, Language.EN, "[REMINDER: WATCH] Toys & Games (SG): VTR 96.5%"),
        (
            NoticeKind.ESCALATED,
            Level.OK,
            Level.AT_RISK,
            Language.ZH_CN,
            "[有风险] Toys & Games（SG）：VTR 96.0%，预计 5 天后低于 95%",
        ),
        (
            NoticeKind.ESCALATED,
            Level.AT_RISK,
            Level.BREACH,
            Language.ZH_CN,
            "[已跌破红线] Toys & Games（SG）：VTR 94.0%，已低于 95%",
        ),
        (
            NoticeKind.RECOVERED,
            Level.BREACH,
            Level.OK,
            Language.ZH_CN,
            "[已恢复] Toys & Games（SG）：VTR 99.0%，已恢复正常",
        ),
    ],
)
def test_subject_states_level_marketplace_category_and_number(
    kind: NoticeKind, previous: Level, level: Level, language: Language, subject: str
) -> None:
    content = compose_email(message(kind, previous, level, language))
    assert content.subject == subject
    assert compose_slack(message(kind, previous, level, language))["text"] == slack_escape(subject)


def test_email_body_lists_packages_with_actions_and_the_appeal_address_when_breached() -> None:
    breach = compose_email(message(NoticeKind.ESCALATED, Level.AT_RISK, Level.BREACH))
    for package in EXAMPLE_PACKAGES:
        assert package.order_id in breach.text and package.tracking_number in breach.text
        assert package.order_id in breach.html
    assert "use a service with delivery scans" in breach.text
    assert "full tracking is required for orders of 7 SGD or more" in breach.text
    assert "no carrier scan 6 days after confirmation" in breach.text
    assert "https://sellercentral.amazon.sg/performance/account/health" in breach.text
    assert "Headroom:        0" in breach.text
    at_risk = compose_email(message())
    assert "sellercentral" not in at_risk.text
    assert "below 95% in 5 days" in at_risk.text


def test_missing_package_list_is_said_not_hidden() -> None:
    for language, phrase in ((Language.EN, "could not be fetched"), (Language.ZH_CN, "暂时无法获取")):
        content = compose_email(message(listed=False, language=language))
        assert phrase in content.text and phrase in content.html
        assert phrase in json.dumps(compose_slack(message(listed=False, language=language)), ensure_ascii=False)


def test_html_and_slack_escape_what_sellers_typed() -> None:
    hostile = "<script>alert(1)</script> & Co"
    content = compose_email(message(category=hostile))
    assert "<script>" not in content.html and "&lt;script&gt;" in content.html
    payload = compose_slack(message(category=hostile))
    context = payload["blocks"][-1]["elements"][0]["text"]
    assert "<script>" not in context and "&lt;/script&gt; &amp; Co" in context
    assert slack_escape("a<b>&c") == "a&lt;b&gt;&amp;c"


def test_slack_payload_is_block_kit_with_header_fields_packages_and_context() -> None:
    payload = compose_slack(message(NoticeKind.ESCALATED, Level.AT_RISK, Level.BREACH, Language.ZH_CN))
    types = [block["type"] for block in payload["blocks"]]
    assert types[0] == "header" and types[1] == "section" and types[-1] == "context"
    assert len(payload["blocks"][1]["fields"]) == 4
    assert len(payload["blocks"][0]["text"]["text"]) <= 150
    text = json.dumps(payload, ensure_ascii=False)
    assert "503-1234567-1234567" in text and "账户状况" in text


@pytest.mark.parametrize("language", list(Language))
def test_every_reason_has_a_label_and_an_action_in_every_language(language: Language) -> None:
    assert set(ACTIONS[language]) == set(Reason)
    assert set(REASON_LABELS[language]) == set(Reason)
    for reason in Reason:
        action = action_for(make_package(reason=reason), language, FIXED_TIME)
        assert "{" not in action and action


def test_threshold_comes_from_the_scorer_with_a_fallback_wording() -> None:
    assert "7 SGD" in action_for(make_package(), Language.EN, FIXED_TIME)
    mexico = msgspec.structs.replace(make_package(marketplace="MX"), full_tracking_threshold=Money("90", "MXN"))
    assert "90 MXN" in action_for(mexico, Language.EN, FIXED_TIME)
    unknown = msgspec.structs.replace(make_package(marketplace="MX"), full_tracking_threshold=None)
    assert "5 USD (converted)" in action_for(unknown, Language.EN, FIXED_TIME)
    assert "5 美元（折算）" in action_for(unknown, Language.ZH_CN, FIXED_TIME)
