"""The README documents every field a user can write, and the two commands."""

from pathlib import Path

from destinations import SPECS
from shared.config import _CONNECTION_KEYS, _EXPORT_KEYS

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def test_every_definition_field_and_credential_field_is_documented():
    names = set(_CONNECTION_KEYS) | set(_EXPORT_KEYS)
    for spec in SPECS.values():
        names |= {setting.name for setting in spec.settings + spec.limit_settings() + spec.target}
        names |= set(spec.secret_fields)
    missing = sorted(name for name in names if f"`{name}`" not in README and f'"{name}"' not in README)
    assert missing == []


def test_the_readme_starts_with_the_two_commands():
    first_section = README.split("## How it works")[0]
    assert "make demo" in first_section and "make test" in first_section
