"""The per-source code tables of ``status_codes.toml``, loaded once at import.

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

from services.ingest.timezones import parse_utc_offset
from shared.schemas import CanonicalStatus

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
    timezone_text: str
    timezone: timezone
    codes: Mapping[str, CanonicalStatus]
    families: Mapping[str, CanonicalStatus] = field(default_factory=dict)
    metadata_only: frozenset[str] = frozenset()
    first_scan: Mapping[str, CanonicalStatus] = field(default_factory=dict)
    carriers: Mapping[str, str] = field(default_factory=dict)

    def status(self, code: str) -> CanonicalStatus:
        """The canonical status of a code; UNKNOWN when neither the code nor its family is mapped."""
        status = self.codes.get(code)
        if status is None and self.families:
            status = self.families.get(code.partition("_")[0])
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
            timezone_text=entry["timezone"],
            timezone=parse_utc_offset(entry["timezone"]),
            codes=_statuses(entry.get("codes", {}), f"{source}.codes"),
            families=_statuses(entry.get("families", {}), f"{source}.families"),
            metadata_only=frozenset(entry.get("metadata_only", ())),
            first_scan=_statuses(entry.get("first_scan", {}), f"{source}.first_scan"),
            carriers={str(key): str(slug) for key, slug in entry.get("carriers", {}).items()},
        )
    return mappings


MAPPINGS: dict[str, SourceMapping] = load_mappings()
