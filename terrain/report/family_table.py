"""docs/families.md's list of families, made from the declarations (terrain/families/).

scripts/readme_table.py writes it between the markers, and a self-test fails when the
document's list is not the one the declarations make.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from terrain.family import CAPABILITIES, Absent, Family, TextConvention

START = "<!-- families:start (made by scripts/readme_table.py from terrain/families) -->"
END = "<!-- families:end -->"
_PER_TYPE = ("stack_counts", "census", "text")


def _what(family: Family, capability: str) -> tuple[list[str], list[str]]:
    """(what the family provides, what it lacks and why) of one capability."""
    value = getattr(family, capability)
    if capability not in _PER_TYPE:
        if isinstance(value, Absent):
            return [], [f"{capability}: {value.reason}"]
        return [capability], []
    assert isinstance(value, Mapping)
    reasons = {t: value[t].reason for t in family.model_types if isinstance(value[t], Absent)}
    given = [t for t in family.model_types if t not in reasons]
    if not given and len(set(reasons.values())) == 1:
        return [], [f"{capability}: {next(iter(reasons.values()))}"]
    lacking = [f"{capability} of `{t}`: {reason}" for t, reason in reasons.items()]
    scope = f" ({', '.join(f'`{t}`' for t in given)})" if reasons and given else ""
    return ([capability + scope] if given else []), lacking


def _prompts(family: Family) -> str:
    prompts = {
        t.prompt for t in family.text.values() if isinstance(t, TextConvention) and t.prompt != "{}"
    }
    return "".join(f"; prompt `{p}`" for p in sorted(prompts))


def family_list(families: Iterable[Family]) -> str:
    out = [START]
    for family in families:
        types = ", ".join(f"`{t}`" for t in family.model_types)
        given: list[str] = []
        lacking: list[str] = []
        for capability in CAPABILITIES:
            g, lack = _what(family, capability)
            given += g
            lacking += lack
        out += [
            "",
            f"### `{family.name}` (model_type {types})",
            "",
            f"- norms: {family.norms.placement}",
            f"- provides: {', '.join(given)}{_prompts(family)}",
        ]
        out += [f"- absent: {line}" for line in lacking]
    return "\n".join([*out, "", END])
