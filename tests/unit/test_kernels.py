"""The shared products and reductions agree with plain float64 torch on every input kind."""

from __future__ import annotations

import pytest
import torch

from terrain.measures.kernels import as_float64, gram, norms64, sum64


def _inputs() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(37, 11, generator=g)
    return [
        base,
        base.T,
        base[::2, 1:],
        base.to(torch.bfloat16),
        base.to(torch.float16),
        base.double(),
    ]


@pytest.mark.parametrize("outer", [False, True], ids=["xtx", "xxt"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gram_is_the_symmetric_product(outer: bool, dtype: torch.dtype) -> None:
    for x in _inputs():
        y = x.double()
        expected = y @ y.T if outer else y.T @ y
        got = gram(x, outer=outer, dtype=dtype)
        assert got.dtype == dtype
        assert got.shape == expected.shape
        tol = 1e-5 if dtype == torch.float32 else 1e-12
        torch.testing.assert_close(got.double(), expected, rtol=tol, atol=tol)
        assert torch.equal(got, got.T)


def test_gram_refuses_what_it_cannot_form() -> None:
    with pytest.raises(ValueError, match="2-D"):
        gram(torch.ones(3))
    with pytest.raises(ValueError, match="float32 or float64"):
        gram(torch.ones(2, 2), dtype=torch.float16)


def test_float64_reductions_match_torch() -> None:
    for x in _inputs():
        y = x.double()
        assert torch.equal(as_float64(x), y)
        torch.testing.assert_close(sum64(x), y.sum(), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(sum64(x, dim=0), y.sum(dim=0), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(
            norms64(x), torch.linalg.vector_norm(y, dim=1), rtol=1e-12, atol=1e-12
        )
        torch.testing.assert_close(
            norms64(x, dim=0), torch.linalg.vector_norm(y, dim=0), rtol=1e-12, atol=1e-12
        )
