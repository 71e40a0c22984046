"""Write the README's property table from the declarations (terrain/checks/)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from terrain.property import declarations
from terrain.report.property_table import property_table, replace_table

README = Path(__file__).resolve().parents[1] / "README.md"


def main() -> None:
    text = replace_table(README.read_text(encoding="utf-8"), property_table(declarations()))
    fd, tmp = tempfile.mkstemp(dir=README.parent, prefix=".README.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, README)
    print(f"wrote the property table of {len(declarations().names())} properties to {README}")


if __name__ == "__main__":
    main()
