"""Renders docs/carriers.md from the mapping data, so the doc cannot drift from the code.

.venv/bin/python -m services.ingest.carrier_docs > docs/carriers.md
"""

from __future__ import annotations

from collections import defaultdict

from services.ingest.mapping import MAPPINGS, SourceMapping
from shared.schemas import CanonicalStatus

HEADER = """# Carrier pushes accepted by the ingest service

Generated from `services/ingest/status_codes.toml` by
`python -m services.ingest.carrier_docs > docs/carriers.md`; a test fails when this file
and the data disagree. To map a new carrier code, add one line to the TOML file and
regenerate this page.

Every push becomes one `vtr.tracking-events.v1` message per scan, keyed by the tracking
number (trimmed, upper-cased), with a deterministic `event_id`: the same scan pushed again
gets the same id. A code that is in no table below gives status `UNKNOWN` with the raw code
kept in `carrier_code`, and is counted in `vtr_ingest_unmapped_codes_total{carrier}`.
Metadata-only codes produce no event. Local times without an offset are read in the
source's zone below, then stored in UTC.

`INFO_RECEIVED` is electronic only (not a physical scan); every other status except
`UNKNOWN` is a physical scan.
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _status_table(title: str, codes: dict[str, CanonicalStatus], key_name: str) -> list[str]:
    by_status: dict[CanonicalStatus, list[str]] = defaultdict(list)
    for code, status in codes.items():
        by_status[status].append(code)
    lines = [f"{title}", "", f"| canonical status | {key_name} |", "|---|---|"]
    for status in CanonicalStatus:
        if by_status.get(status):
            lines.append(f"| `{status.value}` | {', '.join(f'`{_cell(code)}`' for code in by_status[status])} |")
    return [*lines, ""]


def render_source(mapping: SourceMapping) -> list[str]:
    lines = [
        f"## {mapping.name}",
        "",
        f"- Endpoint: `POST {mapping.endpoint}`",
        f"- Source slug: `{mapping.source}`",
        f"- Authentication: {mapping.signature}",
        f"- Package identity: {mapping.identity}",
        f"- Acknowledgement: {mapping.ack}",
        f"- Zone of local times without an offset: `{mapping.timezone_text}`",
    ]
    if mapping.metadata_only:
        lines.append(f"- Metadata only (no event): {', '.join(f'`{code}`' for code in sorted(mapping.metadata_only))}")
    lines.append("")
    lines += _status_table("Codes:", dict(mapping.codes), "codes")
    if mapping.families:
        families = {f"{family}_*": status for family, status in mapping.families.items()}
        lines += _status_table("Code families (when the exact code is not listed above):", families, "codes")
    if mapping.first_scan:
        lines += [
            "The earliest checkpoint with these codes gets another status:",
            "",
            "| code | status of the earliest |",
            "|---|---|",
            *(f"| `{code}` | `{status.value}` |" for code, status in mapping.first_scan.items()),
            "",
        ]
    if mapping.carriers:
        lines += [
            f"Carrier identifiers of {mapping.name.split(' (')[0]}:",
            "",
            "| identifier | vtrwatch carrier |",
            "|---|---|",
            *(f"| `{key}` | `{slug}` |" for key, slug in mapping.carriers.items()),
            "",
        ]
    return lines


def render() -> str:
    lines = [HEADER]
    for mapping in MAPPINGS.values():
        lines += render_source(mapping)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
