"""Re-record tests/golden/measure_versions.json (after bumping a changed property's version)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from terrain.synthetic import default_cache_dir
from tests.golden_values import GOLDEN_FILE, record


def main() -> None:
    out = record(default_cache_dir())
    print(f"wrote goldens of {len(out)} properties to {GOLDEN_FILE}")


if __name__ == "__main__":
    main()
