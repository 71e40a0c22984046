"""Choosing where measures run. Touches CUDA only when called, never at import."""

from __future__ import annotations

from terrain.errors import TerrainError


def resolve_device(requested: str) -> str:
    import torch

    if requested == "cpu":
        return "cpu"
    available = torch.cuda.is_available()
    if requested == "cuda" and not available:
        raise TerrainError(
            f"--device cuda: no CUDA device is visible to torch {torch.__version__} "
            f"(built with CUDA: {torch.version.cuda or 'no'}); use --device cpu or auto"
        )
    return "cuda" if available else "cpu"
