"""A tensor given as consecutive row chunks: how measures read what does not fit at once.

`Chunks` is a function that starts a fresh pass over the chunks each time it is called,
so a measure that needs two passes (a mean, then centred moments) calls it twice; the
checkpoint behind it converts one chunk at a time from its memory map.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

Chunks = Callable[[], Iterator[torch.Tensor]]


def whole(w: torch.Tensor) -> Chunks:
    """A tensor as one chunk."""

    def chunks() -> Iterator[torch.Tensor]:
        yield w

    return chunks
