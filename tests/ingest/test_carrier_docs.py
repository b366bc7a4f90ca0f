"""docs/carriers.md is rendered from the mapping data and must match it."""

from __future__ import annotations

from pathlib import Path

from services.ingest.carrier_docs import render
from shared.status_codes import MAPPINGS

DOC = Path(__file__).resolve().parents[2] / "docs" / "carriers.md"


def test_committed_doc_equals_the_rendered_mapping() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), (
        "docs/carriers.md is stale: run `.venv/bin/python -m services.ingest.carrier_docs > docs/carriers.md`"
    )


def test_doc_lists_every_source_and_code() -> None:
    text = render()
    for mapping in MAPPINGS.values():
        assert mapping.endpoint in text
        for code in mapping.codes:
            assert f"`{code}`" in text
