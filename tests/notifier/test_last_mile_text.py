"""Messages name the last-mile carrier next to the seller's carrier (issue 11 item 6)."""

from __future__ import annotations

import json

from msgspec.structs import replace

from services.notifier.alerts import NoticeKind
from services.notifier.messages import AlertMessage, compose_slack, template_context
from shared.schemas import Level
from shared.wording import Language
from tests.notifier.conftest import make_package, make_snapshot


def test_the_package_lines_name_the_last_mile() -> None:
    handed_over = replace(make_package(), last_mile_carrier="usps", last_mile_tracking_number="9400111899223197428490")
    plain = make_package()
    for language, expected in (
        (Language.EN, f"{plain.carrier_name}, last mile usps 9400111899223197428490"),
        (Language.ZH_CN, f"{plain.carrier_name}，尾程 usps 9400111899223197428490"),
    ):
        message = AlertMessage(
            kind=NoticeKind.ESCALATED,
            previous_level=Level.OK,
            level=Level.AT_RISK,
            snapshot=make_snapshot(Level.AT_RISK),
            packages=(handed_over, plain),
            language=language,
        )
        lines = template_context(message)["packages"]
        assert [line["carrier"] for line in lines] == [expected, plain.carrier_name]
        assert "9400111899223197428490" in json.dumps(compose_slack(message), ensure_ascii=False)
