"""The README's configuration table names every setting the functions read."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from shared.settings import PREFIX, Settings

README = Path(__file__).resolve().parent.parent / "README.md"


def table_names(text: str) -> set[str]:
    """Variables of the table's first column; ``A_B_C`` / ``_D`` shorthand expanded to ``A_B_D``
    (the shorthand replaces as many trailing words of the first name as it has)."""
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if not line.startswith(f"| `{PREFIX}"):
            continue
        first_cell = line.split("|")[1]
        tokens = re.findall(r"`([A-Z0-9_]+)`", first_cell)
        full = tokens[0]
        names.add(full)
        words = full[len(PREFIX):].split("_")
        for short in tokens[1:]:
            tail = short.strip("_").split("_")
            names.add(PREFIX + "_".join(words[: len(words) - len(tail)] + tail))
    return names


def test_every_setting_is_in_the_configuration_table() -> None:
    """GIVEN Settings WHEN the README table is read THEN each environment variable is listed."""
    documented = table_names(README.read_text(encoding="utf-8"))
    wanted = {PREFIX + f.name.upper() for f in fields(Settings) if f.metadata.get("env", True)}
    assert sorted(wanted - documented) == []
    assert sorted(documented - wanted) == []


def test_shorthand_is_expanded_word_by_word() -> None:
    """The checker itself: ``_SKEW_S`` after ``…_WINDOW_S`` names ``…_SKEW_S``."""
    text = ("## Configuration\n| `ECS_EVENT_OPS_ACTIONTRAIL_WINDOW_S` / `_SKEW_S` | 1 | x |\n"
            "| `ECS_EVENT_OPS_ENDPOINT_ECS` / `_SLB` | 1 | x |\n## Next\n")
    assert table_names(text) == {
        "ECS_EVENT_OPS_ACTIONTRAIL_WINDOW_S", "ECS_EVENT_OPS_ACTIONTRAIL_SKEW_S",
        "ECS_EVENT_OPS_ENDPOINT_ECS", "ECS_EVENT_OPS_ENDPOINT_SLB"}
