"""The README's configuration table is what the settings classes say."""

from __future__ import annotations

from tools.settings_table import README, replace_in_readme


def test_readme_settings_table_matches_the_code() -> None:
    current = README.read_text(encoding="utf-8")
    assert replace_in_readme(current) == current, "run: python -m tools.settings_table --write"


def test_readme_names_the_variables_whose_names_are_not_field_names() -> None:
    current = README.read_text(encoding="utf-8")
    assert "`VTR_API_KEYS`" in current and "`VTR_17TRACK_API_KEY`" in current
