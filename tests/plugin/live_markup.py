"""What a browser would parse as markup on the two report pages.

index.html is terrain's own page: its text is the markup. tests.html is pytest-html's: its
rows travel in a JSON blob (an attribute, HTML-escaped once) that the page's script sets
as HTML (`innerHTML`, `insertAdjacentHTML`): the blob's strings are markup too, so a
grep of the file alone would miss a live tag inside them.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def html_fragments(page: str) -> list[str]:
    """Every piece of text of a page that ends up parsed as HTML."""
    found = re.search(r'data-jsonblob="([^"]*)"', page)
    if found is None:
        return [page]
    blob = json.loads(html.unescape(found.group(1)))
    rendered = []
    for runs in blob.get("tests", {}).values():
        for run in runs:
            for key in ("resultsTableRow", "tableHtml", "log"):
                rendered += _strings(run.get(key))
            rendered += [
                e.get("content", "")
                for e in run.get("extras", [])
                if e.get("format_type") == "html"
            ]
    return [page.replace(found.group(0), ""), *rendered]


def live(page: str, markup: str) -> bool:
    """Whether `markup` (a tag written into some input) would be parsed as a tag."""
    return any(markup in fragment for fragment in html_fragments(page))
