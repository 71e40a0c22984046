"""The embedding covariance spectrum of a table stored as a release stores it (bf16, fp16)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from terrain.measures.embedding import covariance_eigenvalues


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_half_precision_table_gives_the_spectrum_of_its_float32_values(
    dtype: torch.dtype,
) -> None:
    gen = torch.Generator().manual_seed(0)
    table = (torch.randn(700, 48, generator=gen) * 0.02 + 0.01).to(dtype)
    half = covariance_eigenvalues(table, chunk=128)
    exact = np.linalg.eigvalsh(np.cov(table.double().numpy(), rowvar=False, bias=True))[::-1]
    np.testing.assert_allclose(half, exact, rtol=1e-5, atol=1e-12)


def test_a_float32_table_is_unchanged_by_the_half_precision_path() -> None:
    gen = torch.Generator().manual_seed(1)
    table = torch.randn(300, 16, generator=gen)
    exact = np.linalg.eigvalsh(np.cov(table.double().numpy(), rowvar=False, bias=True))[::-1]
    np.testing.assert_allclose(covariance_eigenvalues(table), exact, rtol=1e-5, atol=1e-12)
