"""The README's property table, made from the declarations (terrain/property.py).

`make readme` (scripts/readme_table.py) writes it between the README's markers, and a
self-test fails when the README's table is not the one the declarations make.
"""

from __future__ import annotations

from collections.abc import Iterable

from terrain.property import Property

START = "<!-- properties:start (made by scripts/readme_table.py from terrain/checks) -->"
END = "<!-- properties:end -->"
HEADER = (
    "| property | kind | claim | statistic | source | gauge |\n"
    "| --- | --- | --- | --- | --- | --- |"
)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def property_table(properties: Iterable[Property]) -> str:
    rows = [
        f"| `{p.name}` | {p.kind} | {_cell(p.claim)} | {_cell(p.statistic)} | "
        f"{_cell(p.source)} | {p.gauge.value} |"
        for p in sorted(properties, key=lambda p: (p.kind, p.name))
    ]
    return "\n".join([START, HEADER, *rows, END])


def replace_table(readme: str, table: str, markers: tuple[str, str] = (START, END)) -> str:
    """The document with its marked table replaced (ValueError when the markers are absent);
    `markers`: the table's first and last lines (the README's property table by default)."""
    first, last = markers
    start, end = readme.find(first), readme.find(last)
    if start < 0 or end < start:
        raise ValueError(f"the document has no {first!r} … {last!r} markers")
    return readme[:start] + table + readme[end + len(last) :]
