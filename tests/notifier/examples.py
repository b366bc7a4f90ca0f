"""The committed examples under docs/examples/, rendered from fixed input.

Regenerate after changing a template or a phrase table:

    .venv/bin/python -m tests.notifier.examples
"""

from __future__ import annotations

import json
from pathlib import Path

from services.notifier.alerts import NoticeKind
from services.notifier.messages import (
    AlertMessage,
    DigestEntry,
    DigestMessage,
    compose_digest_email,
    compose_digest_slack,
    compose_email,
    compose_slack,
)
from shared.console_links import ConsoleLinks
from shared.schemas import Level
from shared.wording import Language
from tests.notifier.conftest import EXAMPLE_PACKAGES, EXAMPLES_DIR, FIXED_TIME, make_snapshot

#: The console links of the examples: a fixed secret and time, so the signature is stable.
EXAMPLE_LINKS = ConsoleLinks(base="https://vtrwatch.example.com", secret=b"example-console-secret")

SCENARIOS: dict[str, tuple[NoticeKind, Level, Level, bool]] = {
    # name: (kind, previous level, level, package list available)
    "at-risk": (NoticeKind.ESCALATED, Level.OK, Level.AT_RISK, True),
    "breach": (NoticeKind.ESCALATED, Level.AT_RISK, Level.BREACH, True),
    "recovered": (NoticeKind.RECOVERED, Level.BREACH, Level.OK, True),
    "reminder-without-packages": (NoticeKind.REMINDER, Level.AT_RISK, Level.AT_RISK, False),
}


DIGEST_ENTRIES = (
    DigestEntry(Level.AT_RISK, make_snapshot(Level.AT_RISK)),
    DigestEntry(Level.BREACH, make_snapshot(Level.BREACH, marketplace="AE", category="Home & Kitchen")),
    DigestEntry(Level.WATCH, make_snapshot(Level.WATCH, marketplace="US", category="Baby")),
)


def render_examples() -> dict[Path, str]:
    """Relative path under docs/examples/ -> file content."""
    files: dict[Path, str] = {}
    for language in Language:
        for name, (kind, previous, level, listed) in SCENARIOS.items():
            message = AlertMessage(
                kind=kind,
                previous_level=previous,
                level=level,
                snapshot=make_snapshot(level),
                packages=EXAMPLE_PACKAGES if listed else None,
                language=language,
                console_url=EXAMPLE_LINKS.link("A1SELLER", FIXED_TIME, marketplace="SG", category="Toys & Games"),
            )
            content = compose_email(message)
            base = Path(language.value) / name
            files[base.with_suffix(".subject.txt")] = content.subject + "\n"
            files[base.with_suffix(".txt")] = content.text
            files[base.with_suffix(".html")] = content.html
            files[base.with_suffix(".slack.json")] = (
                json.dumps(compose_slack(message), ensure_ascii=False, indent=2) + "\n"
            )
        digest = DigestMessage(
            seller_id="A1SELLER",
            entries=DIGEST_ENTRIES,
            language=language,
            console_url=EXAMPLE_LINKS.link("A1SELLER", FIXED_TIME),
        )
        content = compose_digest_email(digest)
        base = Path(language.value) / "daily-digest"
        files[base.with_suffix(".subject.txt")] = content.subject + "\n"
        files[base.with_suffix(".txt")] = content.text
        files[base.with_suffix(".html")] = content.html
        files[base.with_suffix(".slack.json")] = (
            json.dumps(compose_digest_slack(digest), ensure_ascii=False, indent=2) + "\n"
        )
    return files


def main() -> None:
    for relative, content in render_examples().items():
        path = EXAMPLES_DIR / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        print(path)


if __name__ == "__main__":
    main()
