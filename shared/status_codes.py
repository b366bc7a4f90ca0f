"""The per-source carrier status-code tables of ``status_codes.toml``, loaded once at import:
the ingest maps each scan with them, the scorer's remap re-reads unknown codes with them.

Loading validates the file: a status that is not a :class:`CanonicalStatus` or a bad
timezone stops the service at start-up instead of mis-mapping scans.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timezone
from pathlib import Path
from typing import Any

from shared.schemas import CanonicalStatus
from shared.utc_offset import parse_utc_offset

MAPPING_FILE = Path(__file__).with_name("status_codes.toml")


@dataclass(frozen=True)
class SourceMapping:
    """How one source's codes and times become canonical events."""

    source: str
    name: str
    endpoint: str
    signature: str
    identity: str
    ack: str
    #: How the sender retries a push that was not acknowledged (documentation).
    retries: str
    #: Where the source names the last-mile carrier and number (documentation).
    last_mile: str
    timezone_text: str
    timezone: timezone
    codes: Mapping[str, CanonicalStatus]
    families: Mapping[str, CanonicalStatus] = field(default_factory=dict)
    #: Coarser codes used when an event has no exact code (17TRACK ``stage`` without ``sub_status``).
    stages: Mapping[str, CanonicalStatus] = field(default_factory=dict)
    metadata_only: frozenset[str] = frozenset()
    #: Values of a checkpoint's ``source`` that mean a person entered it, not a carrier scan:
    #: such checkpoints produce no event (AfterShip ``source: "user"``).
    manual_sources: frozenset[str] = frozenset()
    carriers: Mapping[str, str] = field(default_factory=dict)

    def status(self, code: str) -> CanonicalStatus:
        """The canonical status of a code: the exact code, else its family (the prefix before
        the first ``_``), else the stage table; UNKNOWN when none maps it."""
        status = self.codes.get(code)
        if status is None and self.families:
            status = self.families.get(code.partition("_")[0])
        if status is None and self.stages:
            status = self.stages.get(code)
        return status or CanonicalStatus.UNKNOWN


def _statuses(table: Mapping[str, Any], where: str) -> dict[str, CanonicalStatus]:
    try:
        return {str(code): CanonicalStatus(status) for code, status in table.items()}
    except ValueError as error:
        raise ValueError(f"{MAPPING_FILE.name} [{where}]: {error}") from error


def load_mappings(path: Path = MAPPING_FILE) -> dict[str, SourceMapping]:
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    mappings: dict[str, SourceMapping] = {}
    for source, entry in data.items():
        mappings[source] = SourceMapping(
            source=source,
            name=entry["name"],
            endpoint=entry["endpoint"],
            signature=entry["signature"],
            identity=entry["identity"],
            ack=entry["ack"],
            retries=entry["retries"],
            last_mile=entry.get("last_mile", "not given by this source"),
            timezone_text=entry["timezone"],
            timezone=parse_utc_offset(entry["timezone"]),
            codes=_statuses(entry.get("codes", {}), f"{source}.codes"),
            families=_statuses(entry.get("families", {}), f"{source}.families"),
            stages=_statuses(entry.get("stages", {}), f"{source}.stages"),
            metadata_only=frozenset(entry.get("metadata_only", ())),
            manual_sources=frozenset(entry.get("manual_sources", ())),
            carriers={str(key): str(slug) for key, slug in entry.get("carriers", {}).items()},
        )
    return mappings


MAPPINGS: dict[str, SourceMapping] = load_mappings()
