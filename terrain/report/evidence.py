"""Evidence attached to a finding: a titled PNG (base64) for the report."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Evidence:
    title: str
    png_base64: str
