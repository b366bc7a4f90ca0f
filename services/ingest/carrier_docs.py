"""Renders docs/carriers.md from the mapping data, so the doc cannot drift from the code.

.venv/bin/python -m services.ingest.carrier_docs > docs/carriers.md
"""

from __future__ import annotations

from collections import defaultdict

from shared.schemas import CanonicalStatus
from shared.status_codes import MAPPINGS, SourceMapping

HEADER = """# Carrier pushes accepted by the ingest service

Generated from `shared/status_codes.toml` by
`python -m services.ingest.carrier_docs > docs/carriers.md`; a test fails when this file
and the data disagree. To map a new carrier code, add one line to the TOML file and
regenerate this page.

Every push becomes one `vtr.tracking-events.v1` message per scan, keyed by the tracking
number (trimmed, upper-cased), with a deterministic `event_id`: the same scan pushed again
gets the same id. A code that is in no table below gives status `UNKNOWN` with the raw code
kept in `carrier_code`, and is counted in `vtr_ingest_unmapped_codes_total{carrier}`.
Metadata-only codes produce no event. Two scans at the same time and place are two
events when their code or their message differs.

Local times without an offset are read in the zone of the scan's location where the source
says where it was (AfterShip checkpoint country and state, YunExpress `process_country`;
the country -> zone table is `services/ingest/zones.toml`, with a state table for countries
spanning several zones), else in the source's fixed zone below, then stored in UTC. When the
location cannot be resolved (no country, or one missing from `zones.toml`) the fixed zone
applies: for AfterShip that is UTC, so such a scan may be off by the checkpoint's UTC offset;
for a country spanning zones without a recognisable state, the table's `default` zone
applies (at most about 2 h off in the contiguous US).

`INFO_RECEIVED` is electronic only (not a physical scan); every other status except
`UNKNOWN` is a physical scan. Events carry the last-mile carrier and number where the source
names them (`last_mile_carrier`, `last_mile_tracking_number`).

Every authenticated push is answered the way its sender treats as received, also when its
content cannot be parsed: such a push is parked on `vtr.deadletter.v1` (raw body kept),
counted in `vtr_ingest_deadletters_total{origin}` and `vtr_ingest_webhooks_total{outcome="invalid"}`,
and can be re-parsed later with
`python -m services.ingest replay-deadletters [--origin ...] [--since ...] [--dry-run]`.
Only authentication failures are refused (401), since a sender that gets an error retries
a few times and then drops the push.
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
        f"- Retry policy of the sender: {mapping.retries}",
        f"- Last-mile carrier and number: {mapping.last_mile}",
        f"- Zone of local times without an offset: `{mapping.timezone_text}`",
    ]
    if mapping.metadata_only:
        lines.append(f"- Metadata only (no event): {', '.join(f'`{code}`' for code in sorted(mapping.metadata_only))}")
    if mapping.manual_sources:
        manual = ", ".join(f"`{value}`" for value in sorted(mapping.manual_sources))
        lines.append(f"- Checkpoints entered by hand (`source` {manual}): no event, never a scan")
    lines.append("")
    lines += _status_table("Codes:", dict(mapping.codes), "codes")
    if mapping.families:
        families = {f"{family}_*": status for family, status in mapping.families.items()}
        lines += _status_table("Code families (when the exact code is not listed above):", families, "codes")
    if mapping.stages:
        lines += _status_table("Stages (when an event has a stage but no exact code):", dict(mapping.stages), "stages")
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
