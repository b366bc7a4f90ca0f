"""Render the README's configuration table from the settings classes themselves.

    python -m tools.settings_table          # print the table
    python -m tools.settings_table --write  # replace it in README.md

A test asserts the README holds exactly what this renders, so the table cannot drift
from the code. Descriptions come from each field's ``description`` or the ``#:`` comment
above it.
"""

from __future__ import annotations

import argparse
import inspect
import re
from pathlib import Path

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from services.ingest.settings import IngestSettings
from services.notifier.settings import NotifierSettings
from services.scorer.settings import ScorerSettings
from shared.settings import ENV_PREFIX, ServiceSettings

SETTINGS_CLASSES: tuple[tuple[str, type[ServiceSettings]], ...] = (
    ("all", ServiceSettings),
    ("ingest", IngestSettings),
    ("scorer", ScorerSettings),
    ("notifier", NotifierSettings),
)
BEGIN = "<!-- settings-table:begin -->"
END = "<!-- settings-table:end -->"
README = Path(__file__).resolve().parent.parent / "README.md"
_FIELD_LINE = re.compile(r"^\s+(\w+)\s*:")


def _comment_descriptions(settings_class: type[BaseSettings]) -> dict[str, str]:
    """``#:`` comments directly above each field declaration, by field name."""
    descriptions: dict[str, str] = {}
    pending: list[str] = []
    for line in inspect.getsource(settings_class).splitlines():
        stripped = line.strip()
        if stripped.startswith("#:"):
            pending.append(stripped[2:].strip())
            continue
        match = _FIELD_LINE.match(line)
        if match and pending:
            descriptions[match.group(1)] = " ".join(pending)
        pending = []
    return descriptions


def _env_name(name: str, field: FieldInfo) -> str:
    alias = field.validation_alias
    choices = getattr(alias, "choices", None)
    if choices and isinstance(choices[0], str) and choices[0].startswith(ENV_PREFIX):
        return choices[0]
    return ENV_PREFIX + name.upper()


def _default(name: str, field: FieldInfo, settings_class: type[ServiceSettings]) -> str:
    extra = field.json_schema_extra
    if isinstance(extra, dict) and extra.get("secret"):
        return "(secret; dev default)" if _has_default(field) else "(secret)"
    if name == "database_url":
        return (
            f"SQLite under `.vtr/` ({settings_class.service_name}.db)" if settings_class is not ServiceSettings else ""
        )
    value = field.get_default(call_default_factory=True)
    if isinstance(value, SecretStr):
        return "(secret)" if value.get_secret_value() else "empty"
    if isinstance(value, list):
        value = ",".join(str(item) for item in value)
    if isinstance(value, Path) and value.is_absolute():
        value = value.relative_to(README.parent)
    if value is None or value == "":
        return "empty"
    return f"`{value}`"


def _has_default(field: FieldInfo) -> bool:
    value = field.get_default(call_default_factory=True)
    if isinstance(value, list):
        return bool(value)
    return bool(value.get_secret_value() if isinstance(value, SecretStr) else value)


def render() -> str:
    rows = ["| variable | service | default | meaning |", "|---|---|---|---|"]
    base_fields = set(ServiceSettings.model_fields)
    for service, settings_class in SETTINGS_CLASSES:
        comments = _comment_descriptions(settings_class)
        for name, field in settings_class.model_fields.items():
            if settings_class is not ServiceSettings and name in base_fields:
                inherited = ServiceSettings.model_fields[name]
                if field.get_default(call_default_factory=True) == inherited.get_default(call_default_factory=True):
                    continue
            if settings_class is ServiceSettings and name == "database_url":
                default = "SQLite file under `.vtr/` per service"
            else:
                default = _default(name, field, settings_class)
            meaning = (field.description or comments.get(name, "")).replace("|", "\\|")
            rows.append(f"| `{_env_name(name, field)}` | {service} | {default} | {meaning} |")
    return "\n".join(rows)


def replace_in_readme(readme_text: str) -> str:
    start, end = readme_text.index(BEGIN) + len(BEGIN), readme_text.index(END)
    return readme_text[:start] + "\n" + render() + "\n" + readme_text[end:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="update README.md in place")
    args = parser.parse_args()
    if args.write:
        README.write_text(replace_in_readme(README.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        print(render())


if __name__ == "__main__":
    main()
