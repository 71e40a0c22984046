"""The families terrain reads: one module each (qwen3_5: a package), each ending in one
`Family` declaration (terrain/family.py). `decoder` and `vit` hold what several share.

Importing this package registers every family; `terrain.family` does so on its first
lookup. docs/families.md lists what each family declares.
"""

from __future__ import annotations

from terrain.families import (  # noqa: F401  (registration side effect)
    bert,
    clip,
    dinov2,
    gpt2,
    llama,
    olmo3,
    open_clip,
    qwen3,
    qwen3_5,
    t5,
)
